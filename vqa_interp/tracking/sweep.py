"""The parent run of a multirun: the comparison across its child runs (methods x k x thresholds)."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd

from vqa_interp.explain.analysis import COMPARED_METRICS
from vqa_interp.metrics.registry import family_metrics, metric_names
from vqa_interp.tracking import explorer_runs
from vqa_interp.tracking.store import child_runs, download_table
from vqa_interp.tracking.stores import DEFAULT_URI
from vqa_interp.tracking.sweep_tables import (
    method_means_by_run,
    method_pairs,
    model_comparison,
    scenario_medians,
    side_by_side_panel,
    test_options,
)
from vqa_interp.tracking.ui_view import ranking_metrics, viewer_table

log = logging.getLogger(__name__)
AXES = (
    "method.name",
    "k",
    "confidence.low",
    "confidence.high",
    "model.name",
    "preprocessing.size",
    "scoring.tie_policy",
    "scoring.dice",
    "scoring.human",
    "data.shard",
)


def comparison_table(runs) -> pd.DataFrame:
    """One row per child run: its id, status, sweep axes, and mean/median of every metric."""
    rows = []
    for run in runs:
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status}
        row.update({axis: run.data.params.get(axis) for axis in AXES})
        for metric in (
            "model/accuracy",
            "count/rows",
            *(f"score/{m}" for m in metric_names()),
            *(f"norm/{m}" for m in family_metrics()),
            *COMPARED_METRICS,
        ):
            if metric in run.data.metrics:
                row[metric] = run.data.metrics[metric]
        rows.append(row)
    return pd.DataFrame(rows)


def close_parent(
    tracker, status: str = "FINISHED", finishing: Collection[str] = (), finish: Callable[[], None] | None = None
) -> str:
    """Summarise the children into the parent and end it: ``status``, but FAILED instead of FINISHED
    when a child did not finish.

    ``finishing``: children whose work is done and logged but whose figures are still drawing; the
    comparison counts them as FINISHED (it reads no child figure) while ``finish`` (called after
    the comparison, whatever happens) logs those figures and ends them. Should one of them end
    otherwise, the comparison is made again with the statuses as they are."""
    from vqa_interp.tracking.signals import mark_interrupted, was_interrupted

    try:
        try:
            failed = summarize_sweep(tracker, finishing)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM during the comparison: the sweep ends KILLED, now
            mark_interrupted()
            failed = True
        finally:
            if finish is not None:
                finish()  # children still drawing end FINISHED, or KILLED if their drawing died
        if finishing and any(tracker.client.get_run(run_id).info.status != "FINISHED" for run_id in finishing):
            failed = summarize_sweep(tracker)
        if was_interrupted():
            status = "KILLED"
        elif failed and status == "FINISHED":
            status = "FAILED"
    except Exception as exc:  # the comparison must never leave the parent RUNNING
        log.exception("sweep comparison failed")
        tracker.set_tags({"sweep_summary_error": f"{type(exc).__name__}: {exc}"[:5000]})
        status = "FAILED"
    tracker.end(status)
    return status


def counted_as_finished(runs: list, finishing: Collection[str]) -> list:
    """``runs`` with those in ``finishing`` that are still RUNNING given the status FINISHED (copies;
    the store is not changed)."""
    from mlflow.entities import Run

    return [
        Run(run.info._copy_with_overrides(status="FINISHED"), run.data, run.inputs)
        if run.info.run_id in finishing and run.info.status == "RUNNING"
        else run
        for run in runs
    ]


FAILED_JOBS_DIR = "failed_jobs"


def record_failed_job(sweep_dir: str | Path, job: int, overrides: list[str], error: str) -> None:
    """A job that fails before opening its run leaves ``<sweep dir>/failed_jobs/<job>.json`` so the
    parent counts it (whatever process or machine the launcher ran it on)."""
    folder = Path(sweep_dir) / FAILED_JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job}.json").write_text(json.dumps({"job": job, "overrides": overrides, "error": error}))


NOT_APPLICABLE_DIR = "not_applicable"


def record_not_applicable(sweep_dir: str | Path, job: int, overrides: list[str], reason: str) -> None:
    """A job whose model cannot serve its method (a model x method sweep) leaves
    ``<sweep dir>/not_applicable/<job>.json``: the parent lists it, not as a failure."""
    folder = Path(sweep_dir) / NOT_APPLICABLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job}.json").write_text(json.dumps({"job": job, "overrides": overrides, "error": reason}))


def not_applicable_jobs(sweep_dir: str | None) -> pd.DataFrame:
    """``job, overrides, reason`` of the sweep's jobs that were not applicable."""
    folder = Path(sweep_dir) / NOT_APPLICABLE_DIR if sweep_dir else None
    rows = []
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.json"), key=lambda p: int(p.stem)):
            note = json.loads(path.read_text())
            rows.append({"job": note["job"], "overrides": " ".join(note["overrides"]), "reason": note["error"]})
    return pd.DataFrame(rows, columns=["job", "overrides", "reason"])


