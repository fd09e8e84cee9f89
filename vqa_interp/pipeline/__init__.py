"""The stages of one run, one module each, chained by :func:`execute`:

``data`` (select, check) -> ``model`` (preflight, load) -> ``predict`` -> ``targets`` -> ``attribute``
(maps, cached) -> ``score`` (per-example table, floors and ceiling in the same pass; ``humans``,
``references``) -> ``sanity`` (optional) -> ``explain``. ``score`` runs in a forked process beside
``sanity`` and ``explain`` (Linux, CPU, ``scoring.fork``): it needs the maps, they need the model;
:mod:`vqa_interp.pipeline.schedule` decides who does what.

Each stage takes and returns plain data (settings dataclasses, the model interface, arrays,
DataFrames) so a notebook can call any of them alone; ``vqa_interp.run`` adds Hydra and MLflow
around :func:`execute`. Nothing here trains: the entry point makes sure the model exists first.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from vqa_interp.attribution.cache import MapCache
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry
from vqa_interp.data.selection import Selection
from vqa_interp.data.vqa import Example, digest_examples, example_digest
from vqa_interp.explain.compute import ExplainTables
from vqa_interp.metrics import run_metrics
from vqa_interp.metrics.humans import scoring_options
from vqa_interp.models.base import VqaModel
from vqa_interp.pipeline import memory as memory_stage
from vqa_interp.pipeline import model as model_stage
from vqa_interp.pipeline.attribute import attribute_targets, map_cache_for
from vqa_interp.pipeline.explain import explain_work_of, with_explain_columns
from vqa_interp.pipeline.predict import cached_predictions, image_loader
from vqa_interp.pipeline.schedule import score_and_explain
from vqa_interp.pipeline.score_cache import tables_work
from vqa_interp.pipeline.targets import map_keys, plan_targets

__all__ = ["execute", "RunOutputs", "timed", "scoring_options"]


@dataclass
class RunOutputs:
    """What a run produced, for tracking and for callers."""

    examples: list[Example]
    predictions: pd.DataFrame
    table: pd.DataFrame
    counts: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cache: MapCache | None = None
    model: VqaModel | None = None
    geometry: InputGeometry | None = None
    dataset: Dataset | None = None
    references: pd.DataFrame | None = None  # floors and ceiling per question (references.score_references)
    sanity: pd.DataFrame | None = None  # randomisation curves (analysis.sanity)
    explain: ExplainTables | None = None  # tokens, image share, faithfulness (explain.*)
    metrics: tuple[str, ...] = ()  # the metrics this run scored (scoring.metrics)


@contextmanager
def timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[f"time/{name}_s"] = time.perf_counter() - start


def execute(
    settings,
    dataset: Dataset,
    selection: Selection,
    checkpoint: Path | None,
    timings: dict,
    on_predictions: Callable[[pd.DataFrame], None] | None = None,
    also_k: Sequence[float] = (),
) -> RunOutputs:
    """Model -> predictions -> maps -> scores for validated settings, a data selection and the model's
    checkpoint (the entry point trains a trainable model, if needed, before calling this).

    ``also_k``: the other k values of a k sweep; their score tables are made from the same sorted
    maps and cached for those jobs (values these scoring options refuse are left out).
    ``on_predictions`` receives the predictions as soon as they exist (the run logs them then, so a
    later failure loses nothing already computed; maps are kept by the cache as they are made).
    """
    examples = selection.examples
    with timed(timings, "model"):
        model = model_stage.load(settings, checkpoint)
    load_images = image_loader(model, examples)
    question = model.encode([e.question for e in examples])
    if examples:
        with timed(timings, "memory"):  # every batch size from memory.budget and one sample's measured cost
            settings = replace(settings, batching=memory_stage.plan(settings, model, load_images([0]), question))
    with timed(timings, "digest"):
        digests = [example_digest(e) for e in examples]
        data_digest = digest_examples(examples, digests)
    with timed(timings, "predict"):
        predictions, predictions_hit = cached_predictions(settings, model, examples, load_images, question, data_digest)
    if on_predictions is not None:
        on_predictions(predictions)
    targets, skipped_targets = plan_targets(
        predictions, settings.attribution.target_policy, answer_key=lambda answer, index: model.answer_key(answer)
    )
    targets = map_keys(targets, digests)
    cache = map_cache_for(settings, model)
    with timed(timings, "attribution"):
        attribute_targets(model, settings, targets, cache, load_images, question, examples=examples, dataset=dataset)
    done = _scored_and_explained(
        settings, dataset, examples, predictions, targets, cache, model, load_images, question, data_digest, also_k
    )
    timings.update(done.timings)
    table, skipped_scores, references, sanity = done.table, done.skipped, done.references, done.sanity
    if references is not None and not len(table):
        references = None
    explain = None
    if len(table):
        explain, table = with_explain_columns(done.explained, table)
    metrics = run_metrics(settings.scoring.metrics)
    skipped = selection.skipped + skipped_targets + skipped_scores
    counts = _counts(examples, targets, table, predictions, cache, skipped, metrics, references)
    tags = _tags(settings, model, checkpoint, cache, data_digest, predictions_hit, done, references, explain)
    return RunOutputs(
        examples,
        predictions,
        table,
        counts,
        timings,
        tags,
        cache,
        model,
        model.geometry,
        dataset,
        references,
        sanity=sanity,
        explain=explain,
        metrics=metrics,
    )


def _scored_and_explained(
    settings, dataset, examples, predictions, targets, cache, model, load_images, question, data_digest, also_k
):
    """The score tables (read from the cache; what is missing is one item per question, taken by
    whoever is free) and the explain stage, scheduled together (:mod:`vqa_interp.pipeline.schedule`)."""
    options = scoring_options(settings)
    work = tables_work(
        settings,
        dataset,
        examples,
        predictions,
        targets,
        cache,
        model.geometry,
        data_digest,
        [k for k in also_k if options.accepts(k)],
        with_references=settings.analysis.baselines,
    )
    explaining = None
    if len(targets):
        explaining = explain_work_of(
            model, settings, dataset, examples, targets, cache, load_images, question, data_digest
        )
    return score_and_explain(
        settings, work, explaining, (model, dataset, examples, load_images, question), len(targets)
    )


def _counts(examples, targets, table, predictions, cache, skipped, metrics, references) -> dict[str, float]:
    """A run's counts (``count/*``) and the model's accuracy (``model/*``), for its metrics."""
    has = len(predictions) > 0
    counts = {
        "count/questions": len(examples),
        "count/maps": len(targets),
        "count/rows": len(table),
        "count/map_cache_hits": cache.hits,
        "count/map_cache_misses": cache.misses,
        **({"count/map_cache_waited": cache.waited} if cache.waited else {}),
        "model/accuracy": float(predictions["correct"].mean()) if has else float("nan"),
        "model/vqa_accuracy": float(predictions["vqa_accuracy"].mean()) if has else float("nan"),
        **{f"count/skipped_{reason}": n for reason, n in skipped.items() if n},
    }
    if len(table):
        counts["count/undefined_rows"] = int(table[[m for m in metrics if m in table]].isna().any(axis=1).sum())
        if "completeness_error" in table:
            counts["method/completeness_error_median"] = float(table["completeness_error"].median())
    if references is not None:
        single = int(len(examples) - (references["reference"] == "human_ceiling").sum())
        if single:
            counts["count/ceiling_single_annotator"] = single
    return counts


def _tags(settings, model, checkpoint, cache, data_digest, predictions_hit, done, references, explain) -> dict:
    """A run's provenance tags: digests, where its model and caches are, which caches hit."""
    s = settings.scoring
    tags = {
        "data_digest": data_digest,
        "checkpoint_digest": model.checkpoint_digest,
        "checkpoint_path": str(Path(checkpoint).resolve()) if checkpoint else "",
        "map_cache": str(cache.folder.resolve()),
        **model.tags(),
        "human_map": s.human if s.human != "annotator" else f"annotator {s.annotator}",
        "predictions_cache": "hit" if predictions_hit else "computed",
        "scores_cache": "hit" if done.hits["scores"] else "computed",
        "scoring_process": done.process,
        **(settings.batching.tags() if settings.batching is not None else {}),
    }
    if references is not None:
        tags["references_cache"] = "hit" if done.hits["references"] else "computed"
    if explain is not None:
        tags["explain_cache"] = ", ".join(
            f"{part} {'hit' if hit else 'computed'}" for part, hit in explain.hits.items()
        )
    return tags
