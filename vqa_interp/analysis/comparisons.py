"""Which method is closest to humans? Paired tests between the methods of a sweep.

Two runs are compared when they differ only in the method (same k, data, model and scoring setup).
Their per-example tables are joined on ``(question_id, target)``, so each pair of maps explains the
same answer to the same question, and the per-row difference ``a - b`` is tested:

- Wilcoxon signed-rank (two-sided, zero differences dropped: scipy's default) is the primary test;
  Holm adjusts it over the pairs of methods, separately for each metric;
- the paired t-test is reported beside it (``test`` = ``paired_t``, no adjusted p);
- the mean difference gets a percentile-bootstrap 95% CI.

The ranking orders the methods of each setting by their mean over the rows that every method of
that setting scored (so each is averaged over the same maps' questions).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import scipy.stats

from vqa_interp.analysis.statistics import bootstrap_mean_ci, holm, wilcoxon_test
from vqa_interp.metrics.registry import REGISTRY, family_metrics

PAIR_COLUMNS = ["method_a", "method_b", "k", "metric", "n", "mean_diff", "ci_low", "ci_high", "statistic", "p_value",
                "p_holm", "test"]
KEY = ["question_id", "target"]
# params that do not change a per-example score: runs differing only in these are one setting
IGNORED_PREFIXES = ("method.", "analysis.", "confidence.", "tracking.", "attribution.batch_size", "paths.", "device",
                    "plugins", "seed", "hydra")


def setting_of(params: dict) -> tuple:
    """The scoring setting of a run: every param that changes its per-example scores, except the
    method (and k, reported as its own column)."""
    return tuple(sorted((k, v) for k, v in params.items() if k != "k" and not k.startswith(IGNORED_PREFIXES)))


def _by_setting(runs: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["k"], run["setting"]), []).append(run)
    return groups


def paired_method_tests(runs: list[dict], *, metrics=None, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``runs``: dicts with ``method``, ``k``, ``setting`` and ``table`` (a per-example table).
    One row per (pair of methods in the same setting, metric, test)."""
    rng = np.random.default_rng(seed)
    metrics = list(metrics or family_metrics())
    rows = []
    for (k, _), members in _by_setting(runs).items():
        by_method = {m["method"]: m["table"] for m in members}
        for a, b in combinations(sorted(by_method), 2):
            joined = by_method[a].merge(by_method[b], on=KEY, suffixes=("_a", "_b"))
            for metric in metrics:
                if f"{metric}_a" not in joined:
                    continue
                pair = joined[[f"{metric}_a", f"{metric}_b"]].dropna()
                diff = (pair[f"{metric}_a"] - pair[f"{metric}_b"]).to_numpy(float)
                base = {"method_a": a, "method_b": b, "k": k, "metric": metric, "n": len(diff),
                        "mean_diff": float(diff.mean()) if len(diff) else np.nan}
                base["ci_low"], base["ci_high"] = bootstrap_mean_ci(diff, n_bootstrap, rng)
                statistic, p_value, testable = wilcoxon_test(diff)
                paired_t = scipy.stats.ttest_rel(pair[f"{metric}_a"], pair[f"{metric}_b"]) if testable else None
                rows.append({**base, "test": "wilcoxon", "statistic": statistic, "p_value": p_value})
                rows.append({**base, "test": "paired_t",
                             "statistic": float(paired_t.statistic) if testable else np.nan,
                             "p_value": float(paired_t.pvalue) if testable else np.nan})
    table = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c != "p_holm"])
    table["p_holm"] = np.nan
    for (k, metric), index in table[(table["test"] == "wilcoxon") & table["p_value"].notna()].groupby(
            ["k", "metric"]).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"].to_numpy(float))
    return table[PAIR_COLUMNS]


def method_ranking(runs: list[dict], *, metrics=None, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per setting and metric, the methods ordered best first (in the metric's own direction), by
    their mean over the (question, target) rows every method of the setting scored."""
    rng = np.random.default_rng(seed)
    metrics = list(metrics or family_metrics())
    rows = []
    for (k, _), members in _by_setting(runs).items():
        common = None
        for m in members:
            keys = m["table"][KEY].drop_duplicates()
            common = keys if common is None else common.merge(keys, on=KEY)
        for metric in metrics:
            entries = []
            for m in members:
                if metric not in m["table"]:
                    continue
                values = m["table"].merge(common, on=KEY)[metric].dropna().to_numpy(float)
                low, high = bootstrap_mean_ci(values, n_bootstrap, rng)
                entries.append({"k": k, "metric": metric, "method": m["method"],
                                "mean": float(values.mean()) if len(values) else np.nan,
                                "ci_low": low, "ci_high": high, "n": len(values)})
            descending = REGISTRY[metric].higher_is_better if metric in REGISTRY else True
            entries.sort(key=lambda e: -e["mean"] if descending else e["mean"])
            for rank, entry in enumerate(entries, 1):
                rows.append({"rank": rank, **entry})
    return pd.DataFrame(rows, columns=["k", "metric", "rank", "method", "mean", "ci_low", "ci_high", "n"])


def ranking_figure(ranking: pd.DataFrame, pairs: pd.DataFrame):
    """One panel per (k, metric): methods best first with their mean and bootstrap 95% CI; a method
    the next one beats significantly (Wilcoxon, Holm) is separated by a line."""
    from vqa_interp.analysis.figures import new_figure

    panels = list(ranking.groupby(["k", "metric"], sort=False))
    ncols = min(4, max(1, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(3.6 * ncols, 0.45 * ranking["method"].nunique() * nrows + 1.6 * nrows),
                           squeeze=False)
    for ax, ((k, metric), part) in zip(axes.ravel(), panels):
        part = part.sort_values("rank")
        y = np.arange(len(part))[::-1]
        ax.errorbar(part["mean"], y, xerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                    fmt="o", capsize=3, color="tab:red")
        ax.set_yticks(y, part["method"], fontsize=8)
        for upper, lower, yy in zip(part["method"].iloc[:-1], part["method"].iloc[1:], y[:-1]):
            test = pairs[(pairs["k"] == k) & (pairs["metric"] == metric) & (pairs["test"] == "wilcoxon")
                         & (((pairs["method_a"] == upper) & (pairs["method_b"] == lower))
                            | ((pairs["method_a"] == lower) & (pairs["method_b"] == upper)))]
            if len(test) and test["p_holm"].iloc[0] < 0.05:
                ax.axhline(yy - 0.5, color="grey", lw=0.8, ls="--")
        direction = "higher" if REGISTRY.get(metric) is None or REGISTRY[metric].higher_is_better else "lower"
        ax.set_title(f"{metric} (k={k}; {direction} is closer)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("mean over shared rows (95% CI)", fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle("Method ranking (dashed line: the method above is better, Wilcoxon signed-rank, Holm p < 0.05)",
                 fontsize=9)
    fig.tight_layout()
    return fig
