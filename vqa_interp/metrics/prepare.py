"""Map preprocessing before scoring, and :class:`PreparedMap`: one map's features, each computed once.

1. Channel reduction happens at attribution time (:func:`vqa_interp.attribution.compute.reduce_channels`).
2. Resize both maps to ``size x size`` (bilinear, antialiased when shrinking).
3. Steps, in the configured order (default ``[minmax, unit_sum]``):
   - ``minmax``:   ``(x - min) / (max - min)``  -> values in [0, 1]
   - ``zscore``:   ``(x - mean) / std``
   - ``unit_sum``: ``x / (sum(x) + eps)``  -> total weight 1 (for non-negative maps)
   Only a zero range / zero std is guarded (the result is then all zeros): adding ``eps`` to a
   map's range made the scaled peak of a map whose values are ~1e-6 (Guided Grad-CAM) about 0.6
   instead of 1, so scores depended on the map's overall scale. ``unit_sum`` keeps the paper's
   ``+ eps``: it follows ``minmax`` (sum >= 1), where it cannot depend on the scale.
   With the default, every map is non-negative and sums to 1, so ``intersect`` (their inner
   product) has the paper's magnitude: ``1 / size^2`` = 5.0e-6 for two uniform 448x448 maps.
   ``zscore`` before ``unit_sum`` would make the total weight ~0: the paper lists z-scoring among
   its steps, but its published ``intersect`` values can only come from non-negative unit-sum
   maps, so it is off by default.

Top-k regions (``n = round(k * size^2)`` pixels), by ``tie_policy``:

- ``fractional`` (default): every pixel above the k-th largest value is in the region with
  weight 1; the pixels equal to it share the remaining slots, each with weight
  ``free slots / tied pixels``. The region has exactly ``n`` pixels' weight and no position
  decides membership, so ``|A & H|`` = sum of the product of the two weights is the expected
  overlap under a uniformly random tie-break (the two maps' tie-breaks independent).
- ``include``: every pixel >= the k-th largest value (a region can be larger than ``n``).
- ``index``: exactly ``n`` pixels, ties broken by the lowest flat index (top rows first): the
  behaviour of versions <= 0.1, biased by position; kept to reproduce old numbers only.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Sequence

import numpy as np
from PIL import Image

from vqa_interp.errors import ConfigError
from vqa_interp.metrics.kernels import argsort_exact, centred_average_ranks, sort_map, top_region  # noqa: F401
from vqa_interp.util.options import one_of

STEPS = ("minmax", "zscore", "unit_sum")
RESAMPLES = ("bilinear", "area")
TIE_POLICIES = ("fractional", "include", "index")
DICE_KINDS = ("soft", "hard")


def k_problem(k, size) -> str:
    """ "" when ``k`` (fraction of pixels in a top-k region) and ``size`` (the scoring side) can be
    scored, else what is wrong, naming the key and the limits."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        return f"preprocessing.size={size!r}; expected an integer >= 2 (the paper: 448)."
    what = "0 < k < 1 (the fraction of pixels in a top-k region, the paper used 0.1)"
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
        return f"k={k!r} is not a number; expected {what}."
    if not 0 < k < 1:
        return f"k={k!r} is out of range; expected {what}."
    pixels = size * size
    if round(k * pixels) < 1:
        return (
            f"k={k} at preprocessing.size={size} gives a top-k region of {k * pixels:.3g} pixels; expected at "
            f"least 1 pixel (k >= {0.5 / pixels:.2g})."
        )
    if round(k * pixels) >= pixels:
        return (
            f"k={k} at preprocessing.size={size} gives a top-k region of all {pixels} pixels, leaving none "
            f"outside it (AUC and the region metrics need both); expected k < {(pixels - 0.5) / pixels:.6g}."
        )
    return ""


