"""One procedure for every verdict: the direction, the p-value and the CI come from the same statistic,
and images are the unit of resampling.

Questions about one image share its content (and often its effect), so they are not independent
draws; every test here resamples whole images.

- **Paired** (two methods on the same questions, a method against a floor, two models on the same
  target): the statistic is the mean paired difference over the questions, ``mean(a - b)``.
  Its p-value comes from an *image-clustered sign-flip permutation test* of that mean: under H0
  each image's summed difference is symmetric about 0, so each image's sum is flipped at random
  (all ``2^G`` flips when ``G`` images allow it, else ``n_permutations`` drawn flips,
  ``p = (1 + #{|T*| >= |T|}) / (1 + B)``). Its CI is the percentile bootstrap of the same mean over
  images. The verdict follows the sign of that mean when the (Holm-adjusted) p is below alpha, so
  the direction and the significance cannot disagree.
- **Two groups** (correct vs wrong answers: a question's group varies within an image, so images
  cannot be permuted between groups): the statistic is the difference of the group means, ``b`` in
  ``y = a + b * group``. Its p-value comes from a *wild cluster bootstrap-t* (Cameron, Gelbach &
  Miller 2008): the residuals under H0 (``y - mean(y)``) of each image are multiplied by one random
  sign, and ``b / se(b)`` (``se``: the cluster-robust CR1 standard error, images as clusters) of each
  draw is compared with the observed one (every sign pattern for at most :data:`EXACT_LIMIT` images).
  Its CI is the percentile bootstrap of the same difference over images (each image brings its
  questions of both groups). The verdict follows the sign of ``b`` when the p is significant.
- **Small samples**: a comparison with fewer than ``min_questions`` questions or ``min_images``
  images (``analysis.min_group``, ``analysis.min_images``) is reported as not testable, never
  given a verdict (with 3 images a sign-flip test cannot go below p = 0.25 anyway).
"""

from __future__ import annotations

import numpy as np

from vqa_interp.analysis.resampling import bootstrap_mean_ci, percentile_ci, resampled_means

PAIRED_TEST = "sign_flip"
GROUP_TEST = "cluster_bootstrap"
UNIT = "question (images resampled)"
PAIRED_PROCEDURE = (
    "mean paired difference over questions; p: sign-flip permutation test of that mean over images "
    "(two-sided), CI: bootstrap over images"
)
GROUP_PROCEDURE = (
    "difference of the group means over questions; p: wild cluster bootstrap-t over images "
    "(two-sided), CI: bootstrap over images"
)
EXACT_LIMIT = 12  # up to 2^12 = 4096 sign patterns are enumerated: the exact permutation distribution


def _codes(clusters, n: int) -> np.ndarray:
    if clusters is None:
        return np.arange(n)
    return np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)


def sign_flip_p(
    diff: np.ndarray, clusters=None, *, n_permutations: int = 4000, rng: np.random.Generator | None = None
) -> float:
    """Two-sided p of the mean of ``diff [n]`` (no NaN) under H0: each cluster's (image's) summed
    difference is symmetric about 0. Exact (every sign pattern) for at most :data:`EXACT_LIMIT`
    clusters, else ``n_permutations`` random patterns with the ``(1 + hits) / (1 + B)`` correction."""
    diff = np.asarray(diff, float)
    if len(diff) == 0:
        return float("nan")
    sums = np.bincount(_codes(clusters, len(diff)), weights=diff)
    observed = abs(sums.sum())
    tolerance = 1e-9 * max(1.0, np.abs(sums).sum())
    if len(sums) <= EXACT_LIMIT:
        signs = 1 - 2 * ((np.arange(2 ** len(sums))[:, None] >> np.arange(len(sums))) & 1)
        return float(np.mean(np.abs(signs @ sums) >= observed - tolerance))
    rng = rng or np.random.default_rng(0)
    hits = 0
    for begin in range(0, n_permutations, 1000):  # blocks of 1000 patterns: bounded memory
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(1000, n_permutations - begin), len(sums)))
        hits += int(np.sum(np.abs(signs @ sums) >= observed - tolerance))
    return float((1 + hits) / (1 + n_permutations))


