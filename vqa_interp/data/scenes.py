"""The embedded benchmark's scenes, questions and simulated annotators: 3-7 simple objects
(shape x colour x size) over a noisy background with clutter lines; templated questions over three
answer types (yes/no, number, other), each answer resting on specific objects and words; a simulated
annotator's map is the exact mask, shifted and blurred at the annotator's own scale, plus a glance at
one other object and background noise (diffuse where no object decides the answer). Images are
``[IMAGE_SIZE, IMAGE_SIZE]``; every function draws from the ``rng`` it is given, in a fixed order
(the benchmark of a seed never changes: tests/test_embedded.py holds its fingerprint)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift

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
    "red": ("dark red", "maroon"),
    "green": ("dark green", "lime"),
    "blue": ("navy", "light blue"),
    "yellow": ("gold",),
    "purple": ("violet",),
    "orange": ("dark orange",),
    "cyan": ("teal", "turquoise"),
    "white": ("off white",),
    "circle": ("round", "ball"),
    "square": ("box", "rectangle"),
    "triangle": ("pyramid",),
    "small": ("little", "tiny"),
    "large": ("big",),
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
            objects.append(SceneObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), size, cx, cy))
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


def _unique(objects, key, value) -> list[int]:
    return [i for i, o in enumerate(objects) if getattr(o, key) == value]


def _spec(question, answer, answer_type, question_type, relevant, pool=(), *, decisive) -> QuestionSpec:
    return QuestionSpec(question, answer, answer_type, question_type, tuple(relevant), tuple(pool), tuple(decisive))


def _shape_questions(objects: list[SceneObject], rng: np.random.Generator) -> list[QuestionSpec]:
    """Colour, yes/no colour, size and count of each shape (the first three where one object has it)."""
    out = []
    for shape in SHAPES:
        idx = _unique(objects, "shape", shape)
        if len(idx) == 1:
            o = objects[idx[0]]
            out.append(
                _spec(
                    f"What color is the {shape}?",
                    o.colour,
                    "other",
                    "what color is the",
                    idx,
                    decisive=("color", shape),
                )
            )
            colour = o.colour if rng.random() < 0.5 else str(rng.choice(list(COLOURS)))
            out.append(
                _spec(
                    f"Is the {shape} {colour}?",
                    "yes" if o.colour == colour else "no",
                    "yes/no",
                    "is the",
                    idx,
                    decisive=(shape, colour),
                )
            )
            out.append(
                _spec(f"What size is the {shape}?", o.size, "other", "what size is the", idx, decisive=("size", shape))
            )
        out.append(
            _spec(
                f"How many {shape}s are there?",
                NUMBER_WORDS[min(len(idx), 7)],
                "number",
                "how many",
                idx,
                decisive=(f"{shape}s",),
            )
        )
    return out


def _colour_questions(objects: list[SceneObject], rng: np.random.Generator) -> list[QuestionSpec]:
    """The shape of each colour held by one object; the count of a colour (an absent one 30% of the time)."""
    out = []
    for colour in COLOURS:
        idx = _unique(objects, "colour", colour)
        if len(idx) == 1:
            out.append(
                _spec(
                    f"What shape is the {colour} object?",
                    objects[idx[0]].shape,
                    "other",
                    "what shape is the",
                    idx,
                    decisive=("shape", colour),
                )
            )
        if idx or rng.random() < 0.3:
            out.append(
                _spec(
                    f"How many {colour} objects are there?",
                    NUMBER_WORDS[min(len(idx), 7)],
                    "number",
                    "how many",
                    idx,
                    decisive=(colour,),
                )
            )
    return out


def _count_questions(objects: list[SceneObject]) -> list[QuestionSpec]:
    """Counting everything, or every object of a size: the hard, low-confidence kind, as in VQA."""
    out = [
        _spec(
            "How many objects are there?",
            NUMBER_WORDS[min(len(objects), 7)],
            "number",
            "how many",
            range(len(objects)),
            decisive=("objects",),
        )
    ]
    for size in SIZES:
        idx = _unique(objects, "size", size)
        out.append(
            _spec(
                f"How many {size} objects are there?",
                NUMBER_WORDS[min(len(idx), 7)],
                "number",
                "how many",
                idx,
                decisive=(size,),
            )
        )
    return out


def _ambiguous_questions(objects: list[SceneObject]) -> list[QuestionSpec]:
    """Under-specified questions, as VQA has them: several objects fit, so the answers spread widely."""
    every = range(len(objects))
    out = [
        _spec(
            "What color is the object?",
            "",
            "other",
            "what color is the",
            every,
            tuple(o.colour for o in objects) + ("colorful", "gray"),
            decisive=("color",),
        ),
        _spec(
            "What shape is the object?",
            "",
            "other",
            "what shape is the",
            every,
            tuple(o.shape for o in objects) + ("shapes", "geometric"),
            decisive=("shape",),
        ),
    ]
    for size in SIZES:
        idx = _unique(objects, "size", size)
        if len(idx) >= 2:
            out.append(
                _spec(
                    f"What color is the {size} object?",
                    "",
                    "other",
                    "what color is the",
                    idx,
                    tuple(objects[i].colour for i in idx),
                    decisive=("color", size),
                )
            )
            out.append(
                _spec(
                    f"What shape is the {size} object?",
                    "",
                    "other",
                    "what shape is the",
                    idx,
                    tuple(objects[i].shape for i in idx),
                    decisive=("shape", size),
                )
            )
    return out


def _existence_questions(objects: list[SceneObject], rng: np.random.Generator) -> list[QuestionSpec]:
    """Two "is there a <colour> <shape>?" questions, half of them about an object in the scene."""
    out = []
    for _ in range(2):
        if rng.random() < 0.5 and objects:
            o = objects[int(rng.integers(len(objects)))]
            colour, shape = o.colour, o.shape
        else:
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        idx = tuple(i for i, o in enumerate(objects) if o.colour == colour and o.shape == shape)
        article = "an" if colour[0] in "aeiou" else "a"  # "an orange circle"
        out.append(
            _spec(
                f"Is there {article} {colour} {shape}?",
                "yes" if idx else "no",
                "yes/no",
                "is there a",
                idx,
                decisive=(colour, shape),
            )
        )
    return out


def _choose(candidates: list[QuestionSpec], rng: np.random.Generator, n: int) -> list[QuestionSpec]:
    """``n`` distinct questions: an answer type picked uniformly, then a question of that type, so that
    the three types are about equally frequent (counting questions would otherwise dominate)."""
    seen, by_type = set(), {}
    for c in candidates:
        if c.question not in seen:
            seen.add(c.question)
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


def sample_questions(objects: list[SceneObject], rng: np.random.Generator, n: int) -> list[QuestionSpec]:
    """``n`` distinct templated questions about the scene (fewer when the scene allows fewer)."""
    candidates = _shape_questions(objects, rng) + _colour_questions(objects, rng) + _count_questions(objects)
    candidates += _ambiguous_questions(objects) + _existence_questions(objects, rng)
    return _choose(candidates, rng, n)


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


def simulate_annotator_map(spec: QuestionSpec, objects: list[SceneObject], rng: np.random.Generator) -> np.ndarray:
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
        attention += (
            0.3 * attention.max() * np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * (IMAGE_SIZE / 3) ** 2))
        )
    attention += gaussian_filter(rng.random((IMAGE_SIZE, IMAGE_SIZE)), 4) * 0.1 * attention.max()
    attention -= attention.min()
    attention /= attention.max() + 1e-12
    return (attention * 255).round().astype(np.uint8)
