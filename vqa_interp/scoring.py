"""Similarity of attribution maps to human attention maps (the paper's metrics), exact and fast.

Public entry point for notebooks: :func:`score`. Metric columns:

- ``rank_corr``: Spearman rank correlation over all pixels (average ranks for ties); NaN when
  either map is constant.
- ``intersect``: inner product of the two preprocessed maps (with the default steps both are
  non-negative and sum to 1).
- Top-k regions: the ``round(k * size^2)`` highest pixels of each map. Tie policy ``exact``
  takes exactly that many (among equal values at the threshold, the lowest flat indices first);
  ``include`` takes every pixel >= the k-th largest value (so a region can be larger).
- ``disc_intersect`` = |A & H| (pixels), ``iou`` = |A & H| / |A | H|,
  ``precision`` = |A & H| / |A|, ``recall`` = |A & H| / |H|, ``f1`` = 2PR / (P + R),
  with A the attribution region (positives) and H the human region (truth).
- ``dice``: ``soft`` (default) is the soft Dice coefficient of the min-max-scaled maps,
  ``2 sum(a h) / (sum(a^2) + sum(h^2) + eps)``; the paper's dice differs from its F1, so it was
  not the hard Dice of the same two regions. ``hard`` is ``2|A & H| / (|A| + |H|)`` (equal to
  ``f1``).

A pair whose maps contain NaN/inf, or where either map is constant, has no meaningful ranking
or region: every metric is NaN and ``undefined`` names the reason. Callers count these.

Speed: each map is sorted once (``np.argsort``, AVX-512 quicksort in NumPy >= 2) and that sort
gives both its average ranks and, with one ``np.partition``, its top-k region; a human map is
prepared once and reused for every attribution map scored against it. The naive reference
(``scipy.stats.spearmanr`` + argsort top-k per pair, :mod:`vqa_interp.reference`) re-ranks both
maps for every pair and is ~10x slower; both give the same numbers (tests check 1e-9).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from vqa_interp.preprocessing import STEPS, apply_steps, resize_maps

def _keep_freed_buffers_in_the_heap() -> None:
    """Ask glibc to keep freed multi-MB buffers instead of returning them to the OS.

    Scoring a 448x448 map allocates about a dozen 1.6 MB arrays; by default glibc serves each with
    a fresh ``mmap`` and unmaps it on free, so every map pays hundreds of page faults (measured on
    these 2-core VMs: 11.7 -> 8.2 ms per map). Raising the mmap and trim thresholds to 32/64 MB lets
    the heap reuse them. A no-op where glibc's ``mallopt`` is not available.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 1024 * 1024)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_keep_freed_buffers_in_the_heap()

METRICS = ("rank_corr", "intersect", "disc_intersect", "iou", "dice", "precision", "recall", "f1")
TIE_POLICIES = ("exact", "include")
DICE_KINDS = ("soft", "hard")


@dataclass(frozen=True)
class ScoringOptions:
    """Everything that changes a score (but not the maps themselves)."""
    k: float = 0.1
    size: int = 448
    steps: tuple[str, ...] = ("minmax", "unit_sum")
    eps: float = 1e-6
    tie_policy: str = "exact"
    dice: str = "soft"

    def __post_init__(self):
        if not 0 < self.k < 1:
            raise ValueError(f"k: {self.k} is out of range; expected 0 < k < 1 (the fraction of pixels in a region)")
        if self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"scoring.tie_policy: {self.tie_policy!r} is unknown; expected one of {TIE_POLICIES}")
        if self.dice not in DICE_KINDS:
            raise ValueError(f"scoring.dice: {self.dice!r} is unknown; expected one of {DICE_KINDS}")
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"preprocessing.steps: {unknown} unknown; expected any of {STEPS}")
        if self.size < 2:
            raise ValueError(f"preprocessing.size: {self.size}; expected an integer >= 2")

    @property
    def n_region(self) -> int:
        return max(1, int(round(self.k * self.size * self.size)))


