"""Readers for VQA 1.0 questions/annotations, COCO images and VQA-HAT human attention maps.

The same readers serve the real files and the embedded benchmark (which is written in the same
layout, see :mod:`vqa_interp.embedded`). Every check on the inputs happens in
:func:`resolve_paths` / :func:`load_examples`, before any model work.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vqa_interp.errors import DataError

SOURCES = {
    "questions": "VQA 1.0 val questions (OpenEnded_mscoco_val2014_questions.json or "
                 "MultipleChoice_mscoco_val2014_questions.json), from https://visualqa.org/vqa_v1_download.html",
    "annotations": "VQA 1.0 val annotations (mscoco_val2014_annotations.json), from https://visualqa.org/vqa_v1_download.html",
    "images": "COCO val2014 images (val2014/COCO_val2014_*.jpg), from https://cocodataset.org/#download",
    "human_maps": "VQA-HAT val maps (vqahat_val/{question_id}_{n}.png, unpacked from vqahat_val.zip), "
                  "from https://computing.ece.vt.edu/~abhshkdz/vqa-hat/",
}


@dataclass(frozen=True)
class DataPaths:
    """Where one split's files are. ``images`` is a folder; ``human_maps`` a folder of PNGs."""
    questions: Path
    annotations: Path
    images: Path
    human_maps: Path
    image_prefix: str = "COCO_val2014_"


@dataclass
class Example:
    """One evaluated question: its text, answers, image file and human map files."""
    question_id: int
    image_id: int
    question: str
    answers: list[str]              # the 10 human answers (raw)
    multiple_choice_answer: str     # the labelled answer (raw)
    answer_type: str
    image_path: Path
    human_map_paths: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- text
def tokenize_question(question: str) -> list[str]:
    """pytorch-vqa's tokenisation: lower-case, drop the final character ('?'), split on spaces."""
    return question.lower()[:-1].split(" ")


# Official VQA evaluation normalisation (vqaEval.py): contractions, number words, articles,
# punctuation. The contraction table is the common subset of the official one.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "shant": "shan't", "shed": "she'd",
    "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "somebodys": "somebody's",
    "someones": "someone's", "thats": "that's", "thered": "there'd", "theres": "there's", "theyd": "they'd",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed": "we'd", "weve": "we've", "werent": "weren't", "whats": "what's", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whos": "who's", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "yall": "y'all",
    "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_answer(answer: str) -> str:
    """Normalise an answer like the official VQA evaluation before comparing or looking it up."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_STRIP, text) is not None:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    text = _PERIOD_STRIP.sub("", text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy: mean over the 10 leave-one-out subsets of min(1, #matches / 3)."""
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if not gts:
        return float("nan")
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        scores.append(min(1.0, sum(g == pred for g in others) / 3.0))
    return float(np.mean(scores))


# ---------------------------------------------------------------- files
def _require(path: Path, key: str, what: str) -> Path:
    if not path.exists():
        raise DataError(
            f"{key}: {path} does not exist. Expected {what}. "
            f"Place the file there or set {key}=PATH on the command line."
        )
    return path


def resolve_paths(root: str | Path | None, *, split: str = "val", questions: str | None = None,
                  annotations: str | None = None, images: str | None = None,
                  human_maps: str | None = None) -> DataPaths:
    """Resolve the standard VQA 1.0 / VQA-HAT layout under ``root``; each path can be overridden.

    Raises :class:`DataError` naming the config key, the path, what belongs there and where it
    is published, for the first missing piece.
    """
    base = Path(root) if root else None
    if base is None and not all([questions, annotations, images, human_maps]):
        raise DataError("data.root is not set. Set data.root=DIR (the folder holding the VQA 1.0 json files, "
                        "val2014/ and vqahat_val/) or each of data.questions, data.annotations, "
                        "data.images, data.human_maps.")
    if base is not None and not base.is_dir():
        raise DataError(f"data.root: {base} is not a folder. Expected a folder holding "
                        f"OpenEnded_mscoco_{split}2014_questions.json, mscoco_{split}2014_annotations.json, "
                        f"{split}2014/ and vqahat_{split}/.")
    if questions:
        q_path = _require(Path(questions), "data.questions", SOURCES["questions"])
    else:
        candidates = [base / f"OpenEnded_mscoco_{split}2014_questions.json",
                      base / f"MultipleChoice_mscoco_{split}2014_questions.json"]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise DataError(f"data.questions: neither {candidates[0]} nor {candidates[1]} exists. "
                            f"Expected {SOURCES['questions']}. Place one there or set data.questions=FILE.")
        q_path = found[0]
    a_path = _require(Path(annotations) if annotations else base / f"mscoco_{split}2014_annotations.json",
                      "data.annotations", SOURCES["annotations"])
    i_path = _require(Path(images) if images else base / f"{split}2014", "data.images", SOURCES["images"])
    h_path = _require(Path(human_maps) if human_maps else base / f"vqahat_{split}", "data.human_maps",
                      SOURCES["human_maps"])
    return DataPaths(q_path, a_path, i_path, h_path, image_prefix=f"COCO_{split}2014_")


