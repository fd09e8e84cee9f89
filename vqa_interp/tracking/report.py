"""``python -m vqa_interp.report RUN_ID [RUN_ID ...] --out DIR``: a report that cites its runs.

Writes ``DIR/report.html`` (self-contained: figures embedded as data URIs, opens offline),
``DIR/report.md`` (figures beside it in ``DIR/figures/``) and ``DIR/explorer.html`` (every question
of the reported runs, each run's map side by side; linked from the Findings). A sweep's parent run ID stands for
the whole sweep. Reads any tracking store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the first of
``sqlite:///mlruns/mlflow.db`` and the stores this project has written to that holds the run
(:mod:`vqa_interp.tracking.stores`); a read never creates a store.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from vqa_interp.errors import VqaInterpError
from vqa_interp.metrics.registry import family_metrics
from vqa_interp.tracking import explorer
from vqa_interp.tracking.report_findings import findings
from vqa_interp.tracking.report_page import link, render_html, render_markdown
from vqa_interp.tracking.store import (child_runs, download_artifact, download_table, find_run, list_artifacts,
                                       quiet_artifact_downloads, ui_base, UI_VIEW)
from vqa_interp.tracking.stores import default_home, locate_run, reading_client
from vqa_interp.tracking.sweep import comparison_table

KEY_METRICS = family_metrics()
ROBUSTNESS_TABLES = ("metric_agreement", "ranking_stability", "ranking_by_type")
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
        link = f"{ui_url.rstrip('/')}/#/experiments/{r.info.experiment_id}/runs/{r.info.run_id}{UI_VIEW}"
        rows.append({"name": r.info.run_name, "run_id": r.info.run_id, "kind": r.data.tags.get("run_kind", ""),
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


def run_tables(client, runs, tmp: str, names=("baselines", "normalised", "baseline_tests", "significance",
                                                  "confidence_correlations")) -> dict[str, dict[str, pd.DataFrame]]:
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for r in runs:
        folder = f"{tmp}/{r.info.run_id}"
        out[r.info.run_id] = {n: t for n in names if (t := download_table(client, r.info.run_id, n, folder)) is not None}
    return out


def ranking_sections(parent_tables: dict[str, pd.DataFrame]) -> list[dict]:
    """A sweep's ranking, its robustness in sentences and its robustness tables."""
    sections: list[dict] = []
    ranking = parent_tables.get("method_ranking")
    if ranking is not None and not ranking.empty:
        from vqa_interp.analysis.robustness import robustness_lines

        sections.append({"title": "Method ranking", "level": 2, "table": ranking, "text": (
            "One value per question; each metric's mean over the questions every method scored, 95% CI resampling "
            "images; coverage = the share of its questions a method scored (low below 90%).")})
        by_type = parent_tables.get("ranking_by_type")
        if "setting" in ranking:         # a sweep over models (or data): each setting's methods on their own
            lines = [f"{setting}: {line}" for setting, part in ranking.groupby(ranking["setting"].fillna(""), sort=False)
                     for line in robustness_lines(part, None if by_type is None or "setting" not in by_type else
                                                  by_type[by_type["setting"].fillna("") == setting])]
        else:
            lines = robustness_lines(ranking, by_type)
        sections.append({"title": "Robustness of the ranking", "level": 2, "lines": lines})
        for name, caption in (("metric_agreement", "Agreement between the metrics' rankings (Kendall's tau)"),
                              ("ranking_stability", "Stability over a bootstrap of images"),
                              ("ranking_by_type", "The ranking by question type")):
            frame = parent_tables.get(name)
            if frame is not None and not frame.empty:
                sections.append({"title": caption, "level": 3, "table": frame})
    return sections


SIGNIFICANCE_COLUMNS = ["comparison", "metric", "test", "role", "in_family", "testable", "reason", "n1", "n2",
                        "mean1", "mean2", "statistic", "p_value", "p_holm", "significant", "effect_size", "ci_low",
                        "ci_high"]


def significance_details(tables: dict, by_name: dict[str, str]) -> list[dict]:
    """Each run's primary tests, every test folded beneath them."""
    details = []
    for run_id, t in tables.items():
        frame = t.get("significance")
        if frame is None or frame.empty:
            continue
        frame = frame[[c for c in SIGNIFICANCE_COLUMNS if c in frame]]
        key = frame[frame["metric"].isin(KEY_METRICS) & (frame["role"] == "primary")]
        details.append({"summary": f"{by_name[run_id]}: the primary tests", "table": key,
                        "more_summary": "every metric and test", "more": frame})
    return details


