"""The embedded benchmark: a deterministic VQA dataset written in the real on-disk formats.

It lets the whole tool run on a fresh machine with nothing downloaded, through the same readers
as the real data (VQA 1.0 JSON, COCO-style JPEGs, VQA-HAT PNGs). Layout under ``root``::

    {split}2014/COCO_{split}2014_{image_id:012d}.jpg          RGB JPEG scenes, 128x128
    OpenEnded_mscoco_{split}2014_questions.json               VQA 1.0 question schema
    MultipleChoice_mscoco_{split}2014_questions.json          + 18 ``multiple_choices``
    mscoco_{split}2014_annotations.json                       10 answers per question
    question_evidence_{split}2014.json                        question_id -> positions of the words
                                                              the answer rests on (the attribute
                                                              asked about, the object's name)
    vqahat_val/{question_id}_{n}.png                          3 simulated annotators, n = 1..3
    exact_masks_val/{question_id}.png                         exact mask of the objects the question
                                                              is about (255 inside; all 0 when no
                                                              object decides the answer)
    manifest.json                                             generator version, seed, counts

Scenes hold 3-7 simple objects (shape x colour x size) over a noisy background with clutter lines.
Questions are templated over three answer types (yes/no, number, other) and each answer depends on
specific objects. A simulated annotator's map is the exact mask, shifted and blurred with the
annotator's own scale, plus a glance at one other object and background noise; where no object
decides the answer ("is there a ...?" -> no, "how many ...?" -> 0) the map is diffuse.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter, shift as nd_shift

from vqa_interp.util.locking import file_lock

GENERATOR_VERSION = 13
IMAGE_SIZE = 128
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "white": (245, 245, 245),
}
SIZES = {"small": 12, "large": 20}
# what some human answerers say instead (VQA answers are free text: "red", "dark red", "maroon")
SYNONYMS = {
    "red": ("dark red", "maroon"), "green": ("dark green", "lime"), "blue": ("navy", "light blue"),
    "yellow": ("gold",), "purple": ("violet",), "orange": ("dark orange",), "cyan": ("teal", "turquoise"),
    "white": ("off white",), "circle": ("round", "ball"), "square": ("box", "rectangle"),
    "triangle": ("pyramid",), "small": ("little", "tiny"), "large": ("big",),
}
NUMBER_WORDS = ("0", "1", "2", "3", "4", "5", "6", "7")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: int
    cy: int

    @property
    def radius(self) -> int:
        return SIZES[self.size]


@dataclass(frozen=True)
class QuestionSpec:
    question: str
    answer: str
    answer_type: str
    question_type: str
    relevant: tuple[int, ...]  # indices of the objects that decide the answer
    # ambiguous questions ("what color is the small object?" with several small objects): each
    # human answerer picks one of these, so the 10 answers disagree as they do in VQA
    answer_pool: tuple[str, ...] = ()
    # the words the answer rests on: the attribute asked about and the words that name the object
    # ("What color is the circle?" -> color, circle); written to question_evidence_{split}.json
    decisive: tuple[str, ...] = ()


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, fill) -> None:
    r, x, y = obj.radius, obj.cx, obj.cy
    if obj.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)


def object_mask(obj: SceneObject, size: int = IMAGE_SIZE) -> np.ndarray:
    """Exact binary mask of one object, ``[size, size]`` bool."""
    canvas = Image.new("L", (size, size), 0)
    _draw_object(ImageDraw.Draw(canvas), obj, 255)
    return np.asarray(canvas) > 0


def sample_scene(rng: np.random.Generator) -> list[SceneObject]:
    """3-7 objects, centres kept apart enough that most of each object stays visible."""
    n_objects = int(rng.integers(3, 8))
    objects: list[SceneObject] = []
    for _ in range(200):
        if len(objects) == n_objects:
            break
        size = str(rng.choice(list(SIZES)))
        r = SIZES[size]
        cx, cy = (int(v) for v in rng.integers(r + 2, IMAGE_SIZE - r - 2, size=2))
        # partial overlap is allowed (real scenes have it), full occlusion is not
        if all(np.hypot(cx - o.cx, cy - o.cy) > 0.8 * (r + o.radius) for o in objects):
            objects.append(
                SceneObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), size, cx, cy)
            )
    return objects


def render_scene(objects: list[SceneObject], rng: np.random.Generator) -> Image.Image:
    """RGB image ``[IMAGE_SIZE, IMAGE_SIZE, 3]`` with a noisy background and clutter lines."""
    base = rng.integers(90, 170)
    background = np.clip(base + rng.normal(0, 12, (IMAGE_SIZE, IMAGE_SIZE, 1)), 0, 255)
    background = np.repeat(background, 3, axis=2).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):  # clutter
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, IMAGE_SIZE, size=4))
        grey = int(rng.integers(40, 220))
        draw.line([x0, y0, x1, y1], fill=(grey, grey, grey), width=int(rng.integers(1, 3)))
    for obj in objects:
        jitter = rng.integers(-20, 21, size=3)
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[obj.colour], jitter))
        _draw_object(draw, obj, fill)
    return image


def _unique(objects, key, value) -> list[int]:
    return [i for i, o in enumerate(objects) if getattr(o, key) == value]


def sample_questions(objects: list[SceneObject], rng: np.random.Generator, n: int) -> list[QuestionSpec]:
    """``n`` distinct templated questions about the scene (fewer when the scene allows fewer)."""
    candidates: list[QuestionSpec] = []
    for shape in SHAPES:
        idx = _unique(objects, "shape", shape)
        if len(idx) == 1:
            o = objects[idx[0]]
            candidates.append(QuestionSpec(f"What color is the {shape}?", o.colour, "other", "what color is the", tuple(idx),
                                            decisive=("color", shape)))
            colour = o.colour if rng.random() < 0.5 else str(rng.choice(list(COLOURS)))
            candidates.append(QuestionSpec(f"Is the {shape} {colour}?", "yes" if o.colour == colour else "no", "yes/no", "is the",
                                            tuple(idx), decisive=(shape, colour)))
            candidates.append(QuestionSpec(f"What size is the {shape}?", o.size, "other", "what size is the", tuple(idx),
                                            decisive=("size", shape)))
        candidates.append(QuestionSpec(f"How many {shape}s are there?", NUMBER_WORDS[min(len(idx), 7)], "number", "how many",
                                        tuple(idx), decisive=(f"{shape}s",)))
    for colour in COLOURS:
        idx = _unique(objects, "colour", colour)
        if len(idx) == 1:
            o = objects[idx[0]]
            candidates.append(QuestionSpec(f"What shape is the {colour} object?", o.shape, "other", "what shape is the",
                                            tuple(idx), decisive=("shape", colour)))
        if idx or rng.random() < 0.3:
            candidates.append(QuestionSpec(f"How many {colour} objects are there?", NUMBER_WORDS[min(len(idx), 7)], "number",
                                            "how many", tuple(idx), decisive=(colour,)))
    # counting everything (or every object of a size) is the hard, low-confidence kind, as in VQA
    candidates.append(QuestionSpec("How many objects are there?", NUMBER_WORDS[min(len(objects), 7)], "number",
                                   "how many", tuple(range(len(objects))), decisive=("objects",)))
    for size in SIZES:
        idx = _unique(objects, "size", size)
        candidates.append(QuestionSpec(f"How many {size} objects are there?", NUMBER_WORDS[min(len(idx), 7)],
                                       "number", "how many", tuple(idx), decisive=(size,)))
    # under-specified questions, as VQA has them: every object fits, so answers spread widely
    every = tuple(range(len(objects)))
    candidates.append(QuestionSpec("What color is the object?", "", "other", "what color is the", every,
                                   tuple(o.colour for o in objects) + ("colorful", "gray"), decisive=("color",)))
    candidates.append(QuestionSpec("What shape is the object?", "", "other", "what shape is the", every,
                                   tuple(o.shape for o in objects) + ("shapes", "geometric"), decisive=("shape",)))
    for size in SIZES:
        idx = _unique(objects, "size", size)
        if len(idx) >= 2:  # ambiguous: several objects fit
            colours = tuple(objects[i].colour for i in idx)
            shapes = tuple(objects[i].shape for i in idx)
            candidates.append(QuestionSpec(f"What color is the {size} object?", "", "other", "what color is the",
                                           tuple(idx), colours, decisive=("color", size)))
            candidates.append(QuestionSpec(f"What shape is the {size} object?", "", "other", "what shape is the",
                                           tuple(idx), shapes, decisive=("shape", size)))
    for _ in range(2):
        if rng.random() < 0.5 and objects:
            o = objects[int(rng.integers(len(objects)))]
            colour, shape = o.colour, o.shape
        else:
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        idx = tuple(i for i, o in enumerate(objects) if o.colour == colour and o.shape == shape)
        article = "an" if colour[0] in "aeiou" else "a"   # "an orange circle"
        candidates.append(QuestionSpec(f"Is there {article} {colour} {shape}?", "yes" if idx else "no", "yes/no",
                                       "is there a", idx, decisive=(colour, shape)))
    seen, unique = set(), []
    for c in candidates:
        if c.question not in seen:
            seen.add(c.question)
            unique.append(c)
    # pick an answer type uniformly, then a question of that type, so that the three types are
    # about equally frequent (counting questions would otherwise dominate)
    by_type: dict[str, list[QuestionSpec]] = {}
    for c in unique:
        by_type.setdefault(c.answer_type, []).append(c)
    chosen: list[QuestionSpec] = []
    while len(chosen) < n and any(by_type.values()):
        types = sorted(t for t, qs in by_type.items() if qs)
        pool = by_type[types[int(rng.integers(len(types)))]]
        # under-specified questions are 40% of "other" questions when the scene has them: they are
        # where a model is unsure (real VQA has many), which the confidence analysis needs
        ambiguous = [i for i, q in enumerate(pool) if q.answer_pool]
        if ambiguous and len(ambiguous) < len(pool) and rng.random() < 0.4:
            index = ambiguous[int(rng.integers(len(ambiguous)))]
        else:
            plain = [i for i, q in enumerate(pool) if not q.answer_pool] or list(range(len(pool)))
            index = plain[int(rng.integers(len(plain)))]
        chosen.append(pool.pop(index))
    return chosen


EVIDENCE_TOKENISATION = "pytorch-vqa: lower-case, final character dropped, split on single spaces; positions from 0"


def decisive_positions(spec: QuestionSpec) -> list[int]:
    """Positions (0-based, in the question's tokens) of the words the answer rests on."""
    from vqa_interp.data.answers import tokenize_question

    return [i for i, token in enumerate(tokenize_question(spec.question)) if token in spec.decisive]


def exact_question_mask(spec: QuestionSpec, objects: list[SceneObject]) -> np.ndarray:
    """Union of the masks of the objects that decide the answer, ``[S, S]`` bool (all False if none)."""
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    for i in spec.relevant:
        mask |= object_mask(objects[i])
    return mask


def simulate_annotator_map(
    spec: QuestionSpec, objects: list[SceneObject], rng: np.random.Generator
) -> np.ndarray:
    """One simulated VQA-HAT map, ``[S, S]`` uint8 (white = attended).

    The annotator looks at the deciding objects (shifted by a few pixels, blurred at their own
    scale), glances at one other object, and leaves some background noise. With no deciding
    object the map is diffuse: broad blobs over a few objects and the centre.
    """
    exact = exact_question_mask(spec, objects).astype(float)
    sigma = float(rng.uniform(3.0, 7.0))
    if exact.any():
        dy, dx = rng.normal(0, 2.0, size=2)
        attention = gaussian_filter(nd_shift(exact, (dy, dx), order=0), sigma)
        others = [i for i in range(len(objects)) if i not in spec.relevant]
        if others and rng.random() < 0.5:
            glance = object_mask(objects[int(rng.choice(others))]).astype(float)
            attention += rng.uniform(0.1, 0.3) * gaussian_filter(glance, sigma)
    else:
        attention = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
        looked_at = rng.permutation(len(objects))[: max(1, len(objects) // 2)]
        for i in looked_at:
            attention += rng.uniform(0.3, 1.0) * object_mask(objects[int(i)]).astype(float)
        attention = gaussian_filter(attention, 3 * sigma)
        yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
        centre = IMAGE_SIZE / 2
        attention += 0.3 * attention.max() * np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * (IMAGE_SIZE / 3) ** 2))
    attention += gaussian_filter(rng.random((IMAGE_SIZE, IMAGE_SIZE)), 4) * 0.1 * attention.max()
    attention -= attention.min()
    attention /= attention.max() + 1e-12
    return (attention * 255).round().astype(np.uint8)


def _ten_answers(answer: str, answer_type: str, rng: np.random.Generator,
                 answer_pool: tuple[str, ...] = ()) -> list[str]:
    """10 human answers: mostly the true one; counts draw off-by-one disagreement, as in VQA;
    for an ambiguous question each answerer picks from ``answer_pool``."""
    if answer_pool:
        return [_in_own_words(str(a), rng) for a in rng.choice(answer_pool, size=10)]
    if answer_type == "number":
        n_wrong = int(rng.choice([0, 1, 2, 3, 4, 5]))
        value = int(answer)
        wrong = [str(max(0, value + int(rng.choice([-1, 1])))) for _ in range(n_wrong)]
        wrong = [w if w != answer else str(value + 1) for w in wrong]
    else:
        pool = ["yes", "no"] if answer_type == "yes/no" else list(COLOURS) + list(SHAPES) + list(SIZES)
        n_wrong = int(rng.choice([0, 0, 0, 1, 1, 2, 3]))
        wrong = [str(rng.choice([p for p in pool if p != answer])) for _ in range(n_wrong)]
    answers = [_in_own_words(a, rng) for a in [answer] * (10 - len(wrong)) + wrong]
    rng.shuffle(answers)
    return answers


def _in_own_words(answer: str, rng: np.random.Generator) -> str:
    """A quarter of answerers use a synonym, when the answer has one."""
    if answer in SYNONYMS and rng.random() < 0.25:
        return str(rng.choice(SYNONYMS[answer]))
    return answer


def _most_common(answers: list[str]) -> str:
    """VQA's multiple_choice_answer: the most frequent answer (first seen wins a tie)."""
    counts = Counter(answers)
    return max(counts, key=lambda a: (counts[a], -answers.index(a)))


def _multiple_choices(answer: str, rng: np.random.Generator) -> list[str]:
    pool = sorted(set(COLOURS) | set(SHAPES) | set(SIZES) | set(NUMBER_WORDS) | {"yes", "no", "red ball", "table", "dog"})
    others = [p for p in pool if p != answer]
    choices = [answer] + [str(c) for c in rng.choice(others, size=17, replace=False)]
    rng.shuffle(choices)
    return choices


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _info() -> dict:
    return {"description": "vqa-interp embedded benchmark (generated)", "version": "1.0", "year": 2026}


def write_split(root: Path, split: str, n_images: int, questions_per_image: int, first_image_id: int,
                rng: np.random.Generator, with_human_maps: bool, n_annotators: int) -> int:
    """Write one split in the VQA 1.0 layout; returns the number of questions written."""
    image_dir = root / f"{split}2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    hat_dir, mask_dir = root / f"vqahat_{split}", root / f"exact_masks_{split}"
    if with_human_maps:
        hat_dir.mkdir(exist_ok=True)
        mask_dir.mkdir(exist_ok=True)
    questions, mc_questions, annotations, evidence = [], [], [], {}
    for image_id in range(first_image_id, first_image_id + n_images):
        objects = sample_scene(rng)
        render_scene(objects, rng).save(image_dir / f"COCO_{split}2014_{image_id:012d}.jpg", quality=92)
        for j, spec in enumerate(sample_questions(objects, rng, questions_per_image)):
            qid = image_id * 1000 + j
            questions.append({"image_id": image_id, "question": spec.question, "question_id": qid})
            evidence[str(qid)] = decisive_positions(spec)
            answers = _ten_answers(spec.answer, spec.answer_type, rng, spec.answer_pool)
            label = _most_common(answers) if spec.answer_pool else spec.answer
            mc_questions.append({**questions[-1], "multiple_choices": _multiple_choices(label, rng)})
            annotations.append({
                "question_id": qid, "image_id": image_id, "question_type": spec.question_type,
                "answer_type": spec.answer_type, "multiple_choice_answer": label,
                "answers": [{"answer_id": i + 1, "answer": a,
                             "answer_confidence": str(rng.choice(["yes", "yes", "yes", "maybe"]))}
                            for i, a in enumerate(answers)],
            })
            if with_human_maps:
                mask = exact_question_mask(spec, objects)
                Image.fromarray((mask * 255).astype(np.uint8), "L").save(mask_dir / f"{qid}.png")
                for n in range(1, n_annotators + 1):
                    human = simulate_annotator_map(spec, objects, rng)
                    Image.fromarray(human, "L").save(hat_dir / f"{qid}_{n}.png")
    common = {"info": _info(), "data_type": "mscoco", "data_subtype": f"{split}2014", "license": {"name": "CC BY 4.0", "url": ""}}
    _write_json_atomic(root / f"OpenEnded_mscoco_{split}2014_questions.json",
                       {**common, "task_type": "Open-Ended", "questions": questions})
    _write_json_atomic(root / f"MultipleChoice_mscoco_{split}2014_questions.json",
                       {**common, "task_type": "Multiple-Choice", "num_choices": 18, "questions": mc_questions})
    _write_json_atomic(root / f"mscoco_{split}2014_annotations.json", {**common, "annotations": annotations})
    if with_human_maps:
        _write_json_atomic(root / f"question_evidence_{split}2014.json",
                           {**common, "tokenisation": EVIDENCE_TOKENISATION, "evidence": evidence})
    return len(questions)


def generate_embedded(root: str | Path, *, seed: int = 0, n_train_images: int = 3000,
                      n_val_images: int = 100, questions_per_image: int = 3,
                      train_questions_per_image: int = 5, n_annotators: int = 3) -> Path:
    """Generate the embedded benchmark under ``root`` unless a complete copy is there already.

    Deterministic in its arguments; safe against concurrent callers (file lock) and killed runs
    (written into a temporary folder, renamed into place when complete).
    """
    root = Path(root)
    manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "n_train_images": n_train_images,
                "n_val_images": n_val_images, "questions_per_image": questions_per_image,
                "train_questions_per_image": train_questions_per_image,
                "n_annotators": n_annotators, "image_size": IMAGE_SIZE}
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / "manifest.json").exists():
            return root
        tmp = root.parent / f".{root.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        rng_train, rng_val = (np.random.default_rng([seed, s]) for s in (1, 2))
        manifest["n_train_questions"] = write_split(tmp, "train", n_train_images, train_questions_per_image, 1,
                                                    rng_train, with_human_maps=False, n_annotators=0)
        manifest["n_val_questions"] = write_split(tmp, "val", n_val_images, questions_per_image, 900001,
                                                  rng_val, with_human_maps=True, n_annotators=n_annotators)
        _write_json_atomic(tmp / "manifest.json", manifest)
        os.replace(tmp, root)
    return root
