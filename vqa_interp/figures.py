"""Figures of a run (the paper's Figures 1, 3-10), as matplotlib figures for the tracker to log."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vqa_interp.analysis import COMPARISONS, SCENARIOS, scenario_mask  # noqa: E402
from vqa_interp.data import load_display_image  # noqa: E402
from vqa_interp.preprocessing import apply_steps, sigmoid_for_display  # noqa: E402

BOUNDED_METRICS = ("rank_corr", "iou", "dice", "precision", "recall", "f1")


def human_weight_distribution(human_maps: list[np.ndarray]) -> plt.Figure:
    """Figure 1: histogram of the pixel weights of the (min-max scaled) human maps."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = np.concatenate([apply_steps(m[None], ["minmax"])[0].ravel() for m in human_maps]) if human_maps else []
    ax.hist(values, bins=50, color="tab:blue", log=True)
    ax.set_xlabel("pixel weight (min-max scaled)")
    ax.set_ylabel("pixels (log)")
    ax.set_title(f"Human attention weights ({len(human_maps)} maps)")
    fig.tight_layout()
    return fig


def scenario_bars(medians: pd.DataFrame, method: str) -> plt.Figure:
    """Figure 7: median of each bounded metric per scenario, grouped bars."""
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(SCENARIOS)
    x = np.arange(len(BOUNDED_METRICS))
    for i, scenario in enumerate(SCENARIOS):
        row = medians[medians["scenario"] == scenario]
        heights = [float(row[m].iloc[0]) if len(row) else np.nan for m in BOUNDED_METRICS]
        n = int(row["n"].iloc[0]) if len(row) else 0
        ax.bar(x + i * width, np.nan_to_num(heights), width, label=f"{scenario} (n={n})")
    ax.set_xticks(x + width * (len(SCENARIOS) - 1) / 2, BOUNDED_METRICS)
    ax.set_ylabel("median")
    ax.set_title(f"{method}: medians per scenario")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def split_boxplots(examples: pd.DataFrame, method: str, metrics=("rank_corr", "iou", "f1")) -> plt.Figure:
    """Figure 8: distribution of each metric per split."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data, labels = [], []
        for scenario in SCENARIOS:
            values = examples.loc[scenario_mask(examples, scenario), metric].dropna().to_numpy()
            data.append(values if len(values) else [np.nan])
            labels.append(f"{scenario}\n({len(values)})")
        ax.boxplot(data, tick_labels=labels)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(metric)
    fig.suptitle(f"{method}: metric per split")
    fig.tight_layout()
    return fig


def mean_differences(significance: pd.DataFrame, method: str) -> plt.Figure:
    """Figures 3, 5, 6: mean difference (group1 - group2) with bootstrap 95% CI, per comparison."""
    rows = significance[(significance["test"] == "student") & significance["metric"].isin(BOUNDED_METRICS)]
    fig, axes = plt.subplots(1, len(COMPARISONS), figsize=(3.2 * len(COMPARISONS), 3.6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], COMPARISONS):
        part = rows[rows["comparison"] == name].set_index("metric").reindex(BOUNDED_METRICS)
        y = np.arange(len(BOUNDED_METRICS))
        diff = part["mean_diff"].to_numpy(float)
        err = np.vstack([diff - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - diff])
        colours = ["tab:red" if s is True else "tab:grey" for s in part["significant"].tolist()]
        ax.barh(y, np.nan_to_num(diff), color=colours, xerr=np.nan_to_num(np.abs(err)), capsize=2)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, BOUNDED_METRICS)
        testable = part["testable"].fillna(False).astype(bool).any()
        n1, n2 = part["n1"].max(), part["n2"].max()
        ax.set_title(name.replace("_", " ") + f"\n(n={n1:.0f} vs {n2:.0f}" + ("" if testable else ", not testable")
                     + ")", fontsize=8)
    fig.suptitle(f"{method}: mean differences (red: Holm-significant)")
    fig.tight_layout()
    return fig


def confidence_scatter(examples: pd.DataFrame, correlations: pd.DataFrame, method: str,
                       metrics=("rank_corr", "iou", "f1")) -> plt.Figure:
    """Figure 4: confidence vs metric among correct predictions, with Pearson r."""
    correct = examples[examples["correct"].astype(bool)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.scatter(correct["confidence"], correct[metric], s=8, alpha=0.6)
        row = correlations[(correlations["metric"] == metric) & (correlations["correlation"] == "pearson")]
        r = float(row["r"].iloc[0]) if len(row) else np.nan
        ax.set_title(f"{metric}: Pearson r = {r:.3f}")
        ax.set_xlabel("confidence")
    fig.suptitle(f"{method}: confidence vs similarity (correct predictions)")
    fig.tight_layout()
    return fig


def qualitative_panel(cases: list[dict]) -> plt.Figure:
    """Figures 9-10: per case, the image, the human map and the attribution map (sigmoid display).

    Each case: ``image [S, S, 3]``, ``human [S, S]``, ``attribution [S, S]``, ``title`` (str).
    """
    fig, axes = plt.subplots(len(cases), 3, figsize=(8, 2.8 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        row[0].imshow(case["image"])
        row[1].imshow(case["human"], cmap="gray")
        row[2].imshow(sigmoid_for_display(case["attribution"][None])[0], cmap="inferno")
        row[0].set_title(case["title"], fontsize=7, loc="left")
        row[1].set_title("human", fontsize=8)
        row[2].set_title(case["map_title"], fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


def pick_cases(examples: pd.DataFrame, n: int) -> pd.DataFrame:
    """The most confident wrong and least confident correct predictions first, then the rest."""
    wrong = examples[~examples["correct"].astype(bool)].sort_values("confidence", ascending=False)
    right = examples[examples["correct"].astype(bool)].sort_values("confidence")
    picked = pd.concat([wrong.head((n + 1) // 2), right.head(n // 2)])
    if len(picked) < n:
        picked = pd.concat([picked, examples.drop(picked.index).head(n - len(picked))])
    return picked.head(n)


def run_figures(outputs, results, cfg) -> dict[str, plt.Figure]:
    """Every figure of one run, by artifact name."""
    from vqa_interp.pipeline import human_maps_for

    method = cfg.method.name
    figures: dict[str, plt.Figure] = {}
    humans = [human_maps_for(e, outputs.geometry, "mean", 1)[0] for e in outputs.examples[:100]]
    figures["fig1_human_weight_distribution"] = human_weight_distribution(humans)
    if results.examples is None or results.examples.empty:
        return figures
    examples, tables = results.examples, results.tables
    figures["fig7_scenario_medians"] = scenario_bars(tables["scenario_medians"], method)
    figures["fig8_split_distributions"] = split_boxplots(examples, method)
    figures["fig3_5_6_mean_differences"] = mean_differences(tables["significance"], method)
    figures["fig4_confidence_correlation"] = confidence_scatter(examples, tables["confidence_correlations"], method)
    cases = []
    by_id = {e.question_id: e for e in outputs.examples}
    for row in pick_cases(examples, cfg.analysis.n_panels).itertuples():
        example = by_id[row.question_id]
        cases.append({
            "image": load_display_image(example.image_path, outputs.geometry),
            "human": human_maps_for(example, outputs.geometry, "mean", 1)[0],
            "attribution": outputs.cache.load(row.map_key),
            "title": f"Q: {row.question}\nA: {row.answer}  pred: {row.prediction} (p={row.confidence:.2f})",
            "map_title": f"{method} -> '{row.target_answer}'",
        })
    if cases:
        figures["fig9_10_qualitative"] = qualitative_panel(cases)
    return figures