def report_sections(runs, header, comparison, tables, parent_tables, figures) -> list[dict]:
    """The report's sections after its findings (see :mod:`vqa_interp.tracking.report_page`)."""
    sections = [{"title": "Runs", "level": 2, "table": header}]
    if not comparison.empty:
        sections.append({"title": "Method comparison", "level": 2, "table": comparison})
    sections += ranking_sections(parent_tables)
    by_name = {r.info.run_id: r.info.run_name for r in runs}
    sections.append({"title": "Floors and ceiling", "level": 2, "text": (
        "Each metric's means over the same questions (the method's), every map scored against the leave-one-out "
        "means of the annotators as the ceiling is (protocol loo); normalised = (method - random) / (ceiling - "
        "random).")})
    for run_id, t in tables.items():
        if "baselines" in t:
            wide = t["baselines"].pivot(index="metric", columns="reference", values="mean").reset_index()
            normalised_frame = t.get("normalised")
            if normalised_frame is not None and not normalised_frame.empty:
                wide = wide.merge(normalised_frame[["metric", "normalised", "ci_low", "ci_high", "n"]], on="metric",
                                  how="left")
            sections.append({"title": by_name[run_id], "level": 3, "table": wide})
    sections.append({"title": "Details", "level": 2})
    sections.append({"title": "Significance", "level": 3, "details": significance_details(tables, by_name)})
    means = parent_tables.get("fig2_method_means")
    if means is not None and not means.empty:
        sections.append({"title": "Each method's means by scenario (the paper's Figure 2)", "level": 3, "table": means})
    groups, pages = figure_groups(runs, figures, by_name)
    if groups:
        sections.append({"title": "Figures", "level": 3, "figures": groups})
    if pages is not None:
        sections.append({"title": "Figures of each run", "level": 3, "table": pages})
    sections.append({"title": "Provenance", "level": 2, "table": provenance(runs)})
    return sections


INLINE_ONLY = ("fig2_method_means",)    # a table drawn as a picture: the report shows the table itself


def figure_groups(runs, figures, by_name) -> tuple[list[dict], pd.DataFrame | None]:
    """The figures shown on the page (a sweep's own; a single run's own), each picture once, and
    when several runs are reported, a table linking each run's page of figures (``run_<id>.html``)."""
    import hashlib

    evaluations = [r.info.run_id for r in evaluations_of(runs)]
    on_page = [f for f in figures if f[1] not in INLINE_ONLY and (len(evaluations) <= 1 or f[0] not in evaluations)]
    seen, groups = set(), {}
    for run_id, name, path in on_page:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            groups.setdefault(run_id, []).append({"caption": f"{name} (run {run_id[:8]})", "path": path})
    groups = [{"title": by_name.get(run_id, run_id), "figures": shown} for run_id, shown in groups.items()]
    if len(evaluations) <= 1:
        return groups, None
    rows = [{"run": by_name.get(r, r), "figures": link(f"{sum(f[0] == r for f in figures)} figures", f"run_{r[:8]}.html")}
            for r in evaluations if any(f[0] == r for f in figures)]
    return groups, pd.DataFrame(rows) if rows else None


def evaluations_of(runs) -> list:
    """The reported runs that evaluated a method (a merged run stands for its shards), not sweep parents."""
    return [r for r in runs if r.data.tags.get("run_kind") in ("evaluation", "merged")]


