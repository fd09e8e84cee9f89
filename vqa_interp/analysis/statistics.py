"""How similarity to human attention relates to correctness and confidence (the paper's analysis).

Input: the per-example table (one row per question x method x target). Choices where the paper
was silent, made explicit here:

- One map stands for an example: by default the map of the *predicted* answer
  (``map_for_example="prediction"``: the label map when correct, the prediction map when
  wrong); ``"label"`` uses the labelled answer's map always.
- Splits: correct/wrong x low (p < low) / high (p > high); examples with low <= p <= high
  belong to neither confidence level.
- Five planned comparisons (the paper's). One pre-specified primary test per comparison and
  metric, ``analysis.test``: by default the wild cluster bootstrap-t over images of the difference
  of the group means (``cluster_bootstrap``, see :mod:`vqa_interp.analysis.verdicts`), Student's t in ``+experiment=paper`` (what the paper used),
  Welch's t or Mann-Whitney U (these three treat questions as independent); the others are reported
  as robustness checks (two-sided). Rows with a NaN metric are dropped for that metric.
- The unit is the question: one row per question (the map that stands for it), never one per
  map; bootstrap CIs resample images (questions about one image are not independent draws).
- Effect sizes: Cohen's d (pooled SD) for the t-tests and the bootstrap; rank-biserial
  ``2 U1 / (n1 n2) - 1`` for Mann-Whitney. 95% CI of the mean difference: percentile bootstrap
  over images.
- Read against each question's own floor and ceiling (``*_norm`` columns, where the run scored
  them) and within answer types (``stratum``), the same comparisons say whether a raw difference
  only reflects which questions fall in each group (:func:`adjusted_comparisons`).
- Multiple comparisons: Holm (and Benjamini-Hochberg) over the primary family only: the primary
  test on the non-redundant metrics (``family_metrics()``: precision, recall, F1 and disc_intersect are
  functions of IoU when regions have equal size); ``significant`` = Holm-adjusted p < alpha.
- Not testable (reported, never a NaN p-value, never significant): a group below
  ``min_group`` questions or ``min_images`` images ("underpowered"), or both groups constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from vqa_interp.analysis.group_tests import benjamini_hochberg, compare_groups, holm
from vqa_interp.metrics.registry import family_metrics, metric_names

SCENARIOS = ("all", "correct", "wrong", "low_correct", "low_wrong", "high_correct", "high_wrong")
COMPARISONS = {
    # name: (scenario of group 1, scenario of group 2)
    "correct_vs_wrong": ("correct", "wrong"),
    "low_conf_correct_vs_wrong": ("low_correct", "low_wrong"),
    "high_conf_correct_vs_wrong": ("high_correct", "high_wrong"),
    "correct_high_vs_low": ("high_correct", "low_correct"),
    "wrong_high_vs_low": ("high_wrong", "low_wrong"),
}


@dataclass
class AnalysisResults:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    examples: pd.DataFrame | None = None


def present_metrics(table: pd.DataFrame, metrics=None) -> list[str]:
    """The registered metrics (or ``metrics``) that are columns of ``table``, in registry order."""
    names = metric_names() if metrics is None else metrics
    return [m for m in names if m in table.columns]


def stands_for_example(targets: pd.DataFrame, map_for_example: str = "prediction") -> np.ndarray:
    """``[rows]`` bool: which (question, target) rows hold the map that stands for their example
    (``analysis.map_for_example``: the map of the predicted answer, or of the labelled one). The one
    definition, used by the analysis and by the explain stage."""
    if map_for_example == "prediction":
        return targets["on_prediction"].to_numpy(bool)
    return (targets["target"] == "label").to_numpy()


def example_rows(table: pd.DataFrame, map_for_example: str = "prediction") -> pd.DataFrame:
    """One row per (question, method): the map that stands for the example."""
    if table.empty:
        return table
    return table[stands_for_example(table, map_for_example)].drop_duplicates(
        [c for c in ("question_id", "method") if c in table]
    )


def without_example_map(table: pd.DataFrame, examples: pd.DataFrame) -> int:
    """How many questions of ``table`` have no row standing for them in ``examples`` (say, a
    prediction map a ``target_policy`` did not compute): counted, never dropped silently."""
    if table.empty or "question_id" not in table:
        return 0
    return int(table["question_id"].nunique() - (examples["question_id"].nunique() if len(examples) else 0))


def images_of(frame: pd.DataFrame) -> np.ndarray | None:
    """The cluster of each row for the bootstrap: its ``image_id`` (None when the table has none)."""
    return frame["image_id"].to_numpy() if "image_id" in frame else None


def confidence_level(confidence: pd.Series, low: float, high: float) -> pd.Series:
    """'low' (p < low), 'high' (p > high) or 'mid'."""
    return pd.Series(
        np.where(confidence < low, "low", np.where(confidence > high, "high", "mid")), index=confidence.index
    )


def scenario_mask(frame: pd.DataFrame, scenario: str) -> pd.Series:
    correct = frame["correct"].astype(bool)
    level = frame["confidence_level"]
    masks = {
        "all": pd.Series(True, index=frame.index),
        "correct": correct,
        "wrong": ~correct,
        "low_correct": correct & (level == "low"),
        "low_wrong": ~correct & (level == "low"),
        "high_correct": correct & (level == "high"),
        "high_wrong": ~correct & (level == "high"),
    }
    return masks[scenario]


SIGNIFICANCE_COLUMNS = [
    "comparison",
    "group1",
    "group2",
    "metric",
    "test",
    "role",
    "in_family",
    "testable",
    "reason",
    "n1",
    "n2",
    "mean1",
    "mean2",
    "mean_diff",
    "statistic",
    "p_value",
    "p_holm",
    "p_bh",
    "significant",
    "effect_size",
    "effect_name",
    "ci_low",
    "ci_high",
]


def significance_table(
    examples: pd.DataFrame,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int = 0,
    metrics=None,
    min_group: int = 10,
    family=None,
    primary: str = "cluster_bootstrap",
    min_images: int = 2,
) -> pd.DataFrame:
    """One row per (comparison, metric, test), on one row per question (``examples``).

    The adjusted family is pre-specified: the primary test (``analysis.test``: the bootstrap over
    images by default, Student's t in ``+experiment=paper`` as the paper) of each
    comparison on each non-redundant metric (:func:`vqa_interp.metrics.family_metrics`, or ``family``) that is
    testable. Holm and Benjamini-Hochberg adjust over that family only; ``significant`` is
    Holm < ``alpha`` within it. The other tests' rows (``role`` robustness) and the redundant
    metrics keep their raw p-values, outside the family (``in_family`` False, no adjusted p).
    """
    rng = np.random.default_rng(seed)
    metrics = present_metrics(examples, metrics)
    family = set(family_metrics() if family is None else family)
    rows = []
    for name, (first, second) in COMPARISONS.items():
        g1, g2 = examples[scenario_mask(examples, first)], examples[scenario_mask(examples, second)]
        c1, c2 = images_of(g1), images_of(g2)
        for metric in metrics:
            for result in compare_groups(
                g1[metric].to_numpy(float),
                g2[metric].to_numpy(float),
                n_bootstrap=n_bootstrap,
                rng=rng,
                min_group=min_group,
                primary=primary,
                clusters_x=c1,
                clusters_y=c2,
                min_images=min_images,
            ):
                in_family = result["testable"] and result["role"] == "primary" and metric in family
                where = {"comparison": name, "group1": first, "group2": second, "metric": metric}
                rows.append({**where, "in_family": in_family, **result})
    return holm_adjusted(pd.DataFrame(rows), alpha)


def holm_adjusted(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """``table`` with Holm's and Benjamini-Hochberg's p over its ``in_family`` rows only, and
    ``significant`` = Holm p < ``alpha`` within that family."""
    if table.empty:
        return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    table["p_holm"] = np.nan
    table["p_bh"] = np.nan
    chosen = table["in_family"].astype(bool)
    if chosen.any():
        p = table.loc[chosen, "p_value"].to_numpy(float)
        table.loc[chosen, "p_holm"] = holm(p)
        table.loc[chosen, "p_bh"] = benjamini_hochberg(p)
    table["significant"] = chosen & (table["p_holm"] < alpha)
    return table[SIGNIFICANCE_COLUMNS]


def confidence_correlations(examples: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Pearson and Spearman correlation of confidence with each metric among correct predictions."""
    correct = examples[examples["correct"].astype(bool)]
    rows = []
    for metric in present_metrics(examples, metrics):
        pair = correct[["confidence", metric]].dropna()
        x, y = pair["confidence"].to_numpy(float), pair[metric].to_numpy(float)
        for kind, fn in (("pearson", scipy.stats.pearsonr), ("spearman", scipy.stats.spearmanr)):
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                rows.append(
                    {
                        "metric": metric,
                        "correlation": kind,
                        "n": len(x),
                        "r": np.nan,
                        "p_value": np.nan,
                        "testable": False,
                        "reason": "fewer than 3 examples or a constant variable",
                    }
                )
                continue
            result = fn(x, y)
            rows.append(
                {
                    "metric": metric,
                    "correlation": kind,
                    "n": len(x),
                    "r": float(result.statistic),
                    "p_value": float(result.pvalue),
                    "testable": True,
                    "reason": "",
                }
            )
    return pd.DataFrame(rows)


def scenario_summary(examples: pd.DataFrame, statistic: str, metrics=None) -> pd.DataFrame:
    """``statistic`` ('mean' | 'median') of each metric and confidence per scenario (Figure 7)."""
    rows = []
    for scenario in SCENARIOS:
        group = examples[scenario_mask(examples, scenario)]
        row = {"scenario": scenario, "n": len(group)}
        for column in ("confidence", *present_metrics(examples, metrics)):
            row[column] = float(getattr(group[column], statistic)()) if len(group) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def descriptive_by_split(examples: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """count/mean/std/min/quartiles/max of each metric per scenario (Figure 8)."""
    frames = []
    for scenario in SCENARIOS:
        group = examples[scenario_mask(examples, scenario)]
        described = group[list(present_metrics(examples, metrics))].describe().T.reset_index(names="metric")
        described.insert(0, "scenario", scenario)
        frames.append(described)
    return pd.concat(frames, ignore_index=True)


def method_means(table: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Mean of every metric and of confidence per method over all rows (the paper's Figure 2)."""
    return table.groupby("method")[["confidence", *present_metrics(table, metrics)]].mean().reset_index()


def analyse(
    table: pd.DataFrame,
    *,
    low: float,
    high: float,
    map_for_example: str = "prediction",
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int = 0,
    min_group: int = 10,
    metrics=None,
    test: str = "cluster_bootstrap",
    min_images: int = 2,
) -> AnalysisResults:
    """Every table and summary metric of one run's per-example table; ``metrics``: the metrics the
    run scored (default: the registered ones the table has)."""
    results = AnalysisResults()
    if table.empty:
        return results
    examples = example_rows(table, map_for_example).copy()
    examples["confidence_level"] = confidence_level(examples["confidence"], low, high)
    results.examples = examples
    metrics = present_metrics(table, metrics)
    significance = significance_table(
        examples,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
        min_group=min_group,
        metrics=metrics,
        primary=test,
        min_images=min_images,
    )
    correlations = confidence_correlations(examples, metrics)
    means = scenario_summary(examples, "mean", metrics)
    medians = scenario_summary(examples, "median", metrics)
    results.tables = {
        "method_means": method_means(table, metrics),
        "scenario_means": means,
        "scenario_medians": medians,
        "descriptive_by_split": descriptive_by_split(examples, metrics),
        "significance": significance,
        "confidence_correlations": correlations,
    }
    results.metrics = headline_metrics(examples, means, significance, metrics)
    missing = without_example_map(table, examples)
    if missing:
        results.metrics["count/skipped_no_map_for_example"] = missing
    return results


HEADLINE_SPLITS = ("correct", "wrong")


def headline_metrics(
    table: pd.DataFrame, means: pd.DataFrame, significance: pd.DataFrame, metrics=None
) -> dict[str, float]:
    """The few numbers a run logs as MLflow metrics, in ``/`` sections the UI groups (every test
    statistic stays in the tables), from one row per question (``table``: the example rows):
    ``score/<metric>`` means over the questions for every non-redundant
    metric, ``score_median/<metric>`` for the tested family, ``count/<split>`` sizes and
    ``count/significant_holm`` (the means per split are in ``tables/scenario_means.csv``: at most 60
    metrics a run keeps the MLflow runs table readable)."""
    from vqa_interp.metrics.registry import REGISTRY

    m: dict[str, float] = {}
    family = family_metrics()
    shown = [
        x for x in present_metrics(table, metrics) if x in family or (x in REGISTRY and REGISTRY[x].family != "overlap")
    ]
    for metric in shown:
        m[f"score/{metric}"] = float(table[metric].mean())
    for metric in [x for x in family if x in table]:
        m[f"score_median/{metric}"] = float(table[metric].median())
    for _, row in means.iterrows():
        if row["scenario"] in HEADLINE_SPLITS:
            m[f"count/{row['scenario']}"] = row["n"]
    m["count/significant_holm"] = int(significance["significant"].sum()) if len(significance) else 0
    return m
