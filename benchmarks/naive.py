"""The competent naive scorer a user would write without this library: per pair, nothing shared,
NumPy/SciPy vectorised. It is the speed baseline of ``python -m benchmarks.run`` (the slow test
oracle is :mod:`vqa_interp.metrics.reference`, which is not meant to be fast).

Per pair: ``scipy.stats.spearmanr`` (average ranks of both maps), ``np.argsort`` top-k regions as
boolean masks, and the paper's overlap metrics from them. Ties in the top-k are broken by
``np.argsort``'s order (quicksort), so on maps with ties its regions can differ from the library's
``tie_policy=fractional``; on tie-free maps every metric agrees to ~1e-12.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

METRICS = ("rank_corr", "intersect", "disc_intersect", "iou", "dice", "precision", "recall", "f1")
TIE_FREE = ("rank_corr", "intersect", "dice")  # metrics that do not depend on how top-k ties are broken


def naive_score_pair(attribution: np.ndarray, human: np.ndarray, k: float = 0.1, eps: float = 1e-6) -> dict:
    """The paper's metrics for one pair of maps ``[S, S]`` (same size), the straightforward way."""
    a, h = attribution.ravel().astype(np.float64), human.ravel().astype(np.float64)
    rho = scipy.stats.spearmanr(a, h).statistic
    n = int(round(k * a.size))
    in_a = np.zeros(a.size, bool)
    in_a[np.argsort(a)[-n:]] = True
    in_h = np.zeros(h.size, bool)
    in_h[np.argsort(h)[-n:]] = True
    inter = float(np.logical_and(in_a, in_h).sum())
    union = float(np.logical_or(in_a, in_h).sum())
    am, hm = (a - a.min()) / (a.max() - a.min()), (h - h.min()) / (h.max() - h.min())
    wa, wh = am / (am.sum() + eps), hm / (hm.sum() + eps)
    precision, recall = inter / in_a.sum(), inter / in_h.sum()
    return {
        "rank_corr": float(rho),
        "intersect": float(wa @ wh),
        "disc_intersect": inter,
        "iou": inter / union,
        "dice": 2 * float(am @ hm) / (float(am @ am) + float(hm @ hm) + eps),
        "precision": precision,
        "recall": recall,
        "f1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
    }
