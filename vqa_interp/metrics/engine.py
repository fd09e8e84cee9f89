"""Scoring: every registered metric for prepared pairs, and :func:`score` for notebooks.

A pair whose maps contain NaN/inf, or where either map is constant, has no meaningful ranking or
region: every metric is NaN and ``undefined`` names the reason. Callers count these.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

from vqa_interp.metrics.prepare import PreparedMap, ScoringOptions, resize_maps
from vqa_interp.metrics.registry import REGISTRY, run_metrics, selected


def undefined_reason(attribution: PreparedMap, human: PreparedMap) -> str:
    """ "" for a usable pair, else why its metrics are NaN (``attribution_constant``, ...)."""
    if attribution.undefined:
        return f"attribution_{attribution.undefined}"
    return f"human_{human.undefined}" if human.undefined else ""


def score_prepared(
    attribution: PreparedMap,
    human: PreparedMap,
    options: ScoringOptions | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """The selected metrics (default: all registered) for one prepared pair, plus ``undefined``."""
    names = selected(metrics)
    reason = undefined_reason(attribution, human)
    if reason:
        return {**{m: float("nan") for m in names}, "undefined": reason}
    return {**{m: float(REGISTRY[m].compute(attribution, human)) for m in names}, "undefined": ""}


def score_against_annotators(
    attribution: PreparedMap,
    humans: Sequence[PreparedMap],
    options: ScoringOptions | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """Score one attribution map against several annotators' maps and average each metric over the
    annotators whose pair is defined (NaN, with the first reason, if none is)."""
    names = selected(metrics)
    return average_defined([score_prepared(attribution, h, options, names) for h in humans], names)


def score_at_ks(
    attribution: PreparedMap,
    humans: Sequence[PreparedMap],
    options: ScoringOptions,
    metrics: Sequence[str],
    ks: Sequence[float],
) -> dict[float, dict[str, float]]:
    """:func:`score_against_annotators` at each ``k`` of ``ks``: the metrics that do not read a top-k
    region (see :attr:`~vqa_interp.metrics.registry.Metric.depends_on_k`) are computed once, the
    others per k from the maps' shared sorts."""
    fixed = [m for m in metrics if not REGISTRY[m].depends_on_k(options)]
    varying = [m for m in metrics if REGISTRY[m].depends_on_k(options)]
    once = score_against_annotators(attribution, humans, options, fixed)
    # the columns keep one order whichever metrics the options make k-free (the tables' column order
    # is part of their format, tests/data/smoke_*_v0.3.csv): those that never read a region, then
    # those that may
    order = [m for m in metrics if not REGISTRY[m].depends_on_k()] + [m for m in metrics if REGISTRY[m].depends_on_k()]
    return {
        k: _in_order(
            {
                **{m: once[m] for m in fixed},
                **score_against_annotators(attribution.at_k(k), [h.at_k(k) for h in humans], options, varying),
            },
            order,
        )
        for k in ks
    }


def _in_order(row: dict, metrics: Sequence[str]) -> dict:
    """``row`` with the keys of ``metrics`` first, in that order, then its other keys."""
    return {**{m: row[m] for m in metrics if m in row}, **{key: v for key, v in row.items() if key not in metrics}}


def average_defined(rows: Sequence[dict], names: Sequence[str]) -> dict[str, float]:
    """Each metric averaged over the rows whose pair is defined; the first row (NaN, with its reason)
    when none is."""
    defined = [r for r in rows if not r["undefined"]]
    if not defined:
        return rows[0]
    if len(defined) == 1:
        return {**{m: defined[0][m] for m in names}, "undefined": ""}
    # one mean over the annotators for every metric at once (a NumPy call per metric cost ~5 us,
    # a sweep's first job makes ~240k of them); the rows are summed in order, as each column's mean
    # sums its few values
    means = np.mean(np.array([[r[m] for m in names] for r in defined], dtype=np.float64), axis=0)
    return {**dict(zip(names, means.tolist())), "undefined": ""}


def _fingerprint(array: np.ndarray) -> tuple:
    """A cheap key for finding equal human maps: shape, dtype and every 997th value (equality is
    then confirmed on the whole map, cheaper than hashing every byte)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return array.shape, array.dtype.str, hashlib.blake2b(flat[::997].tobytes(), digest_size=16).digest()


def score(
    attributions: np.ndarray,
    humans: np.ndarray,
    *,
    k: float = 0.1,
    size: int = 448,
    metrics: Sequence[str] | None = None,
    **options,
) -> pd.DataFrame:
    """Score attribution maps against human maps, pair by pair.

    Args:
        attributions: ``[B, H, W]`` channel-reduced attribution maps (any H, W; resized inside).
        humans: ``[B, H', W']`` human attention maps, one per attribution map. Equal human maps
            (by content) are prepared once and reused, as in a run.
        k: fraction of pixels in each top-k region.
        size: both maps are resized to ``size x size``.
        metrics: names of registered metrics, or ``"all"``; default: a run's default set (every
            registered metric but the slow ones, EMD: :func:`vqa_interp.metrics.run_metrics`).
        **options: ``steps`` (default ``("minmax", "unit_sum")``), ``eps`` (1e-6),
            ``tie_policy`` (``"fractional"`` | ``"include"`` | ``"index"``), ``dice``
            (``"soft"`` | ``"hard"``).

    Returns:
        One row per pair: a column per metric plus ``undefined`` ("" or the reason the row's
        metrics are NaN).
    """
    attributions, humans = np.asarray(attributions), np.asarray(humans)
    if attributions.ndim != 3 or humans.ndim != 3 or len(attributions) != len(humans):
        raise ValueError(
            f"score: expected attributions [B, H, W] and humans [B, H', W'] with the same B; "
            f"got {attributions.shape} and {humans.shape}"
        )
    names = run_metrics(metrics) if metrics is None or isinstance(metrics, str) else selected(metrics)
    if "steps" in options:
        options["steps"] = tuple(options["steps"])
    opts = ScoringOptions(k=k, size=size, **options)
    prepared_humans: dict[tuple, list[tuple[np.ndarray, PreparedMap]]] = {}
    rows = []
    for attribution, human in zip(attributions, humans):
        same = prepared_humans.setdefault(_fingerprint(human), [])
        prepared_h = next((p for raw, p in same if np.array_equal(raw, human)), None)
        if prepared_h is None:
            prepared_h = PreparedMap(resize_maps(human[None], size, opts.resample)[0], opts)
            same.append((human, prepared_h))
        prepared_a = PreparedMap(resize_maps(attribution[None], size, opts.resample)[0], opts)
        rows.append(score_prepared(prepared_a, prepared_h, opts, names))
    return pd.DataFrame(rows, columns=[*names, "undefined"])
