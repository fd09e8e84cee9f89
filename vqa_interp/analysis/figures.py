"""Figures of a run (the paper's Figures 1, 3-10), as matplotlib figures for the tracker to log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vqa_interp.analysis.group_tests import TEST_NAMES
from vqa_interp.analysis.statistics import COMPARISONS, SCENARIOS, scenario_mask
from vqa_interp.data.datasets import human_maps_for
from vqa_interp.data.images import load_display_image
from vqa_interp.metrics.prepare import apply_steps, sigmoid_for_display
from vqa_interp.metrics.registry import REGISTRY, family_metrics, metric_names


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """A figure and its axes, without pyplot (no global backend or figure registry is touched)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(figure: Figure, png: Path) -> None:
    """``figure`` as ``png`` (150 dpi) and, beside it, the same figure as SVG."""
    figure.savefig(png, dpi=150)
    # the layout is computed by the first save; the second keeps it (half the figure time)
    engine = figure.get_layout_engine()
    figure.set_layout_engine("none")
    figure.savefig(png.with_suffix(".svg"))
    figure.set_layout_engine(engine)


def human_weight_distribution(human_maps: list[np.ndarray]) -> Figure:
    """Figure 1: histogram of the pixel weights of the (min-max scaled) human maps."""
    fig, ax = new_figure(figsize=(6, 3.5))
    values = np.concatenate([apply_steps(m[None], ["minmax"])[0].ravel() for m in human_maps]) if human_maps else []
    ax.hist(values, bins=50, color="tab:blue", log=True)
    ax.set_xlabel("pixel weight (min-max scaled)")
    ax.set_ylabel("pixels (log)")
    ax.set_title(f"Human attention weights ({len(human_maps)} maps)")
    fig.tight_layout()
    return fig


def _metric_label(metric: str) -> str:
    entry = REGISTRY.get(metric)
    if entry is None:
        return metric
    arrow = "higher = closer to humans" if entry.higher_is_better else "lower = closer to humans"
    return f"{metric} ({arrow})"


