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

The scenes, questions and simulated annotators are :mod:`vqa_interp.data.scenes`; this module
writes them in the real formats.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from vqa_interp.data.scenes import (
    COLOURS,
    EVIDENCE_TOKENISATION,
    IMAGE_SIZE,
    NUMBER_WORDS,
    SHAPES,
    SIZES,
    SYNONYMS,
    decisive_positions,
    exact_question_mask,
    render_scene,
    sample_questions,
    sample_scene,
    simulate_annotator_map,
)
from vqa_interp.util.locking import file_lock

GENERATOR_VERSION = 13


def _ten_answers(
    answer: str, answer_type: str, rng: np.random.Generator, answer_pool: tuple[str, ...] = ()
) -> list[str]:
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
    pool = sorted(
        set(COLOURS) | set(SHAPES) | set(SIZES) | set(NUMBER_WORDS) | {"yes", "no", "red ball", "table", "dog"}
    )
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


def write_split(
    root: Path,
    split: str,
    n_images: int,
    questions_per_image: int,
    first_image_id: int,
    rng: np.random.Generator,
    with_human_maps: bool,
    n_annotators: int,
) -> int:
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
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": spec.question_type,
                    "answer_type": spec.answer_type,
                    "multiple_choice_answer": label,
                    "answers": [
                        {
                            "answer_id": i + 1,
                            "answer": a,
                            "answer_confidence": str(rng.choice(["yes", "yes", "yes", "maybe"])),
                        }
                        for i, a in enumerate(answers)
                    ],
                }
            )
            if with_human_maps:
                mask = exact_question_mask(spec, objects)
                Image.fromarray((mask * 255).astype(np.uint8), "L").save(mask_dir / f"{qid}.png")
                for n in range(1, n_annotators + 1):
                    human = simulate_annotator_map(spec, objects, rng)
                    Image.fromarray(human, "L").save(hat_dir / f"{qid}_{n}.png")
    common = {
        "info": _info(),
        "data_type": "mscoco",
        "data_subtype": f"{split}2014",
        "license": {"name": "CC BY 4.0", "url": ""},
    }
    _write_json_atomic(
        root / f"OpenEnded_mscoco_{split}2014_questions.json",
        {**common, "task_type": "Open-Ended", "questions": questions},
    )
    _write_json_atomic(
        root / f"MultipleChoice_mscoco_{split}2014_questions.json",
        {**common, "task_type": "Multiple-Choice", "num_choices": 18, "questions": mc_questions},
    )
    _write_json_atomic(root / f"mscoco_{split}2014_annotations.json", {**common, "annotations": annotations})
    if with_human_maps:
        _write_json_atomic(
            root / f"question_evidence_{split}2014.json",
            {**common, "tokenisation": EVIDENCE_TOKENISATION, "evidence": evidence},
        )
    return len(questions)


def generate_embedded(
    root: str | Path,
    *,
    seed: int = 0,
    n_train_images: int = 3000,
    n_val_images: int = 100,
    questions_per_image: int = 3,
    train_questions_per_image: int = 5,
    n_annotators: int = 3,
) -> Path:
    """Generate the embedded benchmark under ``root`` unless a complete copy is there already.

    Deterministic in its arguments; safe against concurrent callers (file lock) and killed runs
    (written into a temporary folder, renamed into place when complete).
    """
    root = Path(root)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_train_images": n_train_images,
        "n_val_images": n_val_images,
        "questions_per_image": questions_per_image,
        "train_questions_per_image": train_questions_per_image,
        "n_annotators": n_annotators,
        "image_size": IMAGE_SIZE,
    }
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / "manifest.json").exists():
            return root
        tmp = root.parent / f".{root.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        rng_train, rng_val = (np.random.default_rng([seed, s]) for s in (1, 2))
        manifest["n_train_questions"] = write_split(
            tmp, "train", n_train_images, train_questions_per_image, 1, rng_train, with_human_maps=False, n_annotators=0
        )
        manifest["n_val_questions"] = write_split(
            tmp,
            "val",
            n_val_images,
            questions_per_image,
            900001,
            rng_val,
            with_human_maps=True,
            n_annotators=n_annotators,
        )
        _write_json_atomic(tmp / "manifest.json", manifest)
        os.replace(tmp, root)
    return root
