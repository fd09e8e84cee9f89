"""Which questions a run evaluates: those with human maps (or the ``question_ids`` given), then
``limit``, then the shard; every selected image is checked before anything else runs."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vqa_interp.data.images import image_problem
from vqa_interp.data.vqa import (
    SOURCES,
    DataPaths,
    Example,
    image_path_of,
    index_human_maps,
    is_constant_image,
    read_questions,
    read_records,
)
from vqa_interp.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """The evaluated examples and what was left out, with the reason."""

    examples: list[Example]
    skipped: Counter = field(default_factory=Counter)


def load_examples(
    paths: DataPaths,
    *,
    limit: int | None = None,
    question_ids: Sequence[int] | None = None,
    num_shards: int = 1,
    shard: int = 0,
    skip_missing_images: bool = False,
    skip_bad_images: bool = False,
) -> Selection:
    """The questions that have human maps, in ascending question-id order, then selected.

    Selection order: explicit ``question_ids`` (else every question with a map), then ``limit``
    (the first N), then shard ``shard`` of ``num_shards`` (round-robin, so shards are balanced and
    their union is the unsharded selection). Every selected image is checked before anything
    else runs: an empty, truncated or undecodable one stops the selection with its path named, or
    with ``skip_bad_images`` is left out and counted (``bad_image``).
    """
    loaded = read_questions(paths)
    questions = loaded[0]
    maps = index_human_maps(paths.human_maps)
    if not maps:
        raise DataError(
            f"data.human_maps: {paths.human_maps} holds no {{question_id}}_{{n}}.png files. "
            f"Expected {SOURCES['human_maps']}."
        )
    skipped: Counter = Counter()
    wanted = _wanted(question_ids, questions, maps, paths, skipped)
    if limit is not None:
        wanted = wanted[:limit]
    wanted = wanted[shard::num_shards]
    examples = []
    for record in read_records(paths, wanted, loaded):
        qid = record.question_id
        image_path = image_path_of(paths, record.image_id)
        if not _image_usable(image_path, qid, skipped, skip_missing_images, skip_bad_images):
            continue
        usable = [p for p in maps[qid] if not is_constant_image(p)]
        skipped["constant_human_map"] += len(maps[qid]) - len(usable)
        if not usable:
            skipped["all_human_maps_constant"] += 1
            continue
        examples.append(Example(**vars(record), image_path=image_path, human_map_paths=usable))
    return Selection(examples, skipped)


def _wanted(question_ids, questions: dict, maps: dict, paths: DataPaths, skipped: Counter) -> list[int]:
    """The explicit ``question_ids`` (each must have a question and a human map), else every
    question with a map in ascending id order (maps without a question are counted)."""
    if question_ids is None:
        skipped["human_map_without_question"] = sum(1 for q in maps if q not in questions)
        return sorted(q for q in maps if q in questions)
    wanted = [int(q) for q in question_ids]
    unknown = [q for q in wanted if q not in questions or q not in maps]
    if unknown:
        raise DataError(
            f"data.question_ids: {unknown[:10]} have no question or no human map in "
            f"{paths.questions} / {paths.human_maps}."
        )
    return wanted


def _image_usable(image_path: Path, qid: int, skipped: Counter, skip_missing: bool, skip_bad: bool) -> bool:
    """Whether a question's image can be read; a missing or damaged one is skipped and counted when
    allowed, else one error naming the file and the fix."""
    if not image_path.exists():
        if skip_missing:
            skipped["missing_image"] += 1
            return False
        raise DataError(
            f"data.images: {image_path} (image of question {qid}) does not exist. "
            f"Expected {SOURCES['images']}. Place it there, or set "
            f"data.skip_missing_images=true to skip such questions (they are counted)."
        )
    problem = image_problem(image_path)
    if problem:
        if skip_bad:
            log.warning("data.images: %s (image of question %s) is %s: skipped", image_path, qid, problem)
            skipped["bad_image"] += 1
            return False
        raise DataError(
            f"data.images: {image_path} (image of question {qid}) is {problem}. Replace it with "
            f"the original file, or set data.skip_bad_images=true to skip such questions "
            f"(they are counted)."
        )
    return True