def build_report(client, run_ids: list[str], out: Path, ui_url: str) -> tuple[Path, Path]:
    """Findings first (sentences generated from the tables), then the key tables, then the details."""
    runs = resolve_runs(client, run_ids)
    evaluations = evaluations_of(runs)
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        header = header_table(runs, ui_url)
        comparison = comparison_table(evaluations) if evaluations else pd.DataFrame()
        if not comparison.empty:
            keep = ["run_name", "status", "method.name", "k", "model/accuracy", "count/rows",
                    *(f"score/{m}" for m in family_metrics()), *(f"norm/{m}" for m in family_metrics()),
                    "faithfulness/deletion_auc", "faithfulness/random_deletion_auc", "faithfulness/insertion_auc",
                    "faithfulness/random_insertion_auc"]
            comparison = comparison[[c for c in keep if c in comparison]]
        tables = run_tables(client, evaluations, tmp)
        parent_tables = {}
        for parent in parents:
            parent_tables.update(run_tables(client, [parent], tmp, ("method_ranking", "method_pairs", "fig2_method_means",
                                                                *ROBUSTNESS_TABLES))
                                 [parent.info.run_id])
        figures = figures_of(client, runs, out, tmp)
        page = explorer.for_runs(client, evaluations, tmp, ", ".join(r.info.run_name for r in runs[:3])
                                 + (" ..." if len(runs) > 3 else ""))
    explorer_path = explorer.write(page, out / explorer.EXPLORER_HTML) if page else None
    sentences = findings(evaluations, tables, parent_tables)
    names = ", ".join(r.info.run_name for r in runs if r.info.run_id in run_ids or r.info.run_id[:8] in run_ids) \
        or ", ".join(run_ids)
    title = f"vqa-interp report: {names}"
    explorer_link = None
    if explorer_path is not None:
        explorer_link = {"href": explorer_path.name, "line": (
            f"every question ({len(page['questions'])}) with each run's map side by side ({len(page['columns'])} "
            "column(s)), filtered by correct/wrong, confidence, answer and question type, sorted by any metric")}
    sections = report_sections(runs, header.assign(mlflow_ui=[link("open", u) for u in header["mlflow_ui"]]),
                               comparison, tables, parent_tables, figures)
    from vqa_interp.tracking.report_figure import answer_figure

    answer = {"lines": answer_lines(runs), "figure": answer_figure(
        {r: t.get("baselines") for r, t in tables.items()}, explorer.column_labels(evaluations),
        out / "figures" / "answer.png") if evaluations else None}
    if len(evaluations) > 1:     # each run's figures on a page of its own, linked from the report
        for r in evaluations:
            group = [{"caption": name, "path": path} for rid, name, path in figures if rid == r.info.run_id]
            if group:
                (out / f"run_{r.info.run_id[:8]}.html").write_text(render_html(
                    f"{r.info.run_name}: figures", [], [{"title": "Figures", "level": 2, "figures": [
                        {"title": r.info.run_name, "figures": group}]}]))
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, sentences, sections, explorer_link, answer))
    md_path.write_text(render_markdown(title, sentences, sections, explorer_link, answer))
    return html_path, md_path


def answer_lines(runs) -> list[str]:
    """The two answers the runs' descriptions open with (a sweep parent's, else each run's)."""
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    lines = []
    for r in parents or runs:
        text = r.data.tags.get("mlflow.note.content", "")
        if text.startswith("**The answer**"):
            body = text[len("**The answer**"):].split("\n**", 1)[0]
            prefix = f"{r.info.run_name}: " if len(parents or runs) > 1 and not parents else ""
            lines += [prefix + line.strip() for line in body.split("\n\n") if line.strip()]
    return lines


def main(argv: list[str] | None = None) -> int:
    quiet_artifact_downloads()
    parser = argparse.ArgumentParser(prog="python -m vqa_interp.report", description=__doc__.split("\n")[0])
    parser.add_argument("run_ids", nargs="+", metavar="RUN",
                        help="MLflow run IDs, 8-character short IDs or run names (a sweep parent = its sweep)")
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<first run's name>)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="the store the runs were logged in (default: the first of sqlite:///mlruns/mlflow.db "
                             "and the stores this project has written to that holds the first run)")
    parser.add_argument("--ui-url", help="base URL of the MLflow UI for run links (default: the tracking server, "
                                         "or http://127.0.0.1:5000 where `mlflow ui` serves a local store)")
    args = parser.parse_args(argv)
    try:
        uri = locate_run(args.run_ids[0], args.tracking_uri, default_home())
        client = reading_client(uri)
        out = args.out
        if out is None:
            import re

            first = find_run(client, args.run_ids[0])
            out = Path("reports") / (re.sub(r"[^A-Za-z0-9._=-]+", "_", first.info.run_name).strip("_") or first.info.run_id)
        html_path, md_path = build_report(client, args.run_ids, out, args.ui_url or ui_base(uri))
    except VqaInterpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    explorer_path = html_path.parent / "explorer.html"
    print(f"wrote {html_path} and {md_path}" + (f" (explorer: {explorer_path})" if explorer_path.exists() else ""))
    return 0
