"""Statistics of the analysis stage, each against scipy/numpy computed independently here."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from vqa_interp.analysis.statistics import (
    analyse,
    benjamini_hochberg,
    compare_groups,
    confidence_correlations,
    holm,
    significance_table,
)
from vqa_interp.scoring import METRICS


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    confidence = rng.random(n)
    correct = rng.random(n) < 0.6
    rows = []
    for i in range(n):
        base = {
            "question_id": i,
            "method": "saliency",
            "confidence": confidence[i],
            "correct": correct[i],
            "target": "label",
            "on_prediction": bool(correct[i]),
        }
        metrics = {m: rng.normal(0.2 + 0.1 * correct[i], 0.1) for m in METRICS}
        rows.append({**base, **metrics})
        if not correct[i]:
            rows.append(
                {**base, "target": "prediction", "on_prediction": True, **{m: rng.normal(0.1, 0.1) for m in METRICS}}
            )
    table = pd.DataFrame(rows)
    table.loc[3, "rank_corr"] = np.nan  # an undefined metric is dropped, not propagated
    return table


def test_significance_against_scipy_on_the_runs_own_table():
    table = _table()
    results = analyse(table, low=0.25, high=0.75, n_bootstrap=200)
    examples = table[table["on_prediction"]]
    sig = results.tables["significance"]
    for metric in ("rank_corr", "iou"):
        x = examples.loc[examples["correct"], metric].dropna().to_numpy()
        y = examples.loc[~examples["correct"], metric].dropna().to_numpy()
        row = sig[(sig.comparison == "correct_vs_wrong") & (sig.metric == metric)].set_index("test")
        assert row.loc["student", "p_value"] == pytest.approx(scipy.stats.ttest_ind(x, y).pvalue, rel=1e-10)
        assert row.loc["welch", "p_value"] == pytest.approx(
            scipy.stats.ttest_ind(x, y, equal_var=False).pvalue, rel=1e-10
        )
        mw = scipy.stats.mannwhitneyu(x, y, alternative="two-sided")
        assert row.loc["mannwhitney", "p_value"] == pytest.approx(mw.pvalue, rel=1e-10)
        assert row.loc["mannwhitney", "effect_size"] == pytest.approx(2 * mw.statistic / (len(x) * len(y)) - 1)
        pooled = np.sqrt(((len(x) - 1) * np.var(x, ddof=1) + (len(y) - 1) * np.var(y, ddof=1)) / (len(x) + len(y) - 2))
        assert row.loc["student", "effect_size"] == pytest.approx((x.mean() - y.mean()) / pooled)
        assert row.loc["student", "n1"] == len(x) and row.loc["student", "n2"] == len(y)
        assert row.loc["student", "ci_low"] < x.mean() - y.mean() < row.loc["student", "ci_high"]
    low = examples[examples["confidence"] < 0.25]
    x = low.loc[low["correct"], "f1"].to_numpy()
    y = low.loc[~low["correct"], "f1"].to_numpy()
    row = sig[(sig.comparison == "low_conf_correct_vs_wrong") & (sig.metric == "f1") & (sig.test == "student")]
    assert row["p_value"].iloc[0] == pytest.approx(scipy.stats.ttest_ind(x, y).pvalue, rel=1e-10)


def test_adjusted_p_values_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # Holm: sorted 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> max(0.09, 0.08)=0.09, 0.20*1 -> 0.20
    assert holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.20])
    # BH: p_(i) * m / i, then monotone from the top: 0.04, 0.04*4/3=0.0533, 0.03*4/2=0.06 -> 0.0533, 0.2
    assert benjamini_hochberg(p).tolist() == pytest.approx([0.04, 0.05333333, 0.05333333, 0.20])


def test_groups_too_small_or_constant_are_not_testable():
    rng = np.random.default_rng(0)
    small = compare_groups(np.array([0.1]), rng.random(5), n_bootstrap=10, rng=rng)
    constant = compare_groups(np.full(4, 0.2), np.full(3, 0.2), n_bootstrap=10, rng=rng)
    for rows in (small, constant):
        assert {r["test"] for r in rows} == {"cluster_bootstrap", "student", "welch", "mannwhitney"}
        assert all(not r["testable"] and r["reason"] and np.isnan(r["p_value"]) for r in rows)
    table = _table(n=10)
    sig = significance_table(table.assign(confidence_level="mid"), n_bootstrap=10)
    only_untestable = sig[sig["comparison"] != "correct_vs_wrong"]
    assert not only_untestable["testable"].any() and not only_untestable["significant"].any()
    assert only_untestable["p_holm"].isna().all()


def test_confidence_correlations_against_scipy():
    table = _table()
    examples = table[table["on_prediction"]]
    corr = confidence_correlations(examples).set_index(["metric", "correlation"])
    correct = examples[examples["correct"]].dropna(subset=["rank_corr"])
    assert corr.loc[("rank_corr", "pearson"), "r"] == pytest.approx(
        scipy.stats.pearsonr(correct["confidence"], correct["rank_corr"]).statistic
    )
    assert corr.loc[("iou", "spearman"), "p_value"] == pytest.approx(
        scipy.stats.spearmanr(examples[examples["correct"]]["confidence"], examples[examples["correct"]]["iou"]).pvalue
    )


def test_map_for_example_picks_one_row_per_question():
    table = _table()
    by_prediction = analyse(table, low=0.25, high=0.75, n_bootstrap=10).examples
    by_label = analyse(table, low=0.25, high=0.75, n_bootstrap=10, map_for_example="label").examples
    assert by_prediction["question_id"].is_unique and by_label["question_id"].is_unique
    assert len(by_prediction) == len(by_label) == table["question_id"].nunique()
    assert (by_label["target"] == "label").all()


@pytest.mark.parametrize("primary", ["welch", "student", "mannwhitney"])
def test_the_adjusted_family_is_the_primary_test_on_non_redundant_metrics(primary):
    from vqa_interp.metrics import family_metrics

    table = _table(n=300, seed=4)
    sig = analyse(table, low=0.25, high=0.75, n_bootstrap=50, min_group=5, test=primary).tables["significance"]
    family = sig[sig["in_family"]]
    assert set(family["test"]) == {primary} and set(family["metric"]) <= set(family_metrics())
    assert not set(family["metric"]) & {"precision", "recall", "f1", "disc_intersect"}
    assert family["p_holm"].to_numpy() == pytest.approx(holm(family["p_value"].to_numpy()))
    outside = sig[~sig["in_family"]]
    assert outside["p_holm"].isna().all() and not outside["significant"].any()
    assert set(sig.loc[sig["test"] != primary, "role"]) == {"robustness"}
    # welch / mann-whitney are still reported with their raw p-values
    assert outside.loc[outside["testable"].astype(bool), "p_value"].notna().all()


def test_a_comparison_below_min_group_is_underpowered_and_never_significant():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 0.01, 5), rng.normal(5, 0.01, 40)  # a huge difference, but only 5 in a group
    rows = compare_groups(x, y, n_bootstrap=10, rng=rng, min_group=10)
    assert all(not r["testable"] and r["reason"].startswith("underpowered") for r in rows)
    assert all(np.isnan(r["p_value"]) for r in rows)
    rows = {r["test"]: r for r in compare_groups(x, y, n_bootstrap=10, rng=rng, min_group=5)}
    assert rows["student"]["p_value"] < 1e-10 and rows["cluster_bootstrap"]["p_value"] == pytest.approx(1 / 11)
    table = _table(n=60, seed=2)
    sig = analyse(table, low=0.25, high=0.75, n_bootstrap=20, min_group=50).tables["significance"]
    assert not sig["testable"].any() and not sig["significant"].any()
    assert sig["reason"].str.startswith("underpowered").all()


@pytest.mark.parametrize("primary", ["welch", "mannwhitney"])
def test_figures_3_5_6_colour_the_primary_tests_verdict_three_panels_a_row(primary):
    """The figure reads the test the summary reports (analysis.test), not another one of the table."""
    from matplotlib.colors import to_hex

    from vqa_interp.analysis.figures import mean_differences

    sig = analyse(_table(n=300, seed=4), low=0.25, high=0.75, n_bootstrap=50, min_group=5, test=primary).tables[
        "significance"
    ]
    # make the robustness rows say the opposite of the primary ones: the figure must not read them
    robust = sig["role"] != "primary"
    sig.loc[robust, "significant"] = ~sig.loc[robust, "significant"].astype(bool)
    figure = mean_differences(sig, "saliency")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 5 and max(ax.get_subplotspec().colspan.stop for ax in visible) == 3
    first = visible[0]
    metrics = [t.get_text() for t in first.get_yticklabels()]
    primary_rows = sig[(sig["role"] == "primary") & (sig["comparison"] == "correct_vs_wrong")].set_index("metric")
    for metric, bar in zip(metrics, first.patches):
        row = primary_rows.loc[metric]
        expected = "#d62728" if row["significant"] else "#1f77b4" if row["testable"] else "#dddddd"
        assert to_hex(bar.get_facecolor()) == expected, metric
    assert primary_rows["significant"].any()  # the case where a wrong reading would show