def failed_jobs(sweep_dir: str | None) -> list[str]:
    """``"job N (overrides): error"`` for each job of the sweep that failed before opening its run."""
    if not sweep_dir or not (Path(sweep_dir) / FAILED_JOBS_DIR).is_dir():
        return []
    out = []
    for path in sorted((Path(sweep_dir) / FAILED_JOBS_DIR).glob("*.json"), key=lambda p: int(p.stem)):
        note = json.loads(path.read_text())
        out.append(f"job {note['job']} ({' '.join(note['overrides'])}): {note['error'][:300]}")
    return out


def close_orphaned_children(client, parent_run_id: str) -> list[str]:
    """Mark KILLED the parent's RUNNING children whose process is gone (same host; see
    :func:`vqa_interp.tracking.store.close_orphans`). Returns their IDs."""
    from vqa_interp.tracking.liveness import orphaned

    closed = []
    for run in child_runs(client, parent_run_id):
        if run.info.status == "RUNNING" and orphaned(run):
            client.set_tag(
                run.info.run_id,
                "error",
                f"process {run.data.tags.get('process_id')} ended without "
                "closing the run (closed by the sweep command)",
            )
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


def main(argv=None) -> int:
    """``python -m vqa_interp.sweep PARENT_RUN_ID``: (re)build a sweep's comparison and close its
    parent run, e.g. one left RUNNING by a killed multirun."""
    import argparse
    import os

    from vqa_interp.tracking.store import RunTracker, client_for

    parser = argparse.ArgumentParser(
        prog="python -m vqa_interp.sweep", description="(Re)build a sweep's comparison and close its parent run."
    )
    parser.add_argument("parent_run_id")
    parser.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    args = parser.parse_args(argv)
    tracker = RunTracker(client_for(args.tracking_uri), args.parent_run_id)
    closed = close_orphaned_children(tracker.client, args.parent_run_id)
    if closed:
        print(f"marked {len(closed)} orphaned child run(s) KILLED: {', '.join(closed)}")
    status = close_parent(tracker, args.status)
    if tracker.summary:
        print(tracker.summary, file=sys.stderr)
    print(f"parent run {args.parent_run_id}: {status}")
    return 0


def summarize_sweep(tracker, finishing: Collection[str] = ()) -> list[str]:
    """Log the comparison across the children to the parent; returns the ids of failed children.
    ``finishing``: children counted as FINISHED while still RUNNING (see :func:`close_parent`)."""
    from vqa_interp.analysis import sweep_figures as figures
    from vqa_interp.tracking.merge import merge_sweep

    runs = [
        r
        for r in counted_as_finished(child_runs(tracker.client, tracker.run_id), finishing)
        if r.data.tags.get("run_kind") == "evaluation"
    ]
    table = comparison_table(runs)
    failed, skipped = _log_children_counts(tracker, runs)
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
        tracker.log_figure(figures.comparison_figure(table), "figures/method_comparison.png")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    with tempfile.TemporaryDirectory() as tmp:
        _log_pictures(
            tracker, finished, counted_as_finished(child_runs(tracker.client, tracker.run_id), finishing), tmp
        )
        per_setting, entries = method_pairs(tracker.client, finished, tmp)
        sections = log_rankings(tracker, per_setting)
        from vqa_interp.analysis.answers import sweep_answer_lines

        answers = sweep_answer_lines(
            per_setting,
            lambda run_id: {
                n: t
                for n in ("significance", "adjusted_comparisons")
                if (t := download_table(tracker.client, run_id, n, f"{tmp}/{run_id}")) is not None
            },
        )
        model_pairs, model_ranking = model_comparison(entries, test_options(runs[0].data.params if runs else {}))
        if model_pairs is not None:
            tracker.log_table(model_pairs, "model_pairs")
            tracker.log_table(model_ranking, "model_ranking")
    log_children_table(tracker, table)
    tracker.summary, markdown = sweep_text(
        sections, table, (model_ranking, model_pairs) if model_pairs is not None else None, answers, skipped
    )
    tracker.set_description(markdown)
    return failed


def _log_pictures(tracker, finished: list, children: list, tmp: str) -> None:
    """The sweep's pictures: each method's means by scenario (Figure 2), the explorer with every
    child's map of the same question side by side (a merged run stands for its shards) and the
    side-by-side panel (Figures 9-10)."""
    from vqa_interp.analysis import sweep_figures as figures

    means = method_means_by_run(tracker.client, finished, tmp)
    if not means.empty:
        tracker.log_table(means, "fig2_method_means")
        tracker.log_figure(figures.method_means_table(means), "figures/fig2_method_means.png")
    title = tracker.client.get_run(tracker.run_id).info.run_name
    explorer_runs.log(tracker, explorer_runs.for_runs(tracker.client, children, tmp, title))
    panel = side_by_side_panel(tracker.client, finished, tmp)
    if panel is not None:
        tracker.log_figure(panel, "figures/fig9_10_methods_side_by_side.png")


