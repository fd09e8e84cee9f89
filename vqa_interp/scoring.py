"""The scorer's public API, kept at its original place: ``from vqa_interp.scoring import score``.

Everything lives in :mod:`vqa_interp.metrics` (the metric registry, one file per family); this
module re-exports it, with the run's reference protocols for notebook users:

- :func:`score`: maps against human maps, pair by pair (a run's default metric set);
- :func:`score_leave_one_out`: maps scored like the human ceiling, against each annotator's
  leave-one-out mean (the mean of the other annotators), averaged over the annotators;
- :func:`human_ceiling`: each annotator against the mean of the others, averaged;
- :func:`normalised`: ``(method - floor) / (ceiling - floor)`` of means over the same questions.

``METRICS`` is the tuple of built-in metric names; a metric registered later appears in
:func:`vqa_interp.metrics.metric_names`.
"""

import numpy as np
import pandas as pd

from vqa_interp.analysis.baselines import normalised
from vqa_interp.metrics import (
    DICE_KINDS,
    STEPS,
    TIE_POLICIES,
    PreparedMap,
    ScoringOptions,
    average_ranks,
    metric_names,
    prepare_map,
    prepare_maps,
    run_metrics,
    score,
    score_against_annotators,
    score_prepared,
    top_k_region,
)
from vqa_interp.metrics import humans as _humans
from vqa_interp.metrics.humans import leave_one_out_means

METRICS = metric_names()


def _options(k: float, size: int, options: dict) -> ScoringOptions:
    if "steps" in options:
        options["steps"] = tuple(options["steps"])
    return ScoringOptions(k=k, size=size, **options)


def score_leave_one_out(
    maps: np.ndarray, annotator_maps: np.ndarray, *, k: float = 0.1, size: int = 448, metrics=None, **options
) -> pd.DataFrame:
    """Score maps ``[T, H, W]`` of one question the way the human ceiling is scored: against each
    leave-one-out mean of its annotators' maps ``[n, H', W']`` (n >= 2), every metric averaged over
    the annotators. One row per map (columns as :func:`score`); ``options`` as :func:`score`."""
    opts = _options(k, size, options)
    names = run_metrics(metrics) if metrics is None or isinstance(metrics, str) else tuple(metrics)
    rows = _humans.score_leave_one_out(np.asarray(maps), np.asarray(annotator_maps), opts, names)
    return pd.DataFrame(rows, columns=[*names, "undefined"])


def human_ceiling(
    annotator_maps: np.ndarray, *, k: float = 0.1, size: int = 448, metrics=None, **options
) -> dict | None:
    """The human ceiling of one question: each annotator's map ``[n, H, W]`` against the mean of the
    others, every metric averaged over the annotators (None with one annotator)."""
    names = run_metrics(metrics) if metrics is None or isinstance(metrics, str) else tuple(metrics)
    return _humans.human_ceiling(np.asarray(annotator_maps), _options(k, size, options), names)


__all__ = [
    "score",
    "score_leave_one_out",
    "human_ceiling",
    "leave_one_out_means",
    "normalised",
    "score_prepared",
    "score_against_annotators",
    "PreparedMap",
    "ScoringOptions",
    "prepare_map",
    "prepare_maps",
    "average_ranks",
    "top_k_region",
    "METRICS",
    "metric_names",
    "run_metrics",
    "STEPS",
    "TIE_POLICIES",
    "DICE_KINDS",
]
