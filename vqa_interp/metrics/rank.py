"""Rank-based similarity: the paper's Spearman rank correlation over all pixels."""

from __future__ import annotations

import numpy as np
import scipy.stats

from vqa_interp.metrics.registry import batched, metric


def _rank_corr_reference(a: np.ndarray, h: np.ndarray, options) -> float:
    return float(scipy.stats.spearmanr(a.ravel(), h.ravel()).statistic)


@metric("rank_corr", needs=("ranks",), range=(-1.0, 1.0), reference=_rank_corr_reference, headline=1)
def rank_corr(a, h) -> float:
    """Spearman rank correlation of the two maps over all pixels (ties get average ranks; Tang & Yuan)."""
    return float(a.centred_ranks @ h.centred_ranks) / (a.rank_norm * h.rank_norm)


# ------------------------------------------------------------------ batched (torch; see metrics/batch.py)
@batched("rank_corr")
def _rank_corr_batched(a, h):
    return (a.centred_ranks * h.centred_ranks).sum(1) / (a.rank_norm * h.rank_norm)