def _log_children_counts(tracker, runs: list) -> tuple[list[str], pd.DataFrame]:
    """Log how many children finished, failed (a run that failed, or a job that failed before
    opening one: each left a note in the sweep folder) and did not apply; returns the failed
    children's ids (or job notes) and the jobs that did not apply."""
    failed = [r.info.run_id for r in runs if r.info.status != "FINISHED"]
    sweep_dir = tracker.client.get_run(tracker.run_id).data.tags.get("hydra_sweep_dir")
    unopened = failed_jobs(sweep_dir)
    failed += unopened
    skipped = not_applicable_jobs(sweep_dir)
    if len(skipped):
        tracker.log_table(skipped, "not_applicable")
        tracker.log_metrics({"count/children_not_applicable": len(skipped)})
        tracker.set_tags({"not_applicable": "; ".join(skipped["overrides"])[:5000]})
    children = len(runs) + len(unopened)
    tracker.log_metrics(
        {
            "count/children": children,
            "count/children_finished": children - len(failed),
            "count/children_failed": len(failed),
        }
    )
    tracker.set_tags({"failed_children": ",".join(failed)[:5000] or "none"})
    return failed, skipped


def log_rankings(tracker, per_setting: list) -> list[tuple]:
    """Each setting's ranking, pairs and robustness logged to the parent (tables, figures, the
    ranking as metrics); returns ``[(label, ranking, pairs, robustness)]``."""
    from vqa_interp.analysis import robustness as robust
    from vqa_interp.analysis.comparisons import ranking_figure

    sections, logged = [], {}
    for index, (label, pairs, ranking, part) in enumerate(per_setting):
        suffix = f"_{index + 1}" if len(per_setting) > 1 else ""
        tracker.log_figure(ranking_figure(ranking, pairs, label), f"figures/method_ranking{suffix}.png")
        robustness = {
            "metric_agreement": robust.metric_agreement(ranking),
            "ranking_stability": robust.ranking_stability(ranking),
            "ranking_by_type": robust.ranking_by_type(part),
        }
        tracker.log_figure(
            robust.robustness_figure(ranking, robustness["metric_agreement"]), f"figures/ranking_robustness{suffix}.png"
        )
        for name, frame in {"method_pairs": pairs, "method_ranking": ranking, **robustness}.items():
            logged.setdefault(name, []).append(frame.assign(setting=label) if label else frame)
        sections.append((label, ranking, pairs, robustness))
        tracker.log_metrics(ranking_metrics(ranking, label if len(per_setting) > 1 else ""))
    for name, frames in logged.items():
        tracker.log_table(pd.concat(frames, ignore_index=True), name)
    return sections


def sweep_text(
    sections: list[tuple], table: pd.DataFrame, models: tuple | None, answers: list[str], skipped: pd.DataFrame
) -> tuple[str, str]:
    """The parent's terminal summary and its description (Markdown, opening with the answer)."""
    from vqa_interp.analysis.summary import model_summary, sweep_summary

    sections = sections or [("", None, None, {})]
    text = "\n\n".join(
        sweep_summary(ranking, pairs, table, robustness=robustness, setting=label)
        for label, ranking, pairs, robustness in sections
    )
    markdown = "\n\n".join(
        sweep_summary(ranking, pairs, table, markdown=True, robustness=robustness, setting=label)
        for label, ranking, pairs, robustness in sections
    )
    if models is not None:
        text += "\n\n" + model_summary(*models)
        markdown += "\n\n" + model_summary(*models, markdown=True)
    if answers:  # the parent's summary ends with the answer (its description opens with it)
        text += "\n\nThe answer:\n" + "\n".join(f"- {line}" for line in answers)
        markdown = "**The answer**\n\n" + "\n\n".join(answers) + "\n\n" + markdown
    if len(skipped):
        lines = [f"- {r.overrides}: {r.reason.split(';')[0]}" for r in skipped.itertuples()]
        text += "\n\nNot applicable (pairs the model cannot serve, not run):\n" + "\n".join(lines)
        markdown += "\n\n**Not applicable** (pairs the model cannot serve, not run)\n\n" + "\n".join(lines)
    return text, markdown


def log_children_table(tracker, table: pd.DataFrame) -> None:
    """The children's headline metrics as the parent's table (also as an MLflow table, for the UI)."""
    tracker.log_table(table, "children_headline")
    try:
        tracker.client.log_table(
            tracker.run_id, data=viewer_table(table), artifact_file="tables/children_headline.json"
        )
    except Exception:  # the UI's table view is a convenience; the CSV is the record
        log.debug("log_table failed", exc_info=True)
