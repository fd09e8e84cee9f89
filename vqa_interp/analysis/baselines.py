"""Reading a method's scores against its floors and ceiling.

Inputs: the run's example rows (one per question: the map that stands for the example, see
:func:`vqa_interp.analysis.statistics.example_rows`) and the references table of the same questions
(:func:`vqa_interp.pipeline.score_references`: one row per question x reference).

- ``tables/baselines.csv``: per metric, the mean with a percentile-bootstrap 95% CI and n for the
  method and every reference (``random``, ``centre``, ``image``, ``oracle``, ``human_ceiling``).
- normalised score per metric: ``(method - random) / (human_ceiling - random)``: 0 = chance, 1 =
  as close as one annotator is to the others (for a lower-is-better metric the ratio reads the same).
- paired tests: Wilcoxon signed-rank of the per-question differences method - reference (two-sided;
  zero differences dropped, scipy's default), for ``centre`` and ``image`` on the tested metrics,
  Holm over those tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.analysis.statistics import (WILCOXON_UNTESTABLE, bootstrap_mean_ci, holm, present_metrics,
                                            wilcoxon_test)
from vqa_interp.attribution.baselines import REFERENCES
from vqa_interp.metrics.registry import REGISTRY, family_metrics

REFERENCE_ORDER = ("method", *REFERENCES)
PAIRED_AGAINST = ("centre", "image")


def _long(examples: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Method rows and reference rows stacked with a ``reference`` column."""
    method = examples.assign(reference="method")
    return pd.concat([method, references], ignore_index=True)


def baselines_table(examples: pd.DataFrame, references: pd.DataFrame, *, n_bootstrap: int = 2000,
                    seed: int = 0, metrics=None) -> pd.DataFrame:
    """``reference, metric, mean, ci_low, ci_high, n`` for the method and every reference."""
    rng = np.random.default_rng(seed)
    metrics = present_metrics(references if metrics is None else references[["reference", *metrics]], metrics)
    frame = _long(examples, references)
    rows = []
    for reference in REFERENCE_ORDER:
        part = frame[frame["reference"] == reference]
        if part.empty:
            continue
        for metric in metrics:
            values = part[metric].dropna().to_numpy(float)
            low, high = bootstrap_mean_ci(values, n_bootstrap, rng)
            rows.append({"reference": reference, "metric": metric, "mean": float(values.mean()) if len(values) else np.nan,
                         "ci_low": low, "ci_high": high, "n": len(values)})
    return pd.DataFrame(rows, columns=["reference", "metric", "mean", "ci_low", "ci_high", "n"])


def normalised_scores(table: pd.DataFrame) -> dict[str, float]:
    """``(method - random) / (human_ceiling - random)`` per metric (NaN where a part is missing or the
    ceiling equals the floor)."""
    means = table.pivot(index="metric", columns="reference", values="mean")
    out = {}
    for metric, row in means.iterrows():
        method, floor, ceiling = (row.get(k, np.nan) for k in ("method", "random", "human_ceiling"))
        span = ceiling - floor
        out[metric] = float((method - floor) / span) if np.isfinite(span) and span != 0 else float("nan")
    return out


def paired_baseline_tests(examples: pd.DataFrame, references: pd.DataFrame, *, against=PAIRED_AGAINST,
                          metrics=None, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Does the method beat ``centre`` / ``image`` on the same questions? Wilcoxon signed-rank of
    method - reference per question, bootstrap 95% CI of the mean difference, Holm over all rows.
    ``better`` says whether the method is better in the metric's own direction and significant."""
    rng = np.random.default_rng(seed)
    metrics = [m for m in (metrics or family_metrics()) if m in examples.columns]
    method = examples.drop_duplicates("question_id").set_index("question_id")
    rows = []
    for reference in against:
        ref = references[references["reference"] == reference].set_index("question_id")
        for metric in metrics:
            joined = pd.concat([method[metric].rename("a"), ref[metric].rename("b")], axis=1, join="inner").dropna()
            diff = (joined["a"] - joined["b"]).to_numpy(float)
            row = {"reference": reference, "metric": metric, "n": len(diff),
                   "mean_diff": float(diff.mean()) if len(diff) else np.nan, "test": "wilcoxon"}
            row["ci_low"], row["ci_high"] = bootstrap_mean_ci(diff, n_bootstrap, rng)
            statistic, p_value, testable = wilcoxon_test(diff)
            row.update(statistic=statistic, p_value=p_value, testable=testable,
                       reason="" if testable else WILCOXON_UNTESTABLE)
            rows.append(row)
    table = pd.DataFrame(rows, columns=["reference", "metric", "n", "mean_diff", "ci_low", "ci_high", "statistic",
                                        "p_value", "test", "testable", "reason"])
    table["p_holm"] = np.nan
    testable = table["testable"].astype(bool)
    if testable.any():
        table.loc[testable, "p_holm"] = holm(table.loc[testable, "p_value"].to_numpy(float))
    direction = table["metric"].map(lambda m: 1.0 if REGISTRY[m].higher_is_better else -1.0)
    table["better"] = testable & (table["p_holm"] < 0.05) & (table["mean_diff"] * direction > 0)
    return table


def floor_ceiling_figure(table: pd.DataFrame, method: str):
    """Each metric on its own row: the span from the random floor to the human ceiling, with the
    method and the other references marked (means, bootstrap 95% CI as bars)."""
    from vqa_interp.analysis.figures import new_figure

    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = new_figure(len(metrics), 1, figsize=(7.5, 0.9 * len(metrics) + 0.9), squeeze=False)
    markers = {"method": ("o", "tab:red"), "random": ("|", "black"), "centre": ("s", "tab:blue"),
               "image": ("^", "tab:green"), "oracle": ("*", "tab:purple"), "human_ceiling": ("|", "black")}
    for ax, metric in zip(axes[:, 0], metrics):
        part = table[table["metric"] == metric].set_index("reference")
        if {"random", "human_ceiling"} <= set(part.index):
            ax.axvspan(min(part.loc["random", "mean"], part.loc["human_ceiling", "mean"]),
                       max(part.loc["random", "mean"], part.loc["human_ceiling", "mean"]), color="#eeeeee")
        for reference, (marker, colour) in markers.items():
            if reference not in part.index or not np.isfinite(part.loc[reference, "mean"]):
                continue
            mean, low, high = part.loc[reference, ["mean", "ci_low", "ci_high"]]
            label = method if reference == "method" else reference.replace("_", " ")
            ax.errorbar([mean], [0], xerr=[[mean - low], [high - mean]], fmt=marker, color=colour, ms=8,
                        capsize=3, label=label)
        direction = "higher" if REGISTRY[metric].higher_is_better else "lower"
        ax.set_yticks([])
        ax.set_ylabel(metric, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{direction} = closer to humans", fontsize=6, loc="right")
    axes[0, 0].legend(fontsize=6, ncol=6, loc="lower left", bbox_to_anchor=(0, 1.25))
    fig.suptitle(f"{method} between its floors and the human ceiling (means, bootstrap 95% CI)", fontsize=9)
    fig.tight_layout()
    return fig
