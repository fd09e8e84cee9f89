"""Readers for VQA 1.0 questions/annotations, COCO images and VQA-HAT human attention maps.

The same readers serve the real files and the embedded benchmark (which is written in the same
layout, see :mod:`vqa_interp.data.embedded`). Every check on the inputs happens in
:func:`resolve_paths` / :func:`load_examples`, before any model work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vqa_interp.data.images import HIGH_DEPTH_MODES
from vqa_interp.errors import DataError

log = logging.getLogger(__name__)

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
    choices: Path | None = None  # the MultipleChoice questions file, where there is one (18 candidates each)


@dataclass(frozen=True)
class QARecord:
    """One question of a VQA 1.0 split with its annotation (as read from the two JSON files)."""

    question_id: int
    image_id: int
    question: str
    answers: list[str]  # the 10 human answers (raw)
    multiple_choice_answer: str  # the labelled answer (raw)
    answer_type: str
    question_type: str = ""  # VQA 1.0's question_type ("what color is the", ...), "" if absent
    multiple_choices: tuple[str, ...] = ()  # VQA 1.0's 18 candidates (MultipleChoice file), () if absent


@dataclass(frozen=True)
class Example(QARecord):
    """One evaluated question: its record, image file and human map files."""

    image_path: Path = Path()
    human_map_paths: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- files
def _require(path: Path, key: str, what: str) -> Path:
    if not path.exists():
        raise DataError(
            f"{key}: {path} does not exist. Expected {what}. "
            f"Place the file there or set {key}=PATH on the command line."
        )
    return path


def resolve_paths(
    root: str | Path | None,
    *,
    split: str = "val",
    questions: str | None = None,
    annotations: str | None = None,
    images: str | None = None,
    human_maps: str | None = None,
    require_human_maps: bool = True,
) -> DataPaths:
    """Resolve the standard VQA 1.0 / VQA-HAT layout under ``root``; each path can be overridden.

    ``require_human_maps=False`` is for a training split, which has none.

    Raises :class:`DataError` naming the config key, the path, what belongs there and where it
    is published, for the first missing piece.
    """
    base = Path(root) if root else None
    if base is None and not all([questions, annotations, images, human_maps or not require_human_maps]):
        raise DataError(
            "data.root is not set. Set data.root=DIR (the folder holding the VQA 1.0 json files, "
            "val2014/ and vqahat_val/) or each of data.questions, data.annotations, "
            "data.images, data.human_maps."
        )
    if base is not None and not base.is_dir():
        raise DataError(
            f"data.root: {base} is not a folder. Expected a folder holding "
            f"OpenEnded_mscoco_{split}2014_questions.json, mscoco_{split}2014_annotations.json, "
            f"{split}2014/ and vqahat_{split}/."
        )
    if questions:
        q_path = _require(Path(questions), "data.questions", SOURCES["questions"])
    else:
        candidates = [
            base / f"OpenEnded_mscoco_{split}2014_questions.json",
            base / f"MultipleChoice_mscoco_{split}2014_questions.json",
        ]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise DataError(
                f"data.questions: neither {candidates[0]} nor {candidates[1]} exists. "
                f"Expected {SOURCES['questions']}. Place one there or set data.questions=FILE."
            )
        q_path = found[0]
    a_path = _require(
        Path(annotations) if annotations else base / f"mscoco_{split}2014_annotations.json",
        "data.annotations",
        SOURCES["annotations"],
    )
    i_path = _require(Path(images) if images else base / f"{split}2014", "data.images", SOURCES["images"])
    h_path = Path(human_maps) if human_maps else base / f"vqahat_{split}"
    if require_human_maps:
        _require(h_path, "data.human_maps", SOURCES["human_maps"])
    choices = q_path if q_path.name.startswith("MultipleChoice_") else None
    if base is not None and choices is None and (base / f"MultipleChoice_mscoco_{split}2014_questions.json").exists():
        choices = base / f"MultipleChoice_mscoco_{split}2014_questions.json"
    return DataPaths(q_path, a_path, i_path, h_path, image_prefix=f"COCO_{split}2014_", choices=choices)


def _read_json(path: Path, key: str, required: Sequence[str]) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{key}: {path} is not valid JSON ({exc}). Expected {SOURCES[key.split('.')[-1]]}.") from exc
    missing = [r for r in required if r not in payload]
    if missing:
        raise DataError(
            f"{key}: {path} lacks the top-level field(s) {missing}. "
            f"Expected {SOURCES[key.split('.')[-1]]} (fields: {list(required)})."
        )
    return payload


def read_questions(paths: DataPaths) -> tuple[dict[int, dict], dict[int, dict]]:
    """``({question_id: question}, {question_id: annotation})`` from the two VQA 1.0 JSON files."""
    q_json = _read_json(paths.questions, "data.questions", ["questions"])
    a_json = _read_json(paths.annotations, "data.annotations", ["annotations"])
    questions, annotations = {}, {}
    for entry in q_json["questions"]:
        q = {
            **entry,
            "question_id": _integer_id(entry, "question_id", "data.questions", paths.questions),
            "image_id": _integer_id(entry, "image_id", "data.questions", paths.questions),
        }
        questions[q["question_id"]] = q
    for entry in a_json["annotations"]:
        a = {**entry, "question_id": _integer_id(entry, "question_id", "data.annotations", paths.annotations)}
        annotations[a["question_id"]] = a
    if paths.choices is not None and paths.choices != paths.questions and paths.choices.exists():
        for entry in _read_json(paths.choices, "data.questions", ["questions"])["questions"]:
            qid = _integer_id(entry, "question_id", "data.questions", paths.choices)
            if qid in questions and isinstance(entry.get("multiple_choices"), list):
                questions[qid]["multiple_choices"] = entry["multiple_choices"]
    return questions, annotations


def _integer_id(entry, field: str, key: str, path: Path) -> int:
    """An entry's ``question_id`` / ``image_id`` as an int (VQA's ids are integers; a digit string is
    read as one); anything else is a :class:`DataError` naming the file and the value (ids become
    file names, so ``"../x"`` must never pass)."""
    value = entry.get(field) if isinstance(entry, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    raise DataError(
        f"{key}: {path} has an entry whose {field} is {value!r}; expected a non-negative integer "
        f"(VQA 1.0 ids are numbers such as 393225). Fix or remove that entry."
    )


def read_records(
    paths: DataPaths, question_ids: Sequence[int] | None = None, loaded: tuple[dict, dict] | None = None
) -> list[QARecord]:
    """The questions ``question_ids`` (default: all, in file order) joined with their annotations.

    The one reader of the VQA 1.0 JSON files, for evaluation and training alike.
    """
    questions, annotations = loaded or read_questions(paths)
    records = []
    for qid in questions if question_ids is None else question_ids:
        q = questions[qid]
        ann = annotations.get(q["question_id"])
        if ann is None:
            raise DataError(
                f"data.annotations: {paths.annotations} has no annotation for question_id "
                f"{q['question_id']} of {paths.questions}; the two files must come from the same split."
            )
        answers = [a.get("answer") if isinstance(a, dict) else a for a in ann.get("answers", [])]
        _check_text(q.get("question"), "data.questions", paths.questions, qid, "question")
        for value in [*answers, ann.get("multiple_choice_answer")]:
            _check_text(value, "data.annotations", paths.annotations, qid, "answer")
        choices = tuple(str(c) for c in q.get("multiple_choices") or () if isinstance(c, str))
        records.append(
            QARecord(
                int(q["question_id"]),
                int(q["image_id"]),
                q["question"],
                answers,
                ann["multiple_choice_answer"],
                ann.get("answer_type", ""),
                str(ann.get("question_type", "")),
                choices,
            )
        )
    return records


def _check_text(value, key: str, path: Path, question_id, what: str) -> None:
    """A question or answer must be a string that UTF-8 can hold (JSON allows a lone surrogate such
    as ``\\ud800``, which cannot be tokenised, logged or written out)."""
    if not isinstance(value, str):
        raise DataError(
            f"{key}: {path}, question_id {question_id}: the {what} is {type(value).__name__} "
            f"{value!r}, expected a string (VQA 1.0 format). Fix that entry, or leave the question "
            f"out with data.question_ids."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{key}: {path}, question_id {question_id}: the {what} {value!r} holds an invalid "
            f"character ({exc.reason} at position {exc.start}: a lone UTF-16 surrogate). Fix that "
            f"entry, or leave the question out with data.question_ids."
        ) from None


def image_path_of(paths: DataPaths, image_id: int) -> Path:
    """``<images>/COCO_<split>2014_<image_id:012d>.jpg``."""
    return paths.images / f"{paths.image_prefix}{image_id:012d}.jpg"


def index_human_maps(folder: Path) -> dict[int, list[Path]]:
    """``{question_id: [paths sorted by annotator n]}`` from ``{question_id}_{n}.png`` files."""
    maps: dict[int, list[tuple[int, Path]]] = {}
    for path in folder.glob("*.png"):
        match = re.fullmatch(r"(\d+)_(\d+)", path.stem)
        if match:
            maps.setdefault(int(match.group(1)), []).append((int(match.group(2)), path))
    return {qid: [p for _, p in sorted(items)] for qid, items in maps.items()}


def is_constant_image(path: Path) -> bool:
    """True for a map with one grey level everywhere (VQA-HAT has a few): it carries no attention."""
    try:
        with Image.open(path) as image:
            # at the map's own bit depth: a 16-bit map converted to 8 bits can look constant
            if image.mode in HIGH_DEPTH_MODES:
                values = np.asarray(image, np.float64)
                bad = int(np.size(values) - np.isfinite(values).sum())
                if bad:
                    raise DataError(
                        f"data.human_maps: {path} holds {bad} NaN or infinite value(s); expected a map "
                        "of finite values (a VQA-HAT PNG). Replace the file, or remove it (its question "
                        "keeps its other annotators' maps)."
                    )
                lo, hi = float(values.min()), float(values.max())
            else:
                lo, hi = image.convert("L").getextrema()
    except OSError as exc:
        raise DataError(f"data.human_maps: {path} is not a readable image ({exc}). Expected a VQA-HAT PNG.") from exc
    return lo == hi


def example_digest(example: Example) -> str:
    """sha256 of what one example's attribution maps depend on: its question id and text and its
    image's bytes (not the human maps or the answers): part of each map's cache key."""
    h = hashlib.sha256(json.dumps([example.question_id, example.question]).encode())
    h.update(hashlib.sha256(example.image_path.read_bytes()).digest())
    return h.hexdigest()


def digest_examples(examples: Sequence[Example], example_digests: Sequence[str] | None = None) -> str:
    """sha256 over what the selection depends on: ids, text, answers, image and map bytes.
    ``example_digests`` (:func:`example_digest` of each example, if already made) stand for the ids,
    text and image bytes, so no image is read twice."""
    h = hashlib.sha256()
    for i, ex in enumerate(examples):
        h.update((example_digests[i] if example_digests is not None else example_digest(ex)).encode())
        h.update(json.dumps([ex.answers, ex.multiple_choice_answer]).encode())
        for path in ex.human_map_paths:
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
