"""A report's inputs read from an MLflow store (:class:`~vqa_interp.report.build.ReportInputs`):
the runs (a sweep parent's ID stands for its children too), their tables, figures and explorer
entries; :func:`build_report` reads them and writes the report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from vqa_interp.metrics.registry import family_metrics
from vqa_interp.report.build import ReportInputs, evaluations_of, write_report
from vqa_interp.tracking.explorer_runs import for_runs
from vqa_interp.tracking.store import child_runs, download_artifact, download_table, find_run, list_artifacts
from vqa_interp.tracking.sweep import comparison_table
from vqa_interp.tracking.ui_view import UI_VIEW

ROBUSTNESS_TABLES = ("metric_agreement", "ranking_stability", "ranking_by_type")
PARENT_TABLES = ("method_ranking", "method_pairs", "fig2_method_means", *ROBUSTNESS_TABLES)
RUN_TABLES = ("baselines", "normalised", "baseline_tests", "significance", "confidence_correlations")
COMPARED = [
    "run_name",
    "status",
    "method.name",
    "k",
    "model/accuracy",
    "count/rows",
    *(f"score/{m}" for m in family_metrics()),
    *(f"norm/{m}" for m in family_metrics()),
    "faithfulness/deletion_auc",
    "faithfulness/random_deletion_auc",
    "faithfulness/insertion_auc",
    "faithfulness/random_insertion_auc",
]


def resolve_runs(client, run_ids: list[str]) -> list:
    """The runs to report: each ID, and for a sweep parent its children too (order kept, no repeats)."""
    runs, seen = [], set()
    for run_id in run_ids:
        run = find_run(client, run_id)
        family = [run] + (
            sorted(child_runs(client, run.info.run_id), key=lambda r: r.info.start_time)
            if run.data.tags.get("run_kind") == "sweep"
            else []
        )
        for r in family:
            if r.info.run_id not in seen:
                seen.add(r.info.run_id)
                runs.append(r)
    return runs


def differing_params(runs) -> list[str]:
    keys = sorted(set().union(*(r.data.params for r in runs)))
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]


def header_table(runs, ui_url: str) -> pd.DataFrame:
    axes = differing_params([r for r in runs if r.data.tags.get("run_kind") == "evaluation"] or runs)
    rows = []
    for r in runs:
        link = f"{ui_url.rstrip('/')}/#/experiments/{r.info.experiment_id}/runs/{r.info.run_id}{UI_VIEW}"
        rows.append(
            {
                "name": r.info.run_name,
                "run_id": r.info.run_id,
                "kind": r.data.tags.get("run_kind", ""),
                "status": r.info.status,
                **{a: r.data.params.get(a, "") for a in axes},
                "mlflow_ui": link,
            }
        )
    return pd.DataFrame(rows)


def figures_of(client, runs, out: Path, tmp: str) -> list[tuple[str, str, Path]]:
    """Download every PNG figure of the runs into ``out/figures``: (run_id, name, path)."""
    found = []
    for r in runs:
        for artifact in list_artifacts(client, r.info.run_id, "figures"):
            if not artifact.endswith(".png"):
                continue
            local = download_artifact(client, r.info.run_id, artifact, tmp)
            if local is None:
                continue
            target = out / "figures" / f"{r.info.run_id[:8]}_{Path(artifact).name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(local.read_bytes())
            found.append((r.info.run_id, Path(artifact).stem, target))
    return found


def run_tables(client, runs, tmp: str, names=RUN_TABLES) -> dict[str, dict[str, pd.DataFrame]]:
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for r in runs:
        folder = f"{tmp}/{r.info.run_id}"
        out[r.info.run_id] = {
            n: t for n in names if (t := download_table(client, r.info.run_id, n, folder)) is not None
        }
    return out


def read_inputs(client, run_ids: list[str], out: Path, ui_url: str) -> ReportInputs:
    """Everything the report of ``run_ids`` shows; its figures are copied into ``out/figures``."""
    runs = resolve_runs(client, run_ids)
    evaluations = evaluations_of(runs)
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    with tempfile.TemporaryDirectory() as tmp:
        comparison = comparison_table(evaluations) if evaluations else pd.DataFrame()
        if not comparison.empty:
            comparison = comparison[[c for c in COMPARED if c in comparison]]
        parent_tables = {}
        for parent in parents:
            parent_tables.update(run_tables(client, [parent], tmp, PARENT_TABLES)[parent.info.run_id])
        title = ", ".join(r.info.run_name for r in runs[:3]) + (" ..." if len(runs) > 3 else "")
        return ReportInputs(
            runs=runs,
            header=header_table(runs, ui_url),
            comparison=comparison,
            tables=run_tables(client, evaluations, tmp),
            parent_tables=parent_tables,
            figures=figures_of(client, runs, out, tmp),
            page=for_runs(client, evaluations, tmp, title),
        )


def build_report(client, run_ids: list[str], out: Path, ui_url: str) -> tuple[Path, Path]:
    """Read the runs and write ``out/report.html`` and ``out/report.md`` (see :mod:`vqa_interp.report.build`)."""
    out.mkdir(parents=True, exist_ok=True)
    return write_report(read_inputs(client, run_ids, out, ui_url), run_ids, out)