def too_small(n_questions: int, n_images: int, min_questions: int, min_images: int) -> str:
    """The reason a comparison is not tested ("" when it is)."""
    if n_questions < max(2, min_questions) or n_images < max(2, min_images):
        return (
            f"underpowered: {n_questions} questions of {n_images} images (at least {max(2, min_questions)} "
            f"questions and {max(2, min_images)} images: analysis.min_group, analysis.min_images)"
        )
    return ""


PAIRED_FIELDS = ["n", "n_images", "mean_diff", "ci_low", "ci_high", "p_value"]  # of paired_test's result, in order


def paired_test(
    diff: np.ndarray,
    clusters=None,
    *,
    n_bootstrap: int = 2000,
    n_permutations: int = 4000,
    rng: np.random.Generator | None = None,
    min_questions: int = 2,
    min_images: int = 2,
    level: float = 0.95,
) -> dict:
    """The paired verdict's numbers for ``diff [n]`` (a - b per question; NaN rows dropped) and the
    image of each question: ``n``, ``n_images``, ``mean_diff``, ``ci_low``, ``ci_high``,
    ``p_value``, ``testable``, ``reason``, ``test``."""
    rng = rng or np.random.default_rng(0)
    diff = np.asarray(diff, float)
    keep = ~np.isnan(diff)
    diff = diff[keep]
    clusters = None if clusters is None else np.asarray(clusters)[keep]
    n_images = len(np.unique(clusters)) if clusters is not None else len(diff)
    out = {
        "n": len(diff),
        "n_images": n_images,
        "mean_diff": float(diff.mean()) if len(diff) else np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
        "testable": False,
        "reason": "",
        "test": PAIRED_TEST,
    }
    if len(diff):
        out["ci_low"], out["ci_high"] = bootstrap_mean_ci(diff, n_bootstrap, rng, level=level, clusters=clusters)
    out["reason"] = too_small(len(diff), n_images, min_questions, min_images)
    if not out["reason"] and not np.any(diff != 0):
        out["reason"] = "every paired difference is 0"
    if not out["reason"]:
        out["p_value"] = sign_flip_p(diff, clusters, n_permutations=n_permutations, rng=rng)
        out["testable"] = True
    return out


def _design(group: np.ndarray, covariates: np.ndarray | None) -> np.ndarray:
    n = len(group)
    return np.column_stack([np.ones(n), group.astype(float), *([] if covariates is None else [covariates])])


