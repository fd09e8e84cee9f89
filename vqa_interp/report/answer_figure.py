"""The report's first figure: each run's (method's) headline metrics with their 95% CIs, beside the
random floor, the centre Gaussian and the human ceiling of the same questions (the runs' own
``baselines`` tables), one panel per metric, so the first screen answers "which method looks like
humans" against what chance and a human reach."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vqa_interp.metrics.registry import headline_metrics

MARKS = (
    ("random", "x", "#777777", "random floor"),
    ("centre", "v", "#1f77b4", "centre Gaussian"),
    ("human_ceiling", "*", "#d62728", "human ceiling"),
)


def answer_figure(baselines: dict[str, pd.DataFrame], labels: dict[str, str], out: Path) -> Path | None:
    """Draw the figure into ``out`` (PNG). ``baselines``: run ID -> its ``baselines`` table (``reference``,
    ``metric``, ``mean``, ``ci_low``, ``ci_high``); ``labels``: run ID -> the name to show. None when no
    run has a headline metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in baselines if baselines[r] is not None and not baselines[r].empty]
    metrics = [m for m in headline_metrics() if any((baselines[r]["metric"] == m).any() for r in runs)]
    if not runs or not metrics:
        return None
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.4 * len(metrics) + 1.8, 0.42 * len(runs) + 1.5), sharey=True, squeeze=False
    )
    y = np.arange(len(runs))[::-1]
    for ax, metric in zip(axes[0], metrics):
        for row, run in zip(y, runs):
            table = baselines[run]
            part = table[table["metric"] == metric].set_index("reference")
            if "method" in part.index:
                m = part.loc["method"]
                ax.errorbar(
                    m["mean"],
                    row,
                    xerr=[[m["mean"] - m["ci_low"]], [m["ci_high"] - m["mean"]]],
                    fmt="o",
                    color="black",
                    ms=5,
                    capsize=3,
                    label="method (95% CI)" if row == y[0] else None,
                )
            for reference, marker, colour, name in MARKS:
                if reference in part.index and np.isfinite(part.loc[reference, "mean"]):
                    ax.plot(
                        part.loc[reference, "mean"],
                        row,
                        marker,
                        color=colour,
                        ms=7,
                        alpha=0.85,
                        label=name if row == y[0] else None,
                    )
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, len(runs) - 0.4)
    axes[0][0].set_yticks(y, [labels.get(r, r[:8]) for r in runs])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, fontsize=9)
    fig.suptitle("Each method against chance and a human (one value per question, mean over questions)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if len(runs) > 2 else 0.16, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