def _read_json(path: Path, key: str, required: Sequence[str]) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{key}: {path} is not valid JSON ({exc}). Expected {SOURCES[key.split('.')[-1]]}.") from exc
    missing = [r for r in required if r not in payload]
    if missing:
        raise DataError(f"{key}: {path} lacks the top-level field(s) {missing}. "
                        f"Expected {SOURCES[key.split('.')[-1]]} (fields: {list(required)}).")
    return payload


def index_human_maps(folder: Path) -> dict[int, list[Path]]:
    """``{question_id: [paths sorted by annotator n]}`` from ``{question_id}_{n}.png`` files."""
    maps: dict[int, list[tuple[int, Path]]] = {}
    for path in folder.glob("*.png"):
        match = re.fullmatch(r"(\d+)_(\d+)", path.stem)
        if match:
            maps.setdefault(int(match.group(1)), []).append((int(match.group(2)), path))
    return {qid: [p for _, p in sorted(items)] for qid, items in maps.items()}


def _is_constant_image(path: Path) -> bool:
    """True for a map with one grey level everywhere (VQA-HAT has a few): it carries no attention."""
    try:
        with Image.open(path) as image:
            lo, hi = image.convert("L").getextrema()
    except OSError as exc:
        raise DataError(f"data.human_maps: {path} is not a readable image ({exc}). Expected a VQA-HAT PNG.") from exc
    return lo == hi


@dataclass
class Selection:
    """The evaluated examples and what was left out, with the reason."""
    examples: list[Example]
    skipped: Counter = field(default_factory=Counter)


def load_examples(paths: DataPaths, *, limit: int | None = None, question_ids: Sequence[int] | None = None,
                  num_shards: int = 1, shard: int = 0, skip_missing_images: bool = False) -> Selection:
    """The questions that have human maps, in ascending question-id order, then selected.

    Selection order: explicit ``question_ids`` (else every question with a map), then ``limit``
    (the first N), then shard ``shard`` of ``num_shards`` (round-robin, so shards are balanced and
    their union is the unsharded selection).
    """
    q_json = _read_json(paths.questions, "data.questions", ["questions"])
    a_json = _read_json(paths.annotations, "data.annotations", ["annotations"])
    annotations = {a["question_id"]: a for a in a_json["annotations"]}
    maps = index_human_maps(paths.human_maps)
    if not maps:
        raise DataError(f"data.human_maps: {paths.human_maps} holds no {{question_id}}_{{n}}.png files. "
                        f"Expected {SOURCES['human_maps']}.")
    questions = {q["question_id"]: q for q in q_json["questions"]}
    skipped: Counter = Counter()
    if question_ids is not None:
        wanted = [int(q) for q in question_ids]
        unknown = [q for q in wanted if q not in questions or q not in maps]
        if unknown:
            raise DataError(f"data.question_ids: {unknown[:10]} have no question or no human map in "
                            f"{paths.questions} / {paths.human_maps}.")
    else:
        wanted = sorted(q for q in maps if q in questions)
        skipped["human_map_without_question"] = sum(1 for q in maps if q not in questions)
    if limit is not None:
        wanted = wanted[:limit]
    wanted = wanted[shard::num_shards]
    examples = []
    for qid in wanted:
        q = questions[qid]
        ann = annotations.get(qid)
        if ann is None:
            raise DataError(f"data.annotations: {paths.annotations} has no annotation for question_id {qid} "
                            f"of {paths.questions}; the two files must come from the same split.")
        image_path = paths.images / f"{paths.image_prefix}{q['image_id']:012d}.jpg"
        if not image_path.exists():
            if skip_missing_images:
                skipped["missing_image"] += 1
                continue
            raise DataError(f"data.images: {image_path} (image of question {qid}) does not exist. "
                            f"Expected {SOURCES['images']}. Place it there, or set "
                            f"data.skip_missing_images=true to skip such questions (they are counted).")
        usable = [p for p in maps[qid] if not _is_constant_image(p)]
        skipped["constant_human_map"] += len(maps[qid]) - len(usable)
        if not usable:
            skipped["all_human_maps_constant"] += 1
            continue
        examples.append(Example(
            question_id=qid, image_id=int(q["image_id"]), question=q["question"],
            answers=[a["answer"] for a in ann.get("answers", [])],
            multiple_choice_answer=ann["multiple_choice_answer"], answer_type=ann.get("answer_type", ""),
            image_path=image_path, human_map_paths=usable,
        ))
    return Selection(examples, skipped)


