"""Overlap of the two maps: the paper's intersection, and its top-k region metrics (Tang & Yuan).

``A`` is the attribution map's top-k region (the positives), ``H`` the human map's (the truth);
regions are weights in [0, 1] (fractional at ties, see :mod:`vqa_interp.metrics.prepare`), so
``|A & H| = sum(A * H)`` and ``|A| = sum(A)``.
"""

from __future__ import annotations

import numpy as np

from vqa_interp.metrics.prepare import apply_steps
from vqa_interp.metrics.registry import batched, metric


# ------------------------------------------------------------------ the obvious way (tests only)
def reference_region(values: np.ndarray, n_region: int, tie_policy: str) -> np.ndarray:
    """Top-k region weights ``[n]`` of a map, computed the obvious way (full descending sort)."""
    flat = np.asarray(values, np.float64).ravel()
    kth = np.sort(flat)[::-1][n_region - 1]
    above, tied = flat > kth, flat == kth
    if tie_policy == "include":
        return (above | tied).astype(np.float64)
    if tie_policy == "index":
        region = np.zeros(flat.size)
        region[np.lexsort((np.arange(flat.size), -flat))[:n_region]] = 1.0
        return region
    region = above.astype(np.float64)
    region[tied] = (n_region - above.sum()) / tied.sum()
    return region


def _regions(a, h, options):
    return (
        reference_region(a, options.n_region, options.tie_policy),
        reference_region(h, options.n_region, options.tie_policy),
    )


def _intersect_reference(a, h, options):
    return float((apply_steps(a, options.steps, options.eps) * apply_steps(h, options.steps, options.eps)).sum())


def _disc_intersect_reference(a, h, options):
    ra, rh = _regions(a, h, options)
    return float((ra * rh).sum())


def _iou_reference(a, h, options):
    ra, rh = _regions(a, h, options)
    return float((ra * rh).sum() / (ra.sum() + rh.sum() - (ra * rh).sum()))


def _dice_reference(a, h, options):
    if options.dice == "hard":
        ra, rh = _regions(a, h, options)
        return float(2 * (ra * rh).sum() / (ra.sum() + rh.sum()))
    am, hm = apply_steps(a, ["minmax"]), apply_steps(h, ["minmax"])
    return float(2 * (am * hm).sum() / ((am**2).sum() + (hm**2).sum() + options.eps))


def _precision_reference(a, h, options):
    ra, rh = _regions(a, h, options)
    return float((ra * rh).sum() / ra.sum())


def _recall_reference(a, h, options):
    ra, rh = _regions(a, h, options)
    return float((ra * rh).sum() / rh.sum())


def _f1_reference(a, h, options):
    p, r = _precision_reference(a, h, options), _recall_reference(a, h, options)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


# ------------------------------------------------------------------ fast, from prepared features
def _overlap(a, h) -> float:
    return a.overlap(h)


@metric("intersect", needs=("weights",), range=(-float("inf"), float("inf")), reference=_intersect_reference)
def intersect(a, h) -> float:
    """Inner product of the two preprocessed maps (each sums to 1 by default; ~5e-6 at 448 px)."""
    if a.options.steps == ("minmax", "unit_sum"):  # the default: no third array per map
        eps = a.options.eps
        return float(a.minmax @ h.minmax) / ((a.minmax_sum + eps) * (h.minmax_sum + eps))
    return float(a.weights @ h.weights)


@metric(
    "disc_intersect", needs=("region",), range=(0.0, float("inf")), reference=_disc_intersect_reference, in_family=False
)
def disc_intersect(a, h) -> float:
    """|A & H| in pixels: the (expected, at ties) overlap of the two top-k regions."""
    return _overlap(a, h)


@metric("iou", needs=("region",), range=(0.0, 1.0), reference=_iou_reference, headline=2)
def iou(a, h) -> float:
    """|A & H| / |A | H| of the two top-k regions."""
    inter = _overlap(a, h)
    return inter / (a.region_size + h.region_size - inter)


@metric(
    "dice",
    needs=("minmax", "region"),
    range=(0.0, 1.0),
    reference=_dice_reference,
    headline=3,
    k_free_when=lambda options: options.dice == "soft",
)
def dice(a, h) -> float:
    """Soft Dice 2 sum(a h) / (sum a^2 + sum h^2) of the min-max maps (``scoring.dice=hard``: 2|A & H| / (|A| + |H|))."""
    if a.options.dice == "hard":
        return 2.0 * _overlap(a, h) / (a.region_size + h.region_size)
    return 2.0 * float(a.minmax @ h.minmax) / (a.minmax_sumsq + h.minmax_sumsq + a.options.eps)


@metric("precision", needs=("region",), range=(0.0, 1.0), reference=_precision_reference, in_family=False)
def precision(a, h) -> float:
    """|A & H| / |A|: the share of the attribution region inside the human region."""
    return _overlap(a, h) / a.region_size


@metric("recall", needs=("region",), range=(0.0, 1.0), reference=_recall_reference, in_family=False)
def recall(a, h) -> float:
    """|A & H| / |H|: the share of the human region the attribution region covers."""
    return _overlap(a, h) / h.region_size


@metric("f1", needs=("region",), range=(0.0, 1.0), reference=_f1_reference, in_family=False)
def f1(a, h) -> float:
    """2PR / (P + R) of precision and recall."""
    p, r = precision(a, h), recall(a, h)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


# ------------------------------------------------------------------ batched (torch; see metrics/batch.py)
def _overlap_batched(a, h):
    return (a.region * h.region).sum(1)


@batched("intersect")
def _intersect_batched(a, h):
    if a.options.steps == ("minmax", "unit_sum"):
        eps = a.options.eps
        return (a.minmax * h.minmax).sum(1) / ((a.minmax_sum + eps) * (h.minmax_sum + eps))
    return (a.weights * h.weights).sum(1)


@batched("disc_intersect")
def _disc_intersect_batched(a, h):
    return _overlap_batched(a, h)


@batched("iou")
def _iou_batched(a, h):
    inter = _overlap_batched(a, h)
    return inter / (a.region_size + h.region_size - inter)


@batched("dice")
def _dice_batched(a, h):
    if a.options.dice == "hard":
        return 2.0 * _overlap_batched(a, h) / (a.region_size + h.region_size)
    return 2.0 * (a.minmax * h.minmax).sum(1) / (a.minmax_sumsq + h.minmax_sumsq + a.options.eps)


@batched("precision")
def _precision_batched(a, h):
    return _overlap_batched(a, h) / a.region_size


@batched("recall")
def _recall_batched(a, h):
    return _overlap_batched(a, h) / h.region_size


@batched("f1")
def _f1_batched(a, h):
    import torch

    p, r = _precision_batched(a, h), _recall_batched(a, h)
    return torch.where(p + r == 0, torch.zeros_like(p), 2 * p * r / (p + r))
