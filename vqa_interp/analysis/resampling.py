"""Resampling images: the cluster bootstrap every CI of the tool draws from.

Questions about one image share its content, so they are not independent draws: whole images are
drawn with replacement, each bringing all its questions.
"""

from __future__ import annotations

import numpy as np


def resampled_means(
    values: np.ndarray, clusters: np.ndarray | None, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Cluster bootstrap: ``values [n]`` or ``[n, c]`` (NaN = missing in that column), ``clusters
    [n]`` (the image of each row; None: every row its own) -> ``[n_bootstrap, c]`` (or ``[n_bootstrap]``)
    means of each column over the rows of the resampled clusters.

    Each column's mean is over its non-missing rows of the drawn images. Vectorised: per-image sums
    and counts, then ``[n_bootstrap, images]`` draws.
    """
    values = np.asarray(values, float)
    flat = values.ndim == 1
    values = values[:, None] if flat else values
    codes = np.arange(len(values)) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1]
    codes = np.asarray(codes).reshape(-1)
    groups = int(codes.max()) + 1 if len(codes) else 0
    present = ~np.isnan(values)
    sums = np.stack(
        [
            np.bincount(codes, weights=np.where(present[:, j], values[:, j], 0.0), minlength=groups)
            for j in range(values.shape[1])
        ],
        1,
    )
    counts = np.stack(
        [np.bincount(codes, weights=present[:, j].astype(float), minlength=groups) for j in range(values.shape[1])], 1
    )
    pick = rng.integers(0, groups, size=(n_bootstrap, groups))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.stack([sums[pick, j].sum(1) / counts[pick, j].sum(1) for j in range(values.shape[1])], 1)
    return means[:, 0] if flat else means


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples [B]`` (NaN samples ignored; NaN, NaN if none)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
    level: float = 0.95,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` ``[n]`` (NaN, NaN when empty), resampling
    ``clusters`` ``[n]`` (the images: see :func:`resampled_means`) or, without them, rows."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return float("nan"), float("nan")
    return percentile_ci(resampled_means(values, clusters, n_bootstrap, rng), level)
