"""The correct/wrong x confidence comparisons of one run (the paper's Figure 3 tests): one primary
test per comparison and metric and its robustness rows, Holm (and Benjamini-Hochberg) over the
primary family; the choices are listed in :mod:`vqa_interp.analysis.statistics`."""

from __future__ import annotations

import numpy as np
import scipy.stats

from vqa_interp.analysis.verdicts import group_test, too_small

TESTS = ("cluster_bootstrap", "student", "welch", "mannwhitney")
TEST_NAMES = {
    "cluster_bootstrap": "wild cluster bootstrap-t over images",
    "student": "Student's t",
    "welch": "Welch's t",
    "mannwhitney": "Mann-Whitney U",
}


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    if len(p_values) == 0:
        return np.asarray(p_values, float)
    return scipy.stats.false_discovery_control(np.asarray(p_values, float), method="bh")


def cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
    return float((x.mean() - y.mean()) / pooled) if pooled > 0 else float("nan")


def compare_groups(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    min_group: int = 2,
    primary: str = "cluster_bootstrap",
    clusters_x: np.ndarray | None = None,
    clusters_y: np.ndarray | None = None,
    min_images: int = 2,
) -> list[dict]:
    """The four tests of group 1 (``x``) vs group 2 (``y``), one dict per test (NaNs dropped);
    ``primary`` (``analysis.test``) is the one with role ``primary``, the others ``robustness``.
    ``clusters_x`` / ``clusters_y``: the image of each value (the bootstrap resamples images).

    Not testable (``testable`` False, ``reason`` set, p NaN): a group below ``min_group`` questions
    or ``min_images`` images (underpowered), or both groups constant.
    """
    keep_x, keep_y = ~np.isnan(x), ~np.isnan(y)
    x, y = x[keep_x], y[keep_y]
    if clusters_x is not None and clusters_y is not None:
        clusters_x, clusters_y = np.asarray(clusters_x)[keep_x], np.asarray(clusters_y)[keep_y]
    roles = {t: "primary" if t == primary else "robustness" for t in TESTS}
    means = [float(v.mean()) if len(v) else float("nan") for v in (x, y)]
    base = {"n1": len(x), "n2": len(y), "mean1": means[0], "mean2": means[1]}
    reason = _untestable(x, y, clusters_x, clusters_y, min_group, min_images)
    mean_diff = base["mean1"] - base["mean2"]

    def row(test, statistic, p_value, effect, effect_name, **more) -> dict:
        return {
            **base,
            "test": test,
            "role": roles[test],
            "testable": not reason,
            "reason": reason,
            "statistic": statistic,
            "p_value": p_value,
            "effect_size": effect,
            "effect_name": effect_name,
            "mean_diff": mean_diff,
            **more,
        }

    if reason:
        return [row(test, np.nan, np.nan, np.nan, "", ci_low=np.nan, ci_high=np.nan) for test in TESTS]
    p_boot, ci_low, ci_high = group_test(x, y, clusters_x, clusters_y, n_bootstrap=n_bootstrap, rng=rng)
    d = cohens_d(x, y)
    student = scipy.stats.ttest_ind(x, y, equal_var=True)
    welch = scipy.stats.ttest_ind(x, y, equal_var=False)
    mw = scipy.stats.mannwhitneyu(x, y, alternative="two-sided")
    rank_biserial = 2 * mw.statistic / (len(x) * len(y)) - 1
    ci = {"ci_low": ci_low, "ci_high": ci_high}
    return [
        row("cluster_bootstrap", mean_diff, p_boot, d, "cohens_d", **ci),
        row("student", float(student.statistic), float(student.pvalue), d, "cohens_d", **ci),
        row("welch", float(welch.statistic), float(welch.pvalue), d, "cohens_d", **ci),
        row("mannwhitney", float(mw.statistic), float(mw.pvalue), float(rank_biserial), "rank_biserial", **ci),
    ]


def _untestable(x, y, clusters_x, clusters_y, min_group: int, min_images: int) -> str:
    """Why two groups cannot be compared ("" when they can): too few questions or images, or both
    constant."""
    images = [len(np.unique(c)) if c is not None else n for c, n in ((clusters_x, len(x)), (clusters_y, len(y)))]
    reason = too_small(min(len(x), len(y)), min(images), min_group, min_images)
    if not reason and np.ptp(x) == 0 and np.ptp(y) == 0:
        reason = "both groups are constant"
    return reason
