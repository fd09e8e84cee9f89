"""Similarity of an attribution map to a human attention map: a registry of metrics, one file per
family (``rank``, ``overlap``, ...), each metric registered with its name, the features it needs,
its direction and range, and its slow reference (see :mod:`vqa_interp.metrics.registry`).

To add a metric: write a function of two :class:`PreparedMap` in a family file (new or existing),
decorate it with :func:`metric` giving its reference, and import that file below.
"""

# importing a family file registers its metrics; the order here is the column order of the tables
from vqa_interp.metrics import rank  # noqa: F401, I001
from vqa_interp.metrics import overlap  # noqa: F401, I001
from vqa_interp.metrics import saliency  # noqa: F401, I001
from vqa_interp.metrics import localisation  # noqa: F401, I001
from vqa_interp.metrics.engine import score, score_against_annotators, score_prepared, undefined_reason
from vqa_interp.metrics.prepare import (
    DICE_KINDS,
    STEPS,
    TIE_POLICIES,
    PreparedMap,
    ScoringOptions,
    apply_steps,
    average_ranks,
    prepare_map,
    prepare_maps,
    resize_maps,
    top_k_region,
)
from vqa_interp.metrics.registry import (
    REGISTRY,
    Metric,
    bounded_metrics,
    family_metrics,
    get,
    metric,
    headline_metrics,
    metric_names,
    run_metrics,
    selected,
)

__all__ = [
    "score",
    "score_prepared",
    "score_against_annotators",
    "undefined_reason",
    "PreparedMap",
    "ScoringOptions",
    "prepare_map",
    "prepare_maps",
    "resize_maps",
    "apply_steps",
    "average_ranks",
    "top_k_region",
    "REGISTRY",
    "Metric",
    "metric",
    "metric_names",
    "family_metrics",
    "bounded_metrics",
    "get",
    "run_metrics",
    "headline_metrics",
    "selected",
    "STEPS",
    "TIE_POLICIES",
    "DICE_KINDS",
]