def _slopes(
    fixed: np.ndarray, scaled: np.ndarray, gram: np.ndarray, signs: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(b [B], se [B])`` of ``y = fixed_part + sign_g * scaled_part`` per draw, from per-cluster
    aggregates: ``fixed [G, k]`` and ``scaled [G, k]`` (``X_g^T`` times each part), ``gram [G, k, k]``
    (``X_g^T X_g``), ``signs [B, G]``. O(B G k^2), whatever the number of questions."""
    clusters, k = fixed.shape
    bread = np.linalg.pinv(gram.sum(0))
    xty = fixed.sum(0)[None] + signs @ scaled  # [B, k]
    beta = xty @ bread  # bread is symmetric
    scores = fixed[None] + signs[:, :, None] * scaled[None] - np.einsum("gij,bj->bgi", gram, beta)  # [B, G, k]
    meat = np.einsum("bgi,bgj->bij", scores, scores)
    v = bread @ meat @ bread * (clusters / (clusters - 1)) * ((n - 1) / (n - k))
    return beta[:, 1], np.sqrt(np.maximum(v[:, 1, 1], 0))


def _aggregate(x: np.ndarray, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``[G, k]``: ``X_g^T values_g`` per cluster."""
    out = np.zeros((int(codes.max()) + 1, x.shape[1]))
    np.add.at(out, codes, x * values[:, None])
    return out


def _gram(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``[G, k, k]``: ``X_g^T X_g`` per cluster."""
    gram = np.zeros((int(codes.max()) + 1, x.shape[1], x.shape[1]))
    np.add.at(gram, codes, x[:, :, None] * x[:, None, :])
    return gram


def cluster_robust_slopes(
    y: np.ndarray, group: np.ndarray, codes: np.ndarray, covariates: np.ndarray | None = None
) -> tuple[float, float]:
    """``(b, se)``: the group coefficient of ``y [n] = a + b * group [n] (+ covariates [n, c] @ g)``
    and its cluster-robust (CR1, clusters ``codes [n]``) standard error, as statsmodels' OLS with
    ``cov_type="cluster"`` gives it."""
    x = _design(group, covariates)
    gram = _gram(x, codes)
    b, se = _slopes(_aggregate(x, y, codes), np.zeros((len(gram), x.shape[1])), gram, np.ones((1, len(gram))), len(y))
    return float(b[0]), float(se[0])


def wild_cluster_p(
    values: np.ndarray,
    group: np.ndarray,
    codes: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    n_bootstrap: int = 2000,
    rng: np.random.Generator | None = None,
) -> float:
    """Two-sided p of the group coefficient (:func:`cluster_robust_slopes`) by the wild cluster
    bootstrap-t: the residuals of the model without the group (H0) get one random sign per cluster
    (every pattern for at most :data:`EXACT_LIMIT` clusters); NaN when the coefficient has no
    standard error."""
    rng = rng or np.random.default_rng(0)
    x = _design(group, covariates)
    gram = _gram(x, codes)
    count = len(gram)
    b, se = _slopes(_aggregate(x, values, codes), np.zeros((count, x.shape[1])), gram, np.ones((1, count)), len(values))
    if not se[0] > 0:
        return float("nan")
    observed = abs(b[0] / se[0])
    restricted = np.delete(x, 1, axis=1)
    fitted = restricted @ np.linalg.lstsq(restricted, values, rcond=None)[0]
    fixed, scaled = _aggregate(x, fitted, codes), _aggregate(x, values - fitted, codes)
    exact = count <= EXACT_LIMIT
    signs = (
        1.0 - 2 * ((np.arange(2**count)[:, None] >> np.arange(count)) & 1)
        if exact
        else rng.choice(np.array([-1.0, 1.0]), size=(n_bootstrap, count))
    )
    bs, ses = _slopes(fixed, scaled, gram, signs, len(values))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.nan_to_num(np.abs(bs / ses), nan=0.0)
    hits = int(np.sum(t >= observed * (1 - 1e-9)))
    return float(hits / len(signs) if exact else (1 + hits) / (1 + len(signs)))


def group_test(
    x: np.ndarray,
    y: np.ndarray,
    clusters_x=None,
    clusters_y=None,
    *,
    n_bootstrap: int = 2000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(p, ci_low, ci_high)`` of ``mean(x) - mean(y)``: ``p`` from the wild cluster bootstrap-t over
    images (``n_bootstrap`` sign draws, or every pattern for few images), the CI from the percentile
    bootstrap over images (without clusters each row is its own); see the module docs."""
    rng = rng or np.random.default_rng(0)
    x, y = np.asarray(x, float), np.asarray(y, float)
    both = np.concatenate([x, y])
    group = np.r_[np.ones(len(x)), np.zeros(len(y))]
    if clusters_x is None or clusters_y is None:
        clusters = np.arange(len(both)).astype(str)
    else:
        clusters = np.concatenate([np.asarray(clusters_x, object), np.asarray(clusters_y, object)]).astype(str)
    codes = np.unique(clusters, return_inverse=True)[1].reshape(-1)
    values = np.full((len(both), 2), np.nan)
    values[: len(x), 0], values[len(x) :, 1] = x, y
    means = resampled_means(values, clusters, n_bootstrap, rng)
    low, high = percentile_ci(means[:, 0] - means[:, 1], level)
    return wild_cluster_p(both, group, codes, n_bootstrap=n_bootstrap, rng=rng), low, high


def verdict_of(mean_diff: float, p_holm: float, testable: bool, higher_is_better: bool, alpha: float = 0.05) -> str:
    """``better`` / ``worse`` (the first of the pair, in the metric's own direction, from the sign of
    the tested mean when Holm p < alpha), ``no difference`` or ``not testable``."""
    if not testable or not np.isfinite(p_holm):
        return "not testable"
    if p_holm >= alpha or not np.isfinite(mean_diff) or mean_diff == 0:
        return "no difference"
    return "better" if (mean_diff > 0) == higher_is_better else "worse"