# ---------------------------------------------------------------- pixels
@dataclass(frozen=True)
class InputGeometry:
    """How an image becomes the model's input: resize the shorter side to ``size / central_fraction``,
    then crop the central ``size x size`` square (pytorch-vqa: size 448, central_fraction 0.875)."""
    size: int = 448
    central_fraction: float = 0.875

    @property
    def resize_to(self) -> int:
        return int(round(self.size / self.central_fraction))


def _resize_and_crop(image: Image.Image, geometry: InputGeometry, resample) -> Image.Image:
    w, h = image.size
    scale = geometry.resize_to / min(w, h)
    new_w, new_h = max(geometry.size, round(w * scale)), max(geometry.size, round(h * scale))
    image = image.resize((new_w, new_h), resample)
    left, top = (new_w - geometry.size) // 2, (new_h - geometry.size) // 2
    return image.crop((left, top, left + geometry.size, top + geometry.size))


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_image(path: Path, geometry: InputGeometry) -> np.ndarray:
    """The model input for one image file: ``[3, size, size]`` float32, ImageNet-normalised.

    Grayscale, CMYK and palette JPEGs are converted to RGB.
    """
    with Image.open(path) as image:
        rgb = _resize_and_crop(image.convert("RGB"), geometry, Image.BILINEAR)
    array = np.asarray(rgb, np.float32) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def load_display_image(path: Path, geometry: InputGeometry) -> np.ndarray:
    """The model's view of an image for figures: ``[size, size, 3]`` uint8."""
    with Image.open(path) as image:
        return np.asarray(_resize_and_crop(image.convert("RGB"), geometry, Image.BILINEAR))


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, without decoding its pixels."""
    with Image.open(path) as image:
        return image.size


def load_human_maps(paths: Sequence[Path], image_wh: tuple[int, int], geometry: InputGeometry) -> np.ndarray:
    """Human maps aligned with the model input: ``[n_annotators, size, size]`` float32 in [0, 1].

    Each map is first resized to its image's size (VQA-HAT maps need not match it), then cropped
    exactly like the image, so that map pixel (i, j) and attribution pixel (i, j) are the same spot.
    """
    aligned = []
    for path in paths:
        with Image.open(path) as image:
            grey = image.convert("L").resize(image_wh, Image.BILINEAR)
            aligned.append(np.asarray(_resize_and_crop(grey, geometry, Image.BILINEAR), np.float32) / 255.0)
    return np.stack(aligned)


def digest_examples(examples: Sequence[Example]) -> str:
    """sha256 over what the selection depends on: ids, text, answers, image and map bytes."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.question_id, ex.question, ex.answers, ex.multiple_choice_answer]).encode())
        for path in [ex.image_path, *ex.human_map_paths]:
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
