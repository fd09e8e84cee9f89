"""The scorer's public API, kept at its original place: ``from vqa_interp.scoring import score``.

Everything lives in :mod:`vqa_interp.metrics` (the metric registry, one file per family); this
module re-exports it. ``METRICS`` is the tuple of built-in metric names; a metric registered
later appears in :func:`vqa_interp.metrics.metric_names`.
"""
from vqa_interp.metrics import (DICE_KINDS, STEPS, TIE_POLICIES, PreparedMap, ScoringOptions, average_ranks,
                                metric_names, prepare_map, prepare_maps, score, score_against_annotators,
                                score_prepared, top_k_region)

METRICS = metric_names()

__all__ = ["score", "score_prepared", "score_against_annotators", "PreparedMap", "ScoringOptions", "prepare_map",
           "prepare_maps", "average_ranks", "top_k_region", "METRICS", "metric_names", "STEPS", "TIE_POLICIES",
           "DICE_KINDS"]
