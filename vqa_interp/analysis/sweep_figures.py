"""Figures of a sweep's parent run: every method's map of the same questions side by side
(the paper's Figures 9-10), each method's means by scenario (Figure 2) and the methods' comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vqa_interp.analysis.figures import new_figure
from vqa_interp.metrics.prepare import sigmoid_for_display
from vqa_interp.metrics.registry import bounded_metrics


def methods_side_by_side(cases: list[dict], maps_by_method: dict[str, dict[int, np.ndarray]]) -> Figure:
    """Figures 9-10 across a sweep: per question, the image, the human map and every method's map.

    ``cases``: dicts with ``question_id``, ``image [S, S, 3]``, ``human [S, S]``, ``title``;
    ``maps_by_method``: method -> question_id -> map ``[S', S']`` (sigmoid display, as the paper).
    """
    methods = list(maps_by_method)
    ncols = 2 + len(methods)
    fig, axes = new_figure(len(cases), ncols, figsize=(2.3 * ncols, 2.5 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        row[0].imshow(case["image"])
        row[0].set_title(case["title"], fontsize=6, loc="left")
        row[1].imshow(case["human"], cmap="gray")
        row[1].set_title("human (mean of annotators)", fontsize=7)
        for ax, method in zip(row[2:], methods):
            attribution = maps_by_method[method].get(case["question_id"])
            if attribution is not None:
                ax.imshow(sigmoid_for_display(attribution[None])[0], cmap="inferno")
            ax.set_title(method, fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle("The same questions, every method (map of the predicted answer)", fontsize=10)
    fig.tight_layout()
    return fig


def method_means_table(means: pd.DataFrame) -> Figure:
    """Figure 2: the table of mean confidence and metric means per method (one row per run)."""
    shown = means.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(
                lambda v: "" if pd.isna(v) else (f"{v:.3g}" if abs(v) < 1e-3 else f"{v:.4f}")
            )
    fig, ax = new_figure(figsize=(1.2 + 0.95 * len(shown.columns), 0.8 + 0.32 * (len(shown) + 1)))
    ax.axis("off")
    table = ax.table(cellText=shown.to_numpy(), colLabels=list(shown.columns), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.3)
    ax.set_title("Mean of each metric per method (cf. Tang & Yuan, Figure 2)", fontsize=9)
    fig.tight_layout()
    return fig


def comparison_figure(table: pd.DataFrame):
    """Mean of each bounded metric per method, one panel per (k, thresholds) setting."""
    finished = table[table["status"] == "FINISHED"].copy()
    settings = finished.groupby(["k", "confidence.low", "confidence.high"], dropna=False)
    n = max(1, settings.ngroups)
    fig, axes = new_figure(1, n, figsize=(5 * n, 3.8), squeeze=False)
    metrics = [f"score/{m}" for m in bounded_metrics() if f"score/{m}" in table.columns]
    for ax, (setting, group) in zip(axes[0], settings):
        methods = list(group["method.name"])
        width = 0.8 / max(1, len(methods))
        x = np.arange(len(metrics))
        for i, (_, row) in enumerate(group.iterrows()):
            ax.bar(
                x + i * width,
                [float(row[m]) if pd.notna(row[m]) else 0.0 for m in metrics],
                width,
                label=row["method.name"],
            )
        ax.set_xticks(
            x + width * (len(methods) - 1) / 2,
            [m.split("/", 1)[1] for m in metrics],
            fontsize=7,
            rotation=30,
            ha="right",
        )
        ax.set_ylabel("mean over the run's rows", fontsize=8)
        ax.set_title(f"k={setting[0]}, low={setting[1]}, high={setting[2]}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Method comparison (means over each run's rows)")
    fig.tight_layout()
    return fig
