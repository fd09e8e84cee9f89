"""Stage 1, data: the selected examples of a dataset, checked against the scoring setup before any
model work."""

from __future__ import annotations

from vqa_interp.data.datasets import Dataset
from vqa_interp.data.selection import Selection
from vqa_interp.errors import ConfigError, DataError


def select(settings, dataset: Dataset) -> Selection:
    """The dataset's selected examples (``data.limit``, ``question_ids``, shards), refused when empty
    or when ``scoring.annotator`` names an annotator no selected question has."""
    selection = dataset.examples()
    if not selection.examples:
        raise DataError(
            f"data: the selection is empty (skipped: {dict(selection.skipped)}); check data.limit, "
            "data.question_ids, data.shard and the human maps folder."
        )
    check_annotator(settings, selection.examples)
    return selection


def check_annotator(settings, examples) -> None:
    """``scoring.human=annotator`` with an annotator no selected question has would score nothing:
    refuse it before any work, naming the annotators there are."""
    s = settings.scoring
    if s.human != "annotator":
        return
    suffix = f"_{s.annotator}"
    if not any(p.stem.endswith(suffix) for e in examples for p in e.human_map_paths):
        most = max((len(e.human_map_paths) for e in examples), default=0)
        raise ConfigError(
            f"scoring.annotator={s.annotator}: none of the {len(examples)} selected questions has a map "
            f"from annotator {s.annotator} ({{question_id}}{suffix}.png); they have at most {most} "
            f"annotators. Choose scoring.annotator between 1 and {most}, or scoring.human=mean."
        )


def dataset_input(settings, dataset: Dataset, selection: Selection) -> dict:
    """What the run scored, for its MLflow dataset input: ``name`` (dataset and split, with the shard),
    ``digest`` (of the dataset's signature and the selected question ids: two runs on the same
    questions share it), ``source`` (the data folder) and ``profile`` (questions, images, annotators)."""
    from vqa_interp.util.signature import short_signature

    examples = selection.examples
    d = settings.data
    name = f"{dataset.name} {d.split}" + (f" shard {d.shard + 1}/{d.num_shards}" if d.num_shards > 1 else "")
    digest = short_signature({"dataset": dataset.signature(), "questions": [e.question_id for e in examples]})
    return {
        "name": name,
        "digest": digest,
        "source": str(dataset.root() or ""),
        "profile": {
            "num_questions": len(examples),
            "num_images": len({e.image_id for e in examples}),
            "num_human_maps": sum(len(e.human_map_paths) for e in examples),
        },
    }
