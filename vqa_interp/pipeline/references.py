"""The floors and the ceiling of every run: each model-free baseline map (random, centre, image,
oracle) scored exactly like an attribution map (against the headline reference, and against the
leave-one-out means as ``loo/<metric>``), and the human ceiling (leave-one-annotator-out), on the
same questions and human maps as the run's method."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from vqa_interp.attribution.baselines import BASELINES, HUMAN_CEILING, baseline_map
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry
from vqa_interp.data.vqa import Example
from vqa_interp.metrics import PreparedMap, ScoringOptions, prepare_map, resize_maps, run_metrics
from vqa_interp.metrics.humans import LOO_PREFIX, QuestionHumans, ceiling_from, question_humans, score_both
from vqa_interp.pipeline.attribute import baseline_context
from vqa_interp.util.progress import tqdm

_CENTRE: dict = {}


def baseline_maps_for(
    example: Example, dataset: Dataset, geometry: InputGeometry, options: ScoringOptions, references: dict
) -> list[tuple[str, np.ndarray | PreparedMap]]:
    """The floors' maps for one question, resized (``(name, map)``; a floor a question lacks is left
    out). The centre map is the same for every question: it is prepared once."""
    context = baseline_context(example, dataset, geometry, references["seed"])
    out = []
    for name in BASELINES:
        options_of = references["baseline_options"].get(name)
        if name == "centre":
            key = (geometry, options, repr(options_of))
            if key not in _CENTRE:
                _CENTRE.clear()
                _CENTRE[key] = prepare_map(
                    resize_maps(baseline_map(name, context, options_of)[None], options.size, options.resample)[0],
                    options,
                )
            out.append((name, _CENTRE[key]))
            continue
        array = baseline_map(name, context, options_of)
        if array is not None:
            out.append((name, resize_maps(array[None], options.size, options.resample)[0]))
    return out


def reference_columns(metrics: Sequence[str]) -> list[str]:
    """The columns of a references table."""
    return ["question_id", "reference", *metrics, "undefined", *(LOO_PREFIX + m for m in metrics)]


def reference_rows(
    example: Example,
    names: Sequence[str],
    scores: dict[float, list[dict]],
    first: int,
    humans: QuestionHumans,
    options: ScoringOptions,
    metrics: Sequence[str],
    ks: Sequence[float],
) -> dict[float, list[dict]]:
    """One question's reference rows at each k: the floors (``names``, scored as rows ``first...`` of
    ``scores``) and the human ceiling (leave-one-annotator-out on its own annotators)."""
    ceiling = ceiling_from(humans, options, metrics, ks)
    out = {}
    for k in ks:
        rows = [
            {"question_id": example.question_id, "reference": name, **scores[k][first + i]}
            for i, name in enumerate(names)
        ]
        if ceiling is not None:
            rows.append({"question_id": example.question_id, "reference": HUMAN_CEILING, **ceiling[k]})
        out[k] = rows
    return out


def score_references(
    dataset: Dataset,
    examples: Sequence[Example],
    geometry: InputGeometry,
    options: ScoringOptions,
    *,
    human_mode: str,
    annotator: int,
    seed: int,
    baseline_options: dict[str, dict] | None = None,
    metrics: Sequence[str] | None = None,
    ks: Sequence[float] | None = None,
):
    """Every floor and the ceiling on the same questions and human maps as the run's method:
    one row per (question, reference) with every metric; ``reference`` in :data:`vqa_interp.attribution.baselines.REFERENCES`.

    Baselines are scored exactly like an attribution map (same human map, same scorer); the human
    ceiling is leave-one-annotator-out on the question's own annotators. A reference that does not
    exist for a question (no exact mask, one annotator) has no row. With ``ks``: a dict
    ``k -> table``, every map sorted once for all of them. (A run scores them in the same pass as
    its method's maps: :func:`vqa_interp.pipeline.score.question_work`.)
    """
    names = tuple(metrics or run_metrics())
    at_ks = tuple(dict.fromkeys(ks or (options.k,)))
    spec = {"ks": at_ks, "seed": seed, "baseline_options": baseline_options or {}}
    rows: dict[float, list[dict]] = {k: [] for k in at_ks}
    for example in tqdm(examples, desc="references", leave=False):
        humans = question_humans(dataset, example, geometry, options, human_mode, annotator)
        if humans is None:
            continue
        named = baseline_maps_for(example, dataset, geometry, options, spec)
        scores = score_both([m for _, m in named], humans, options, names, at_ks)
        for k, at_k in reference_rows(example, [n for n, _ in named], scores, 0, humans, options, names, at_ks).items():
            rows[k].extend(at_k)
    tables = {k: pd.DataFrame(rows[k], columns=reference_columns(names)) for k in at_ks}
    return tables if ks is not None else tables[options.k]
