"""The slow, obvious per-pair scorer: the ground truth the fast scorer is tested against, and the
baseline of the scoring benchmark.

Per pair it resizes, normalises, calls ``scipy.stats.spearmanr`` and builds both top-k regions
with a full ``argsort``; nothing is shared between pairs.
"""
from __future__ import annotations

import numpy as np
import scipy.stats

from vqa_interp.preprocessing import apply_steps, resize_maps
from vqa_interp.scoring import METRICS, ScoringOptions


def _region_by_sorting(flat: np.ndarray, n_region: int, tie_policy: str) -> set[int]:
    # sort by value descending, then flat index ascending: ties resolved lowest index first
    order = np.lexsort((np.arange(flat.size), -flat))
    if tie_policy == "exact":
        return set(order[:n_region].tolist())
    kth = flat[order[n_region - 1]]
    return set(np.flatnonzero(flat >= kth).tolist())


def score_pair_reference(attribution: np.ndarray, human: np.ndarray, options: ScoringOptions) -> dict[str, float]:
    """All metrics for one pair ``[H, W]`` / ``[H', W']``, computed the obvious way."""
    a_raw, h_raw = (resize_maps(m[None], options.size)[0] for m in (attribution, human))
    for name, m in (("attribution", a_raw), ("human", h_raw)):
        if not np.isfinite(m).all():
            return {**dict.fromkeys(METRICS, float("nan")), "undefined": f"{name}_non_finite"}
    for name, m in (("attribution", a_raw), ("human", h_raw)):
        if m.max() == m.min():
            return {**dict.fromkeys(METRICS, float("nan")), "undefined": f"{name}_constant"}
    a, h = (apply_steps(m[None], options.steps, options.eps)[0] for m in (a_raw, h_raw))
    rank_corr = scipy.stats.spearmanr(a_raw.ravel(), h_raw.ravel()).statistic
    region_a = _region_by_sorting(a_raw.ravel(), options.n_region, options.tie_policy)
    region_h = _region_by_sorting(h_raw.ravel(), options.n_region, options.tie_policy)
    inter = len(region_a & region_h)
    union = len(region_a | region_h)
    precision, recall = inter / len(region_a), inter / len(region_h)
    if options.dice == "soft":
        am, hm = (apply_steps(m[None], ["minmax"], options.eps)[0] for m in (a_raw, h_raw))
        dice = 2 * float((am * hm).sum()) / (float((am ** 2).sum()) + float((hm ** 2).sum()) + options.eps)
    else:
        dice = 2 * inter / (len(region_a) + len(region_h))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"rank_corr": float(rank_corr), "intersect": float((a * h).sum()), "disc_intersect": float(inter),
            "iou": inter / union, "dice": dice, "precision": precision, "recall": recall, "f1": f1,
            "undefined": ""}