def scenario_bars(medians: pd.DataFrame, method: str, min_group: int = 10) -> Figure:
    """Figure 7: the median of every metric and of confidence per scenario, one panel each.

    Bounded metrics share their natural axis, unbounded ones get their own; a scenario with fewer
    than ``min_group`` examples is drawn hatched and grey (too few to read).
    """
    columns = ["confidence", *[m for m in metric_names() if m in medians.columns]]
    ncols = 4
    nrows = -(-len(columns) // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows), squeeze=False)
    palette = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#937860"]
    for i, (ax, column) in enumerate(zip(axes.ravel(), columns)):
        heights, colours, hatches, labels = [], [], [], []
        for k, scenario in enumerate(SCENARIOS):
            row = medians[medians["scenario"] == scenario]
            n = int(row["n"].iloc[0]) if len(row) else 0
            heights.append(float(row[column].iloc[0]) if len(row) else np.nan)
            small = n < min_group
            colours.append("#cccccc" if small else palette[k % len(palette)])
            hatches.append("//" if small else "")
            labels.append(f"{scenario.replace('_', ' ')}\nn={n}")
        x = np.arange(len(SCENARIOS))
        bars = ax.bar(x, np.nan_to_num(heights), color=colours)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        # every panel has the same scenarios and n: their names under the lowest panel of each
        # column only (the figure reads the same, and draws ~4x fewer labels: it is redrawn per k)
        if i + ncols < len(columns):
            ax.set_xticks(x, [])
        else:
            ax.set_xticks(x, labels, fontsize=6, rotation=45, ha="right")
        ax.set_title(column, fontsize=9)
        ax.set_ylabel("median", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        entry_range = _range(column)
        if entry_range is not None:
            ax.set_ylim(min(0.0, entry_range[0]), entry_range[1])
    for ax in axes.ravel()[len(columns) :]:
        ax.axis("off")
    fig.suptitle(f"{method}: median per scenario (grey, hatched: fewer than {min_group} examples)", fontsize=10)
    fig.tight_layout()
    return fig


def _range(column: str) -> tuple[float, float] | None:
    if column == "confidence":
        return (0.0, 1.0)
    entry = REGISTRY.get(column)
    return entry.range if entry is not None and entry.bounded else None


def split_boxplots(examples: pd.DataFrame, method: str, metrics=None) -> Figure:
    """Figure 8: distribution of each tested metric per split (n under each box)."""
    metrics = [m for m in (metrics or family_metrics()) if m in examples.columns]
    fig, axes = new_figure(1, len(metrics), figsize=(3.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data, labels = [], []
        for scenario in SCENARIOS:
            values = examples.loc[scenario_mask(examples, scenario), metric].dropna().to_numpy()
            data.append(values if len(values) else [np.nan])
            labels.append(f"{scenario.replace('_', ' ')}\nn={len(values)}")
        ax.boxplot(data, tick_labels=labels)
        ax.tick_params(axis="x", labelsize=6, rotation=45)
        ax.set_title(_metric_label(metric), fontsize=8)
    fig.suptitle(f"{method}: distribution per split (box: quartiles, whiskers: 1.5 IQR)", fontsize=10)
    fig.tight_layout()
    return fig


def mean_differences(significance: pd.DataFrame, method: str) -> Figure:
    """Figures 3, 5, 6: mean difference (group1 - group2) of each tested metric with its bootstrap
    95% CI, per comparison, under the run's primary test (``analysis.test``, the one the summary
    reports); red = Holm-significant, grey hatched = not testable (underpowered). Three panels a
    row, so that each stays ~500 px wide at the report's width."""
    metrics = [m for m in family_metrics() if m in set(significance["metric"])]
    role = significance["role"] == "primary" if "role" in significance else significance["test"] == "welch"
    rows = significance[role & significance["metric"].isin(metrics)]
    test = rows["test"].iloc[0] if len(rows) else ""
    columns = min(3, len(COMPARISONS))
    lines = -(-len(COMPARISONS) // columns)
    fig, axes = new_figure(lines, columns, figsize=(4.6 * columns, 3.3 * lines + 0.5), squeeze=False)
    for ax in axes.flat[len(COMPARISONS) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, COMPARISONS):
        part = rows[rows["comparison"] == name].set_index("metric").reindex(metrics)
        y = np.arange(len(metrics))
        diff = part["mean_diff"].to_numpy(float)
        err = np.vstack([diff - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - diff])
        testable = part["testable"].fillna(False).astype(bool).to_numpy()
        significant = part["significant"].fillna(False).astype(bool).to_numpy()
        colours = ["tab:red" if s else ("tab:blue" if t else "#dddddd") for s, t in zip(significant, testable)]
        bars = ax.barh(y, np.nan_to_num(diff), color=colours, xerr=np.nan_to_num(np.abs(err)), capsize=3)
        for bar, t in zip(bars, testable):
            bar.set_hatch("" if t else "//")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, metrics, fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
        ax.set_xlabel("mean difference (group 1 - group 2)", fontsize=9)
        n1, n2 = part["n1"].max(), part["n2"].max()
        first, second = COMPARISONS[name]
        note = "" if testable.any() else ": underpowered, not tested"
        ax.set_title(
            f"{first.replace('_', ' ')} (n={n1:.0f}) vs {second.replace('_', ' ')} (n={n2:.0f}){note}", fontsize=9.5
        )
    fig.suptitle(
        f"{method}: mean differences with bootstrap 95% CI, one value per question "
        f"(red: Holm-significant under {TEST_NAMES.get(test, test)}; blue: not significant; "
        f"grey hatched: not tested)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def correlation_matrix(examples: pd.DataFrame, method: str) -> Figure:
    """Figure 4: Pearson correlation of confidence and every metric with each other, among correct
    predictions (the paper's full matrix)."""
    columns = ["confidence", *[m for m in metric_names() if m in examples.columns]]
    correct = examples.loc[examples["correct"].astype(bool), columns].astype(float)
    matrix = correct.corr(method="pearson").to_numpy()
    fig, ax = new_figure(figsize=(1.0 + 0.62 * len(columns), 0.8 + 0.55 * len(columns)))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(columns)), columns, fontsize=7)
    for i in range(len(columns)):
        for j in range(len(columns)):
            if np.isfinite(matrix[i, j]):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if abs(matrix[i, j]) > 0.6 else "black",
                )
    fig.colorbar(image, ax=ax, label="Pearson r", shrink=0.8)
    ax.set_title(f"{method}: correlations among correct predictions (n={len(correct)})", fontsize=9)
    fig.tight_layout()
    return fig


def confidence_scatter(examples: pd.DataFrame, correlations: pd.DataFrame, method: str, metrics=None) -> Figure:
    """Figure 4 (detail): confidence vs each tested metric among correct predictions, with Pearson r."""
    metrics = [m for m in (metrics or family_metrics()) if m in examples.columns]
    correct = examples[examples["correct"].astype(bool)]
    fig, axes = new_figure(1, len(metrics), figsize=(3.6 * len(metrics), 3.3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.scatter(correct["confidence"], correct[metric], s=8, alpha=0.6)
        row = correlations[(correlations["metric"] == metric) & (correlations["correlation"] == "pearson")]
        r = float(row["r"].iloc[0]) if len(row) else np.nan
        ax.set_title(f"{metric}: Pearson r = {r:.3f} (n={len(correct)})", fontsize=8)
        ax.set_xlabel("confidence (softmax p of the prediction)", fontsize=7)
        ax.set_ylabel(metric, fontsize=7)
    fig.suptitle(f"{method}: confidence vs similarity (correct predictions)", fontsize=10)
    fig.tight_layout()
    return fig


def qualitative_panel(cases: list[dict]) -> Figure:
    """Figures 9-10: per case, the image, the human map and the attribution map (sigmoid display).

    Each case: ``image [S, S, 3]``, ``human [S, S]``, ``attribution [S, S]``, ``title`` (str).
    """
    fig, axes = new_figure(len(cases), 3, figsize=(8, 2.8 * len(cases)), squeeze=False)
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


def pick_cases(examples: pd.DataFrame, n: int, panel_ids=None) -> pd.DataFrame:
    """The questions shown side by side: ``panel_ids`` if given (in that order), else the most
    confident wrong and least confident correct predictions first, then the rest. Predictions do
    not depend on the method, so every run of a sweep picks the same questions."""
    if panel_ids:
        by_id = examples.drop_duplicates("question_id").set_index("question_id", drop=False)
        return by_id.loc[[q for q in panel_ids if q in by_id.index]]
    wrong = examples[~examples["correct"].astype(bool)].sort_values(
        ["confidence", "question_id"], ascending=[False, True]
    )
    right = examples[examples["correct"].astype(bool)].sort_values(["confidence", "question_id"])
    picked = pd.concat([wrong.head((n + 1) // 2), right.head(n // 2)])
    if len(picked) < n:
        picked = pd.concat([picked, examples.drop(picked.index).head(n - len(picked))])
    return picked.head(n)


def _human_maps(outputs):
    """The run's dataset's human-map reader (the plain reader for outputs without a dataset)."""
    return outputs.dataset.human_maps if outputs.dataset is not None else human_maps_for


def panel_cases(outputs, results, settings) -> list[dict]:
    """The cases of the qualitative panel: image ``[S, S, 3]`` uint8, human map ``[S, S]``, the
    map that stands for the example ``[S', S']`` and their captions."""
    if results.examples is None or results.examples.empty:
        return []
    human_maps = _human_maps(outputs)
    by_id = {e.question_id: e for e in outputs.examples}
    cases = []
    a = settings.analysis
    for row in pick_cases(results.examples, a.n_panels, a.panel_ids).itertuples():
        example = by_id[row.question_id]
        cases.append(
            {
                "question_id": int(row.question_id),
                "image": load_display_image(example.image_path, outputs.geometry),
                "human": human_maps(example, outputs.geometry, "mean", 1)[0],
                "attribution": outputs.cache.load(row.map_key),
                "title": f"Q: {row.question}\nA: {row.answer}  pred: {row.prediction} (p={row.confidence:.2f})",
                "map_title": f"{settings.attribution.method} -> '{row.target_answer}'",
            }
        )
    return cases


def figure_makers(outputs, results, settings, cases: list[dict] | None = None, skip=()) -> dict:
    """:func:`run_figures` as functions that draw each figure when called, by artifact name, the
    figures that do not depend on k first (a k sweep's later jobs reuse them)."""
    method = settings.attribution.method
    makers = {}
    if "fig1_human_weight_distribution" not in skip:

        def fig1():
            human_maps = _human_maps(outputs)
            return human_weight_distribution(
                [human_maps(e, outputs.geometry, "mean", 1)[0] for e in outputs.examples[:100]]
            )

        makers["fig1_human_weight_distribution"] = fig1
    if results.examples is None or results.examples.empty:
        return makers
    examples, tables = results.examples, results.tables
    cases = panel_cases(outputs, results, settings) if cases is None else cases
    if cases and "fig9_10_qualitative" not in skip:
        makers["fig9_10_qualitative"] = lambda: qualitative_panel(cases)
    makers.update(
        {
            "fig7_scenario_medians": lambda: scenario_bars(
                tables["scenario_medians"], method, settings.analysis.min_group
            ),
            "fig8_split_distributions": lambda: split_boxplots(examples, method),
            "fig3_5_6_mean_differences": lambda: mean_differences(tables["significance"], method),
            "fig4_correlation_matrix": lambda: correlation_matrix(examples, method),
            "fig4_confidence_correlation": lambda: confidence_scatter(
                examples, tables["confidence_correlations"], method
            ),
        }
    )
    return makers


def sanity_figure(table: pd.DataFrame):
    """The classic curves: similarity to the original maps after each randomisation step."""
    from vqa_interp.attribution.sanity import FAIL_THRESHOLD, verdict

    method = table["method"].iloc[0]
    modes = list(dict.fromkeys(table["mode"]))
    fig, axes = new_figure(1, len(modes), figsize=(6.2 * len(modes), 4.0), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        part = table[table["mode"] == mode]
        labels = list(dict.fromkeys(part.sort_values("step")["block"]))
        for similarity in sorted(set(part["similarity"])):
            curve = part[part["similarity"] == similarity].sort_values("step")
            style = "--" if similarity.startswith("human_") else "-"
            ax.errorbar(
                curve["step"], curve["mean"], yerr=curve["std"], fmt="o" + style, ms=3, capsize=2, label=similarity
            )
        ax.axhline(FAIL_THRESHOLD, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(-0.3, 1.05)
        ax.set_ylabel("mean over questions (bars: 1 SD)", fontsize=8)
        ax.set_xlabel(
            "randomised " + ("up to (from the output down)" if mode == "cascading" else "block alone"), fontsize=8
        )
        ax.set_title(f"{method}: {mode} randomisation", fontsize=9)
        ax.legend(fontsize=6)
    passed, final = verdict(table)
    fig.suptitle(
        f"Sanity check (Adebayo et al. 2018): {'passes' if passed else 'FAILS'} "
        f"(Spearman |map| after full randomisation {final:.2f}; fails above {FAIL_THRESHOLD})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
