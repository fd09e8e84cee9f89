"""The parent run of a multirun: the comparison across its child runs (methods x k x thresholds)."""
from __future__ import annotations

import logging

import pandas as pd

from vqa_interp.scoring import METRICS

log = logging.getLogger(__name__)
AXES = ("method.name", "k", "confidence.low", "confidence.high", "model.name", "preprocessing.size",
        "scoring.tie_policy", "scoring.dice", "scoring.human", "data.shard")


def child_runs(client, parent_run_id: str) -> list:
    run = client.get_run(parent_run_id)
    return client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=10000)


def comparison_table(runs) -> pd.DataFrame:
    """One row per child run: its id, status, sweep axes, and mean/median of every metric."""
    rows = []
    for run in runs:
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status}
        row.update({axis: run.data.params.get(axis) for axis in AXES})
        for metric in ("model_accuracy", "n_rows", *(f"{s}_{m}" for m in METRICS for s in ("mean", "median"))):
            row[metric] = run.data.metrics.get(metric)
        rows.append(row)
    return pd.DataFrame(rows)


def scenario_medians(client, runs) -> pd.DataFrame:
    """The ``scenario_medians`` table of every finished child, stacked with its run's axes."""
    frames = []
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        try:
            text = client.download_artifacts(run.info.run_id, "tables/scenario_medians.csv")
            frame = pd.read_csv(text)
        except Exception:  # a child without the table (e.g. empty run) is left out
            continue
        frame.insert(0, "run_id", run.info.run_id)
        for axis in ("method.name", "k", "confidence.low", "confidence.high"):
            frame.insert(1, axis, run.data.params.get(axis))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def comparison_figure(table: pd.DataFrame):
    """Mean of each bounded metric per method, one panel per (k, thresholds) setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    finished = table[table["status"] == "FINISHED"].copy()
    settings = finished.groupby(["k", "confidence.low", "confidence.high"], dropna=False)
    n = max(1, settings.ngroups)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    metrics = ["mean_rank_corr", "mean_iou", "mean_dice", "mean_precision", "mean_recall", "mean_f1"]
    for ax, (setting, group) in zip(axes[0], settings):
        methods = list(group["method.name"])
        width = 0.8 / max(1, len(methods))
        x = np.arange(len(metrics))
        for i, (_, row) in enumerate(group.iterrows()):
            ax.bar(x + i * width, [float(row[m] or 0) for m in metrics], width, label=row["method.name"])
        ax.set_xticks(x + width * (len(methods) - 1) / 2, [m[5:] for m in metrics], fontsize=8)
        ax.set_title(f"k={setting[0]}, low={setting[1]}, high={setting[2]}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Method comparison (means over each run's rows)")
    fig.tight_layout()
    return fig


def close_parent(tracker, status: str = "FINISHED") -> str:
    """Summarise the children into the parent and end it; FAILED if any child did not finish."""
    try:
        if summarize_sweep(tracker):
            status = "FAILED"
    except Exception as exc:  # the comparison must never leave the parent RUNNING
        log.exception("sweep comparison failed")
        tracker.set_tags({"sweep_summary_error": f"{type(exc).__name__}: {exc}"[:5000]})
        status = "FAILED"
    tracker.end(status)
    return status


def main(argv=None) -> int:
    """``python -m vqa_interp.sweep PARENT_RUN_ID``: (re)build a sweep's comparison and close its
    parent run, e.g. one left RUNNING by a killed multirun."""
    import argparse
    import os

    from vqa_interp.tracking import RunTracker, client_for

    parser = argparse.ArgumentParser(prog="python -m vqa_interp.sweep")
    parser.add_argument("parent_run_id")
    parser.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db"))
    args = parser.parse_args(argv)
    status = close_parent(RunTracker(client_for(args.tracking_uri), args.parent_run_id), args.status)
    print(f"parent run {args.parent_run_id}: {status}")
    return 0


def summarize_sweep(tracker) -> list[str]:
    """Log the comparison across the children to the parent; returns the ids of failed children."""
    from vqa_interp.merge import merge_sweep

    runs = [r for r in child_runs(tracker.client, tracker.run_id) if r.data.tags.get("run_kind") == "evaluation"]
    table = comparison_table(runs)
    failed = [r.info.run_id for r in runs if r.info.status != "FINISHED"]
    tracker.log_metrics({"n_children": len(runs), "n_children_finished": len(runs) - len(failed),
                         "n_children_failed": len(failed)})
    tracker.set_tags({"failed_children": ",".join(failed) or "none"})
    if table.empty:
        return failed
    merged = merge_sweep(tracker.client, tracker.run_id)
    if merged:
        tracker.set_tags({"merged_runs": ",".join(merged)})
    tracker.log_table(table, "method_comparison")
    medians = scenario_medians(tracker.client, runs)
    if not medians.empty:
        tracker.log_table(medians, "scenario_medians_by_run")
    if (table["status"] == "FINISHED").any():
        tracker.log_figure(comparison_figure(table), "figures/method_comparison.png")
    return failed


if __name__ == "__main__":
    import sys

    sys.exit(main())
