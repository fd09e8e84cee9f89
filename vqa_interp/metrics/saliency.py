"""The saliency-benchmark metrics (Bylinskii et al. 2018, "What do different evaluation metrics tell
us about saliency models?"; MIT/Tuebingen benchmark), with the human map as the ground truth.

``a`` is the attribution map, ``h`` the human map, both min-max scaled to [0, 1] (``minmax``);
``H`` is the human top-k region (weights, fractional at ties), standing in for fixations.
Definitions equal the peers' (tests compare them on maps with ties and zeros):

- ``cc``: Pearson correlation of ``a`` and ``h`` (pysaliency ``CC``).
- ``sim``: sum of min(a / sum a, h / sum h) (MIT ``similarity.m``; pysaliency ``SIM`` on [0, 1] maps).
- ``kld``: KL(P || Q) = sum P log(eps + P / (Q + eps)), P = h / sum h, Q = a / sum a on the *raw*
  maps (a map with negative values shifted by its minimum first), eps = 2.2204e-16: MIT
  ``KLdiv.m`` and pysaliency ``MIT_KLDiv`` exactly, which do not min-max scale (earlier versions of
  this tool did: on a map with a positive floor, such as a VQA-HAT human map, that sharpened P and
  raised KL); lower is better.
- ``nss``: mean of the z-scored ``a`` (population std) over ``H``, weighted by ``H`` (pysaliency ``NSS``
  over the fixation pixels).
- ``auc``: the *rank AUC*: ROC AUC of ``a`` as a score for membership of the human top-k region
  ``H``, over all pixels (every pixel outside ``H`` a negative), ties counted half (scikit-learn
  ``roc_auc_score``, Quantus ``AUC``); a pixel with a fractional weight w counts as w of a positive
  and 1 - w of a negative. It is neither AUC-Judd (thresholds at the fixated pixels' values, no
  half credit for ties: on a Grad-CAM map with half its pixels exactly 0 it reads lower, 0.33
  where this reads 0.46) nor AUC-Borji (random negatives).
- ``emd``: earth mover's distance as the MIT benchmark computes it: both maps downsampled by 32
  first (``EMD.m``: ``imresize(map, 1/32)``), here average-pooled to a ``round(size / 32)``-square
  grid (14x14 at the default 448), normalised to sum 1, Euclidean ground distance in grid cells,
  solved exactly (POT ``ot.emd2``: equal to POT on that grid; a few ms a pair). Lower is better. It
  is not in a run's default metric set (``scoring.metrics`` names it) nor in :func:`score`'s.
"""

from __future__ import annotations

import numpy as np

from vqa_interp.metrics.prepare import apply_steps
from vqa_interp.metrics.registry import batched, metric

EPS = 2.2204e-16  # MATLAB's eps, as MIT's KLdiv.m and pysaliency


def _minmax(x: np.ndarray) -> np.ndarray:
    return apply_steps(x, ["minmax"])


def _density(x: np.ndarray) -> np.ndarray:
    return x / x.sum()


# ------------------------------------------------------------------ cc
def _cc_reference(a, h, options):
    return float(np.corrcoef(_minmax(a).ravel(), _minmax(h).ravel())[0, 1])


@metric("cc", needs=("centred_minmax",), range=(-1.0, 1.0), reference=_cc_reference, in_family=False)
def cc(a, h) -> float:
    """Pearson correlation coefficient of the two maps (Bylinskii et al.; pysaliency CC)."""
    return float(a.centred_minmax @ h.centred_minmax) / (a.centred_minmax_norm * h.centred_minmax_norm)


# ------------------------------------------------------------------ sim
def _sim_reference(a, h, options):
    return float(np.minimum(_density(_minmax(a)), _density(_minmax(h))).sum())


@metric("sim", needs=("density",), range=(0.0, 1.0), reference=_sim_reference, in_family=False)
def sim(a, h) -> float:
    """Histogram intersection of the two maps as distributions (MIT similarity.m; pysaliency SIM)."""
    return float(np.minimum(a.density, h.density).sum())


# ------------------------------------------------------------------ kld
def _raw_density(x: np.ndarray) -> np.ndarray:
    x = x - x.min() if x.min() < 0 else x
    return x / x.sum()


def _kld_reference(a, h, options):
    p, q = _raw_density(h), _raw_density(a)
    return float((p * np.log(EPS + p / (q + EPS))).sum())


@metric(
    "kld",
    needs=("kl_density",),
    range=(0.0, float("inf")),
    reference=_kld_reference,
    higher_is_better=False,
    in_family=False,
)
def kld(a, h) -> float:
    """KL divergence of the attribution distribution from the human one, KL(human || attribution) (MIT KLdiv.m)."""
    p, q = h.kl_density, a.kl_density
    ratio = q + EPS
    np.divide(p, ratio, out=ratio)
    ratio += EPS
    return float(p @ np.log(ratio, out=ratio))


# ------------------------------------------------------------------ nss
def _nss_reference(a, h, options):
    from vqa_interp.metrics.overlap import reference_region

    z = (a - a.mean()) / a.std()
    region = reference_region(h, options.n_region, options.tie_policy).reshape(a.shape)
    return float((z * region).sum() / region.sum())


@metric(
    "nss", needs=("moments", "region"), range=(-float("inf"), float("inf")), reference=_nss_reference, in_family=False
)
def nss(a, h) -> float:
    """Normalised scanpath saliency: mean z-scored attribution over the human top-k region (Peters et al. 2005)."""
    mean, std = a.moments
    # mean of (v - mean) / std over H, weighted: (v . H - mean |H|) / (std |H|)
    return (h.over_region(a.values) - mean * h.region_size) / (std * h.region_size)


