"""Stage 6, scores: the per-example table (one row per question, method and target, every metric),
with the floors and the ceiling scored in the same pass from the same prepared human maps, as one
item of work per question (:func:`question_work`); the tables cached on disk by what they depend on
are :mod:`vqa_interp.pipeline.score_cache`."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd

from vqa_interp.attribution.cache import MapCache
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry
from vqa_interp.data.vqa import Example
from vqa_interp.metrics import ScoringOptions, resize_maps, run_metrics
from vqa_interp.metrics.humans import question_humans, score_both
from vqa_interp.pipeline.references import baseline_maps_for, reference_columns, reference_rows, score_references
from vqa_interp.util.shared_work import SharedWork


def row_fields(question_id, info, target, method: str, cache: MapCache) -> dict:
    """The per-example table's columns that are not scores: the question, the prediction, the target."""
    return {
        "question_id": question_id,
        "image_id": int(info["image_id"]),
        "question": info["question"],
        "answer": info["answer"],
        "answer_type": info["answer_type"],
        "question_type": info.get("question_type", ""),
        "prediction": info["prediction"],
        "confidence": float(info["confidence"]),
        "correct": bool(info["correct"]),
        "vqa_accuracy": float(info["vqa_accuracy"]),
        "method": method,
        "target": target.target,
        "target_answer": info["answer"] if target.target == "label" else info["prediction"],
        "on_prediction": bool(target.on_prediction),
        "map_key": target.map_key,
        **cache.extras(target.map_key),
    }


def reference_tables_with(
    rows_at: dict[float, list[dict]],
    rest: Sequence[Example],
    dataset: Dataset,
    geometry: InputGeometry,
    options: ScoringOptions,
    metrics: Sequence[str],
    references: dict,
    *,
    human_mode: str,
    annotator: int,
) -> dict[float, pd.DataFrame]:
    """k -> the floors and ceiling table: the rows scored beside the maps (``rows_at``), and those of
    the questions ``rest`` that had no map, scored here."""
    columns = reference_columns(metrics)
    tables = {k: pd.DataFrame(rows_at[k], columns=columns) for k in references["ks"]}
    if not rest:
        return tables
    more = score_references(
        dataset,
        rest,
        geometry,
        options,
        human_mode=human_mode,
        annotator=annotator,
        seed=references["seed"],
        baseline_options=references["baseline_options"],
        metrics=metrics,
        ks=references["ks"],
    )
    return {k: pd.concat([tables[k], more[k]], ignore_index=True) for k in references["ks"]}


def question_work(
    dataset: Dataset,
    examples: Sequence[Example],
    predictions: pd.DataFrame,
    targets: pd.DataFrame,
    cache: MapCache,
    geometry: InputGeometry,
    options: ScoringOptions,
    ks: Sequence[float],
    *,
    human_mode: str,
    annotator: int,
    method: str,
    metrics: Sequence[str] | None = None,
    device: str | None = None,
    references: dict | None = None,
) -> SharedWork:
    """The per-example tables at each ``k`` of ``ks`` (one row per question, method and target) as
    one item of work per question (any process or thread may take an item;
    :mod:`vqa_interp.util.shared_work`); its outcome is ``(k -> table, skipped, k -> references table
    or None)``. ``.run(scoring.workers)`` scores here: ``workers > 1`` scores questions on threads
    (rows keep the targets' order; the sort kernels release the GIL), but on 2-core machines threads
    were slower (a worker thread's malloc arena returns the pages of each freed map and faults them
    in again), so the default, 1, scores in the calling thread.

    Each question's human maps are loaded and prepared once and reused for all its targets, and
    each map is sorted once for all of ``ks`` (only its top-k region is made per k), so the jobs
    of a k sweep can take their tables from the first one.
    ``references`` (``{"ks", "seed", "baseline_options"}``): also score the floors and the ceiling
    (:func:`score_references`) at ``references["ks"]``, in the same pass, so each question's human
    maps are loaded and prepared once for both.
    ``device`` (a torch device such as ``"cuda"``): score in torch, batched per question
    (:mod:`vqa_interp.metrics.batch`); None: the NumPy scorer.
    """
    by_question = predictions.set_index("question_id")
    ks = tuple(dict.fromkeys(ks))
    all_ks = tuple(dict.fromkeys([*ks, *(references["ks"] if references else ())]))
    metrics = tuple(metrics or run_metrics())

    def score_question(question_id, group) -> dict[float, list[dict]] | None:
        example = examples[int(group["row"].iloc[0])]
        humans = question_humans(dataset, example, geometry, options, human_mode, annotator)
        if humans is None:
            return None
        info = by_question.loc[question_id]
        attributions = list(
            resize_maps(np.stack([cache.load(k) for k in group["map_key"]]), options.size, options.resample)
        )
        named = baseline_maps_for(example, dataset, geometry, options, references) if references else []
        scores = score_both(attributions + [m for _, m in named], humans, options, metrics, all_ks, device)
        rows: dict = {k: [] for k in ks}
        if references:
            rows["references"] = reference_rows(
                example,
                [name for name, _ in named],
                scores,
                len(attributions),
                humans,
                options,
                metrics,
                references["ks"],
            )
        for i, t in enumerate(group.itertuples(index=False)):
            common = row_fields(question_id, info, t, method, cache)
            for k in ks:
                rows[k].append({**common, **scores[k][i]})
        return rows

    def finish(results: list) -> tuple:
        return _question_tables(
            results, ks, examples, targets, dataset, geometry, options, metrics, references, human_mode, annotator
        )

    groups = list(targets.groupby("question_id", sort=False))
    return SharedWork(
        [partial(score_question, question_id, group) for question_id, group in groups], finish, label="score"
    )


def _question_tables(
    results: list, ks, examples, targets, dataset, geometry, options, metrics, references, human_mode, annotator
) -> tuple:
    """The outcome of :func:`question_work` from its items' results (None: a question without the
    human maps it needs): ``(k -> table, skipped, k -> references table or None)``; the floors and
    ceiling of questions without a target are scored here."""
    skipped: Counter = Counter()
    rows: dict[float, list[dict]] = {k: [] for k in ks}
    reference_rows_at: dict[float, list[dict]] = {k: [] for k in (references["ks"] if references else ())}
    for result in results:
        if result is None:
            skipped["annotator_missing"] += 1
            continue
        for k in ks:
            rows[k].extend(result[k])
        for k, at_k in result.get("references", {}).items():
            reference_rows_at[k].extend(at_k)
    tables = {k: pd.DataFrame(rows[k]) for k in ks}
    if not references:
        return tables, skipped, None
    # questions without a target (none planned for them) get their floors and ceiling here
    done = set(targets["question_id"])
    rest = [e for e in examples if e.question_id not in done]
    return (
        tables,
        skipped,
        reference_tables_with(
            reference_rows_at,
            rest,
            dataset,
            geometry,
            options,
            metrics,
            references,
            human_mode=human_mode,
            annotator=annotator,
        ),
    )