@dataclass(frozen=True)
class ScoringOptions:
    """Everything that changes a score (but not the maps themselves)."""

    k: float = 0.1
    size: int = 448
    steps: tuple[str, ...] = ("minmax", "unit_sum")
    eps: float = 1e-6
    tie_policy: str = "fractional"
    dice: str = "soft"
    resample: str = "bilinear"

    def __post_init__(self):
        # every value is checked here, where it is defined (the run's settings and score() both build one)
        problem = k_problem(self.k, self.size)
        if problem:
            raise ConfigError(problem)
        one_of(self.resample, RESAMPLES, "preprocessing.resample")
        if self.tie_policy == "exact":
            raise ConfigError(
                "scoring.tie_policy='exact' (ties broken by the lowest flat index, i.e. by position) is "
                "no longer a policy of that name: use scoring.tie_policy=fractional (the unbiased "
                "default) or scoring.tie_policy=index to reproduce the old position-based numbers."
            )
        one_of(self.tie_policy, TIE_POLICIES, "scoring.tie_policy")
        one_of(self.dice, DICE_KINDS, "scoring.dice")
        for step in self.steps:
            one_of(step, STEPS, "preprocessing.steps[]")
        bad_eps = isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps > 0
        if bad_eps or not math.isfinite(self.eps):
            raise ConfigError(f"preprocessing.eps={self.eps!r}; expected a small positive number (the paper: 1e-6).")

    def accepts(self, k: float) -> bool:
        """Whether these options score at ``k`` too (a k sweep's other values)."""
        return not k_problem(k, self.size)

    @property
    def n_region(self) -> int:
        return int(round(self.k * self.size * self.size))


# ------------------------------------------------------------------ preprocessing
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_range(m: np.ndarray) -> np.ndarray:
    """``m`` scaled by a power of two into float32's range when a finite value lies beyond it (a
    float64 map of 1e39 would otherwise become inf in the float32 resize and be called non-finite).
    A power of two scales exactly, and no score depends on a positive scale."""
    m = np.asarray(m)
    if m.dtype.itemsize <= 4 or not m.size:
        return m
    finite = np.abs(m[np.isfinite(m)]) if not np.isfinite(m).all() else np.abs(m)
    peak = float(finite.max()) if finite.size else 0.0
    if peak <= FLOAT32_MAX / 4:
        return m
    return np.ldexp(m, -(math.frexp(peak)[1] - 120))