# ------------------------------------------------------------------ auc
def _auc_reference(a, h, options):
    """The area under the ROC curve by the trapezoid rule over the distinct thresholds (scikit-learn's
    way): a pixel of weight w adds w to the true and 1 - w to the false positives at its score."""
    from vqa_interp.metrics.overlap import reference_region

    w = reference_region(h, options.n_region, options.tie_policy)
    scores = a.ravel()
    order = np.argsort(-scores, kind="stable")
    s, positive, negative = scores[order], w[order], 1 - w[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last pixel of each threshold
    tps, fps = np.cumsum(positive)[last], np.cumsum(negative)[last]
    tpr, fpr = np.r_[0.0, tps] / tps[-1], np.r_[0.0, fps] / fps[-1]
    return float(np.trapezoid(tpr, fpr))


@metric("auc", needs=("ranks", "region"), range=(0.0, 1.0), reference=_auc_reference, in_family=False)
def auc(a, h) -> float:
    """Rank AUC: ROC AUC of the attribution as a score for the human top-k region, every other pixel a
    negative, ties half (scikit-learn, Quantus AUC; not AUC-Judd, not AUC-Borji)."""
    # With weights w (the region), ties counted half: sum_i w_i (#{j below i} + #{j tied with i} / 2
    # weighted by 1 - w_j) = w . (ranks - 1/2) - W^2 / 2, since the pairs of positives add up to
    # W^2 / 2 whatever their order. So AUC = 1/2 + w . (ranks - (n + 1) / 2) / (W (n - W)): the
    # Mann-Whitney U from the map's average ranks, no second pass over its sort.
    n, total = a.values.size, h.region_size
    return 0.5 + h.over_region(a.centred_ranks) / (total * (n - total))


# ------------------------------------------------------------------ emd
EMD_DOWNSAMPLE = 32  # the MIT benchmark's factor (EMD.m)


def emd_grid(size: int) -> int:
    """The side of the grid EMD is solved on for maps scored at ``size`` (at least 2)."""
    return max(2, int(round(size / EMD_DOWNSAMPLE)))


def area_weights(side: int, grid: int) -> np.ndarray:
    """``[grid, side]``: the share of each input pixel in each output cell (area averaging, the
    cells' rows sum to 1), so that pooling is ``W @ x @ W.T``."""
    edges = np.linspace(0.0, side, grid + 1)
    lower, upper = edges[:-1, None], edges[1:, None]
    pixels = np.arange(side)[None, :]
    overlap = np.clip(np.minimum(upper, pixels + 1) - np.maximum(lower, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def pool(x: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool a square map ``[S, S]`` to ``[grid, grid]`` (area weights, any S >= 1), in
    float64: symmetric, so flipping or transposing the map flips or transposes the grid exactly."""
    weights = area_weights(x.shape[0], grid)
    return weights @ np.asarray(x, np.float64) @ weights.T


def ground_distance(grid: int) -> np.ndarray:
    """``[grid^2, grid^2]`` Euclidean distances between the cells' centres (in cells)."""
    import ot

    cells = np.stack(np.mgrid[:grid, :grid], -1).reshape(-1, 2).astype(np.float64)
    return ot.dist(cells, cells, metric="euclidean")


_DISTANCES: dict[int, np.ndarray] = {}


def _emd(a_map: np.ndarray, h_map: np.ndarray) -> float:
    import ot

    grid = emd_grid(a_map.shape[0])
    p, q = pool(a_map, grid), pool(h_map, grid)
    p, q = (p / p.sum()).ravel(), (q / q.sum()).ravel()
    if grid not in _DISTANCES:
        _DISTANCES[grid] = ground_distance(grid)
    return float(ot.emd2(p, q, _DISTANCES[grid], numItermax=1_000_000))


def _emd_reference(a, h, options):
    return _emd(_minmax(a), _minmax(h))


@metric(
    "emd",
    needs=("minmax",),
    range=(0.0, float("inf")),
    reference=_emd_reference,
    higher_is_better=False,
    in_family=False,
    slow=True,
)
def emd(a, h) -> float:
    """Earth mover's distance of the two maps downsampled by 32 (the MIT benchmark's EMD), in grid cells (POT emd2)."""
    side = a.options.size
    return _emd(a.minmax.reshape(side, side), h.minmax.reshape(side, side))


# ------------------------------------------------------------------ batched (torch; see metrics/batch.py)
@batched("cc")
def _cc_batched(a, h):
    return (a.centred_minmax * h.centred_minmax).sum(1) / (a.centred_minmax_norm * h.centred_minmax_norm)


@batched("sim")
def _sim_batched(a, h):
    import torch

    return torch.minimum(a.density, h.density).sum(1)


@batched("kld")
def _kld_batched(a, h):
    p, q = h.kl_density, a.kl_density
    return (p * (EPS + p / (q + EPS)).log()).sum(1)


@batched("nss")
def _nss_batched(a, h):
    mean, std = a.moments
    return ((a.values * h.region).sum(1) - mean * h.region_size) / (std * h.region_size)


@batched("auc")
def _auc_batched(a, h):
    n, total = a.values.shape[1], h.region_size
    return 0.5 + (h.region * a.centred_ranks).sum(1) / (total * (n - total))