@dataclass
class PreparedMap:
    """One map ready for scoring; all arrays are flat ``[size * size]``.

    ``undefined`` is "" for a usable map, else the reason ("non_finite", "constant").
    """
    weights: np.ndarray = field(repr=False)        # after the preprocessing steps
    minmax: np.ndarray = field(repr=False)         # min-max scaled (for soft Dice)
    centred_ranks: np.ndarray = field(repr=False)  # average ranks minus their mean
    rank_norm: float = 0.0
    region: np.ndarray = field(repr=False, default=None)  # bool top-k region
    undefined: str = ""


def _ranks_from_sorted(order: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Average ranks (1..n, ties averaged) given ``order = argsort(values)`` and ``values[order]``.

    Hand-written rather than ``scipy.stats.rankdata`` so that the one sort of a map also serves
    its top-k region; runs of equal values get their mean rank with one ``np.repeat``.
    """
    n = sorted_values.size
    ranks = np.empty(n, np.float64)
    new_run = np.empty(n, bool)
    new_run[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new_run[1:])
    sorted_ranks = np.arange(1, n + 1, dtype=np.float64)
    starts = np.flatnonzero(new_run)
    if starts.size < n:
        # only runs of ties need their mean rank; they are few (or few and long), so expanding
        # just them is much cheaper than expanding every run
        lengths = np.diff(np.append(starts, n))
        tied = lengths > 1
        tie_starts, tie_lengths = starts[tied], lengths[tied]
        first = np.repeat(tie_starts, tie_lengths)
        offset = np.arange(first.size) - np.repeat(np.cumsum(tie_lengths) - tie_lengths, tie_lengths)
        sorted_ranks[first + offset] = np.repeat((2 * tie_starts + tie_lengths + 1) / 2.0, tie_lengths)
    ranks[order] = sorted_ranks
    return ranks


def _region_from_sorted(order: np.ndarray, sorted_values: np.ndarray, n_region: int, tie_policy: str) -> np.ndarray:
    """Top-``n_region`` mask from the same sort (ties at the threshold: lowest flat index first)."""
    n = sorted_values.size
    threshold = sorted_values[n - n_region]           # the n_region-th largest value
    first_at = np.searchsorted(sorted_values, threshold, side="left")
    last_at = np.searchsorted(sorted_values, threshold, side="right")
    region = np.zeros(n, bool)
    region[order[last_at:]] = True                    # strictly above the threshold
    at_threshold = order[first_at:last_at]
    if tie_policy == "include":
        region[at_threshold] = True
    else:
        region[np.sort(at_threshold)[: n_region - (n - last_at)]] = True
    return region


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``), from one sort."""
    order = np.argsort(values)
    return _ranks_from_sorted(order, values[order])


def top_k_region(values: np.ndarray, n_region: int, tie_policy: str) -> np.ndarray:
    """Bool mask of the top ``n_region`` values of a flat map (see module docs for ties)."""
    order = np.argsort(values)
    return _region_from_sorted(order, values[order], n_region, tie_policy)


def prepare_map(resized: np.ndarray, options: ScoringOptions) -> PreparedMap:
    """Prepare one resized map ``[size, size]`` (float64) for scoring: one sort gives both its
    ranks and its top-k region."""
    flat = resized.reshape(-1)
    if not np.isfinite(flat).all():
        return PreparedMap(flat, flat, flat, 0.0, np.zeros(flat.size, bool), "non_finite")
    low, high = flat.min(), flat.max()
    if high == low:
        return PreparedMap(flat, flat, flat, 0.0, np.zeros(flat.size, bool), "constant")
    minmax = (flat - low) * (1.0 / (high - low + options.eps))
    if options.steps == ("minmax", "unit_sum"):   # the default, without apply_steps' copies
        weights = minmax * (1.0 / (minmax.sum() + options.eps))
    elif options.steps[:1] == ("minmax",):        # reuse the min-max map computed for soft Dice
        weights = apply_steps(minmax, options.steps[1:], options.eps)
    else:
        weights = apply_steps(flat, options.steps, options.eps)
    order = np.argsort(flat)
    sorted_values = flat[order]
    ranks = _ranks_from_sorted(order, sorted_values)
    centred = ranks - (flat.size + 1) / 2.0          # the mean of any average-rank vector
    region = _region_from_sorted(order, sorted_values, options.n_region, options.tie_policy)
    return PreparedMap(weights, minmax, centred, float(np.sqrt(centred @ centred)), region)


def prepare_maps(maps: np.ndarray, options: ScoringOptions) -> list[PreparedMap]:
    """``[B, H, W]`` maps of any size -> prepared maps at ``options.size``."""
    return [prepare_map(m, options) for m in resize_maps(maps, options.size)]


def score_prepared(attribution: PreparedMap, human: PreparedMap, options: ScoringOptions) -> dict[str, float]:
    """All metrics for one prepared pair (NaN everywhere, with ``undefined``, if either is unusable)."""
    reason = attribution.undefined and f"attribution_{attribution.undefined}" or (
        human.undefined and f"human_{human.undefined}")
    if reason:
        return {**{m: float("nan") for m in METRICS}, "undefined": reason}
    inter = float(np.count_nonzero(attribution.region & human.region))
    n_a, n_h = float(attribution.region.sum()), float(human.region.sum())
    precision, recall = inter / n_a, inter / n_h
    if options.dice == "soft":
        a, h = attribution.minmax, human.minmax
        dice = 2.0 * float(a @ h) / (float(a @ a) + float(h @ h) + options.eps)
    else:
        dice = 2.0 * inter / (n_a + n_h)
    return {
        "rank_corr": float(attribution.centred_ranks @ human.centred_ranks) / (attribution.rank_norm * human.rank_norm),
        "intersect": float(attribution.weights @ human.weights),
        "disc_intersect": inter,
        "iou": inter / (n_a + n_h - inter),
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "f1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        "undefined": "",
    }


def score_against_annotators(attribution: PreparedMap, humans: Sequence[PreparedMap],
                             options: ScoringOptions) -> dict[str, float]:
    """Score one attribution map against several annotators' maps and average each metric
    over the annotators whose pair is defined (NaN if none is)."""
    rows = [score_prepared(attribution, h, options) for h in humans]
    defined = [r for r in rows if not r["undefined"]]
    if not defined:
        return rows[0]
    return {**{m: float(np.mean([r[m] for r in defined])) for m in METRICS}, "undefined": ""}


def score(attributions: np.ndarray, humans: np.ndarray, *, k: float = 0.1, size: int = 448,
          **options) -> pd.DataFrame:
    """Score attribution maps against human maps, pair by pair.

    Args:
        attributions: ``[B, H, W]`` channel-reduced attribution maps (any H, W; resized inside).
        humans: ``[B, H', W']`` human attention maps, one per attribution map.
        k: fraction of pixels in each top-k region.
        size: both maps are resized to ``size x size``.
        **options: ``steps`` (default ``("minmax", "unit_sum")``), ``eps`` (1e-6),
            ``tie_policy`` (``"exact"`` | ``"include"``), ``dice`` (``"soft"`` | ``"hard"``).

    Returns:
        One row per pair, columns :data:`METRICS` plus ``undefined`` ("" or the reason the row's
        metrics are NaN).
    """
    attributions, humans = np.asarray(attributions), np.asarray(humans)
    if attributions.ndim != 3 or humans.ndim != 3 or len(attributions) != len(humans):
        raise ValueError(f"score: expected attributions [B, H, W] and humans [B, H', W'] with the same B; "
                         f"got {attributions.shape} and {humans.shape}")
    if "steps" in options:
        options["steps"] = tuple(options["steps"])
    opts = ScoringOptions(k=k, size=size, **options)
    prepared_a, prepared_h = prepare_maps(attributions, opts), prepare_maps(humans, opts)
    rows = [score_prepared(a, h, opts) for a, h in zip(prepared_a, prepared_h)]
    return pd.DataFrame(rows, columns=[*METRICS, "undefined"])