def resize_maps(maps: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """``[B, H, W]`` -> ``[B, size, size]`` float64: ``bilinear`` (pixel centres aligned, antialiased
    when shrinking) or ``area`` (each output pixel the area-weighted mean of the input pixels it
    covers: pooling, as Das et al.'s 14x14 protocol).

    Pillow's float ("F") resampling, not torch's: torch's OpenMP workers keep spinning after each
    call and, on 2 cores, slowed the NumPy sorting that follows by 2-3x (measured 11.6 -> 4.5 ms
    per 448x448 map).
    """
    maps = np.asarray(maps)
    if maps.shape[-2:] == (size, size):
        return maps.astype(np.float64, copy=True)
    out = np.empty((len(maps), size, size), np.float64)
    for i, m in enumerate(maps):
        image = Image.fromarray(np.ascontiguousarray(float32_range(m), dtype=np.float32), mode="F")
        method = Image.BILINEAR if resample == "bilinear" else Image.BOX
        out[i] = np.asarray(image.resize((size, size), method), np.float32)
    return out


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` where the denominator is non-zero, else 0."""
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def apply_steps(maps: np.ndarray, steps: Sequence[str], eps: float = 1e-6) -> np.ndarray:
    """Apply the normalisation ``steps`` per map: ``[B, H, W]`` -> ``[B, H, W]`` float64
    (a flat ``[N]`` array is one map). See the module docs for each step."""
    out = np.asarray(maps, dtype=np.float64).copy()
    axes = (-1,) if out.ndim == 1 else (-2, -1)
    for step in steps:
        if step == "minmax":
            lo, hi = out.min(axis=axes, keepdims=True), out.max(axis=axes, keepdims=True)
            out = _safe_divide(out - lo, hi - lo)
        elif step == "zscore":
            out = _safe_divide(out - out.mean(axis=axes, keepdims=True), out.std(axis=axes, keepdims=True))
        elif step == "unit_sum":
            out = out / (out.sum(axis=axes, keepdims=True) + eps)
        else:
            raise ValueError(f"preprocessing.steps: {step!r} is unknown; expected any of {STEPS}")
    return out


def sigmoid_for_display(maps: np.ndarray) -> np.ndarray:
    """The paper's visualisation transform: sigmoid of the z-scored map (display only)."""
    z = apply_steps(maps, ["zscore"])
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------ ranks and regions
def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n ``[n]`` with ties given their average rank (as ``scipy.stats.rankdata``), from one sort."""
    values = np.asarray(values, np.float64).ravel()
    order, runs = sort_map(values)
    return centred_average_ranks(runs, order) + (values.size + 1) / 2.0


def top_k_region(values: np.ndarray, n_region: int, tie_policy: str = "fractional") -> np.ndarray:
    """Region weights ``[n]`` of the top ``n_region`` values of a flat map (see module docs)."""
    values = np.asarray(values, np.float64).ravel()
    index, weight = top_region(values, sort_map(values)[0], n_region, TIE_POLICIES.index(tie_policy))
    region = np.zeros(values.size)
    region[index] = weight
    return region


class PreparedMap:
    """One resized map ``[size, size]`` ready for scoring; each feature is computed on first use
    and kept, so a human map scored against many attribution maps is sorted once.

    Features (all flat ``[size * size]`` arrays unless noted): ``values`` (the resized map),
    ``minmax`` (scaled to [0, 1]) with its ``density`` (sums to 1), ``centred_minmax`` and their
    sums, ``moments`` (mean, std), ``weights`` (after the preprocessing steps), ``centred_ranks``
    (average ranks minus their mean) and ``rank_norm`` (float), ``sparse_region`` (the top-k
    pixels and weights, see the module docs), ``region`` (dense) and ``region_size`` (float). ``undefined`` is "" for a usable map, else the reason
    ("non_finite", "constant"): such a map has no ranking or region and scores NaN.
    """

    def __init__(self, resized: np.ndarray, options: ScoringOptions):
        self.values = np.asarray(resized, np.float64).reshape(-1)
        self.options = options
        self.undefined = ""
        if not np.isfinite(self.values).all():
            self.undefined = "non_finite"
        elif self.values.min() == self.values.max():
            self.undefined = "constant"

    K_DEPENDENT = ("sparse_region", "region", "region_size", "_at", "_overlaps")

    def at_k(self, k: float) -> "PreparedMap":
        """The same map for another ``k``: every k-independent feature already computed (its sort,
        ranks, scaled maps) is shared, only the region is made again, once per ``k``: the view is
        kept, so a human map scored against many maps at several k makes each region once."""
        if k == self.options.k:
            return self
        views = self.__dict__.setdefault("_at", {})
        other = views.get(k)
        if other is None:
            other = views[k] = PreparedMap.__new__(PreparedMap)
            other.options = replace(self.options, k=k)
        # the k-independent features, including those this map computed since the view was made
        other.__dict__.update(
            (key, value) for key, value in self.__dict__.items() if key not in self.K_DEPENDENT and key != "options"
        )
        return other

    @property
    def shape(self) -> tuple[int, int]:
        return (self.options.size, self.options.size)

    @cached_property
    def minmax(self) -> np.ndarray:
        low, high = self.values.min(), self.values.max()
        return (self.values - low) * (1.0 / (high - low))

    @cached_property
    def minmax_sum(self) -> float:
        return float(self.minmax.sum())

    @cached_property
    def minmax_sumsq(self) -> float:
        return float(self.minmax @ self.minmax)

    @cached_property
    def density(self) -> np.ndarray:
        """The min-max map as a distribution (sums to 1)."""
        return self.minmax * (1.0 / self.minmax_sum)

    @cached_property
    def kl_density(self) -> np.ndarray:
        """The map as a distribution the way the MIT benchmark's KLdiv.m and pysaliency make it: the
        raw values divided by their sum, shifted by the minimum first only when it is negative."""
        low = min(0.0, float(self.values.min()))
        shifted = self.values - low if low < 0 else self.values
        return shifted * (1.0 / shifted.sum())

    @cached_property
    def centred_minmax(self) -> np.ndarray:
        return self.minmax - self.minmax_sum / self.minmax.size

    @cached_property
    def centred_minmax_norm(self) -> float:
        return float(np.sqrt(self.centred_minmax @ self.centred_minmax))

    @cached_property
    def moments(self) -> tuple[float, float]:
        """``(mean, population std)`` of the resized values."""
        return float(self.values.mean()), float(self.values.std())

    @cached_property
    def max_index(self) -> np.ndarray:
        """The pixels holding the map's maximum ``[m]``."""
        return np.flatnonzero(self.values == self.values.max())

    @cached_property
    def weights(self) -> np.ndarray:
        steps = self.options.steps
        if steps[:1] == ("minmax",):  # reuse the min-max map
            if steps == ("minmax", "unit_sum"):
                return self.minmax * (1.0 / (self.minmax_sum + self.options.eps))
            return apply_steps(self.minmax, steps[1:], self.options.eps)
        return apply_steps(self.values, steps, self.options.eps)

    @cached_property
    def sort(self) -> tuple[np.ndarray, np.ndarray]:
        """The map's one sort: (stable argsort of ``values``, its run marker; see
        :func:`~vqa_interp.metrics.kernels.sort_map`), shared by its ranks and its regions."""
        return sort_map(self.values)

    @property
    def order(self) -> np.ndarray:
        return self.sort[0]

    @cached_property
    def centred_ranks(self) -> np.ndarray:
        return centred_average_ranks(self.sort[1], self.order)

    @cached_property
    def rank_norm(self) -> float:
        return float(np.sqrt(self.centred_ranks @ self.centred_ranks))

    @cached_property
    def sparse_region(self) -> tuple[np.ndarray, np.ndarray]:
        """The top-k region as ``(index [m] int64, weight [m] float64)``: the pixels with a non-zero
        weight (about ``k * size^2`` of them) and their weights (the dense :attr:`region` is made
        from it)."""
        return top_region(self.values, self.order, self.options.n_region, TIE_POLICIES.index(self.options.tie_policy))

    @cached_property
    def region(self) -> np.ndarray:
        """The top-k region as dense weights ``[size * size]`` in [0, 1]."""
        index, weight = self.sparse_region
        region = np.zeros(self.values.size)
        region[index] = weight
        return region

    @cached_property
    def region_size(self) -> float:
        return float(self.sparse_region[1].sum())

    def overlap(self, other: "PreparedMap") -> float:
        """``|A & H|``: this map's top-k region against ``other``'s, weighted (:meth:`over_region`
        of ``other.region``). Kept per pair: IoU, Dice, precision, recall and F1 all read it."""
        overlaps = self.__dict__.setdefault("_overlaps", {})
        kept = overlaps.get(id(other))
        if kept is None or kept[0]() is not other:  # a weak reference: a map shared by every question
            kept = overlaps[id(other)] = (weakref.ref(other), self.over_region(other.region))  # must not keep theirs
        return kept[1]

    def over_region(self, feature: np.ndarray) -> float:
        """``feature . region``: a flat feature ``[size * size]`` of another map summed over this
        map's region, weighted.

        A dense dot with the (cached) dense region, not a gather through ``sparse_region``: the dot
        costs the same at any k, the gather grows with k (its reads are scattered), and each region is
        read by every map of the question."""
        return float(feature @ self.region)


def prepare_map(resized: np.ndarray, options: ScoringOptions) -> PreparedMap:
    """One resized map ``[size, size]`` -> :class:`PreparedMap` (features computed on demand)."""
    return PreparedMap(resized, options)


def prepare_maps(maps: np.ndarray, options: ScoringOptions) -> list[PreparedMap]:
    """``[B, H, W]`` maps of any size -> prepared maps at ``options.size``."""
    return [PreparedMap(m, options) for m in resize_maps(maps, options.size, options.resample)]
