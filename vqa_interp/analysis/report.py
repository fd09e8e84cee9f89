"""``python -m vqa_interp.report RUN_ID [RUN_ID ...] --out DIR``: a report that cites its runs.

Writes ``DIR/report.html`` (self-contained: figures embedded as data URIs, opens offline) and
``DIR/report.md`` (figures beside it in ``DIR/figures/``). A sweep's parent run ID stands for
the whole sweep. Reads any tracking store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else
the local ``sqlite:///mlruns/mlflow.db``.
"""
from __future__ import annotations

import argparse
import base64
import html
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from vqa_interp.errors import VqaInterpError
from vqa_interp.metrics.registry import family_metrics, metric_names
from vqa_interp.tracking.store import child_runs, client_for, download_artifact, find_run, list_artifacts
from vqa_interp.tracking.sweep import comparison_table

KEY_METRICS = family_metrics()
PROVENANCE_TAGS = ("git_commit", "data_digest", "checkpoint_digest", "backbone", "backbone_variant",
                   "hydra_output_dir", "mlflow.parentRunId")


def resolve_runs(client, run_ids: list[str]) -> list:
    """The runs to report: each ID, and for a sweep parent its children too (order kept, no repeats)."""
    runs, seen = [], set()
    for run_id in run_ids:
        run = find_run(client, run_id)
        family = [run] + (sorted(child_runs(client, run.info.run_id), key=lambda r: r.info.start_time)
                          if run.data.tags.get("run_kind") == "sweep" else [])
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
        link = f"{ui_url.rstrip('/')}/#/experiments/{r.info.experiment_id}/runs/{r.info.run_id}"
        rows.append({"run_id": r.info.run_id, "name": r.info.run_name, "kind": r.data.tags.get("run_kind", ""),
                     "status": r.info.status, **{a: r.data.params.get(a, "") for a in axes}, "mlflow_ui": link})
    return pd.DataFrame(rows)


def _download_text(client, run_id: str, path: str, tmp: str) -> str | None:
    local = download_artifact(client, run_id, path, tmp)
    return local.read_text() if local else None


def significance_tables(client, runs, tmp: str) -> dict[str, pd.DataFrame]:
    """Per evaluation run: its significance table, key metrics first."""
    import io

    tables = {}
    for r in runs:
        text = _download_text(client, r.info.run_id, "tables/significance.csv", tmp)
        if text:
            frame = pd.read_csv(io.StringIO(text))
            frame = frame.sort_values(["metric", "comparison", "test"],
                                      key=lambda s: s.map(lambda v: (v not in KEY_METRICS, v)) if s.name == "metric" else s)
            tables[r.info.run_id] = frame
    return tables


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


def provenance(runs) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": r.info.run_id, **{t: r.data.tags.get(t, "") for t in PROVENANCE_TAGS}}
                         for r in runs])


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)


def _html_table(frame: pd.DataFrame) -> str:
    return _fmt(frame).to_html(index=False, escape=True, border=0, classes="t")


def build_report(client, run_ids: list[str], out: Path, ui_url: str) -> tuple[Path, Path]:
    runs = resolve_runs(client, run_ids)
    evaluations = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        header = header_table(runs, ui_url)
        comparison = comparison_table(evaluations) if evaluations else pd.DataFrame()
        if not comparison.empty:
            keep = ["run_id", "status", "method.name", "k", "confidence.low", "confidence.high", "model_accuracy",
                    "n_rows", *(f"mean_{m}" for m in metric_names() if m != "disc_intersect")]
            comparison = comparison[[c for c in keep if c in comparison]]
        significance = significance_tables(client, evaluations, tmp)
        figures = figures_of(client, runs, out, tmp)
    prov = provenance(runs)
    title = "vqa-interp report: " + ", ".join(run_ids)

    md = [f"# {title}", "", "## Runs", "", _fmt(header).to_markdown(index=False), ""]
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Runs</h2>", _html_table(header)]
    if not comparison.empty:
        md += ["## Method comparison", "", _fmt(comparison).to_markdown(index=False), ""]
        parts += ["<h2>Method comparison</h2>", _html_table(comparison)]
    md += ["## Significance", ""]
    parts.append("<h2>Significance</h2>")
    for run_id, frame in significance.items():
        key = frame[frame["metric"].isin(KEY_METRICS)]
        cols = ["comparison", "metric", "test", "testable", "n1", "n2", "mean1", "mean2", "statistic", "p_value",
                "p_holm", "p_bh", "significant", "effect_size", "ci_low", "ci_high"]
        md += [f"### Run {run_id}", "", _fmt(key[cols]).to_markdown(index=False), ""]
        parts += [f"<h3>Run {html.escape(run_id)}</h3>", _html_table(key[cols]),
                  "<details><summary>all metrics</summary>", _html_table(frame[cols]), "</details>"]
    md += ["## Figures", ""]
    parts.append("<h2>Figures</h2>")
    for run_id, name, path in figures:
        encoded = base64.b64encode(path.read_bytes()).decode()
        md += [f"**{name}** (run {run_id})", "", f"![{name}](figures/{path.name})", ""]
        parts += [f"<figure><figcaption>{html.escape(name)} (run {html.escape(run_id)})</figcaption>"
                  f"<img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'></figure>"]
    md += ["## Provenance", "", _fmt(prov).to_markdown(index=False), ""]
    parts += ["<h2>Provenance</h2>", _html_table(prov)]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px} table.t{border-collapse:collapse;font-size:12px}"
             ".t td,.t th{border:1px solid #ccc;padding:2px 6px} img{max-width:100%} figure{margin:1em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(page)
    md_path.write_text("\n".join(md))
    return html_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqa_interp.report", description=__doc__.split("\n")[0])
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run IDs (a sweep parent = its sweep)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db"))
    parser.add_argument("--ui-url", default="http://127.0.0.1:5000", help="base URL of the MLflow UI for run links")
    args = parser.parse_args(argv)
    try:
        html_path, md_path = build_report(client_for(args.tracking_uri), args.run_ids, args.out, args.ui_url)
    except VqaInterpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {html_path} and {md_path}")
    return 0
