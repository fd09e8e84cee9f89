"""The report people read (``python -m vqa_interp.report``): findings first, then the key tables,
then the details, rendered from the runs' tables and figures (read from the store by
:mod:`vqa_interp.tracking.report_source`).

Writes ``DIR/report.html`` (self-contained: figures embedded as data URIs, opens offline),
``DIR/report.md`` (figures beside it in ``DIR/figures/``), ``DIR/explorer.html`` (every question
of the reported runs, each run's map side by side; linked from the Findings) and, when several runs
are reported, ``DIR/run_<id>.html`` with each run's figures. A run here is anything with MLflow's
``info`` (``run_id``, ``run_name``, ``status``) and ``data`` (``tags``, ``params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vqa_interp.analysis.statistics import SIGNIFICANCE_COLUMNS as STATISTICS_COLUMNS
from vqa_interp.metrics.registry import family_metrics
from vqa_interp.report import explorer
from vqa_interp.report.findings import findings
from vqa_interp.report.page import link, render_html, render_markdown

KEY_METRICS = family_metrics()
ROBUSTNESS_TABLES = ("metric_agreement", "ranking_stability", "ranking_by_type")
PROVENANCE_TAGS = (
    "git_commit",
    "data_digest",
    "checkpoint_digest",
    "backbone",
    "backbone_variant",
    "hydra_output_dir",
    "mlflow.parentRunId",
)


def provenance(runs) -> pd.DataFrame:
    return pd.DataFrame(
        [{"run_id": r.info.run_id, **{t: r.data.tags.get(t, "") for t in PROVENANCE_TAGS}} for r in runs]
    )


def ranking_sections(parent_tables: dict[str, pd.DataFrame]) -> list[dict]:
    """A sweep's ranking, its robustness in sentences and its robustness tables."""
    sections: list[dict] = []
    ranking = parent_tables.get("method_ranking")
    if ranking is not None and not ranking.empty:
        from vqa_interp.analysis.robustness import robustness_lines

        sections.append(
            {
                "title": "Method ranking",
                "level": 2,
                "table": ranking,
                "text": (
                    "One value per question; each metric's mean over the questions every method scored, 95% CI resampling "
                    "images; coverage = the share of its questions a method scored (low below 90%)."
                ),
            }
        )
        by_type = parent_tables.get("ranking_by_type")
        if "setting" in ranking:  # a sweep over models (or data): each setting's methods on their own
            lines = [
                f"{setting}: {line}"
                for setting, part in ranking.groupby(ranking["setting"].fillna(""), sort=False)
                for line in robustness_lines(
                    part,
                    None
                    if by_type is None or "setting" not in by_type
                    else by_type[by_type["setting"].fillna("") == setting],
                )
            ]
        else:
            lines = robustness_lines(ranking, by_type)
        sections.append({"title": "Robustness of the ranking", "level": 2, "lines": lines})
        for name, caption in (
            ("metric_agreement", "Agreement between the metrics' rankings (Kendall's tau)"),
            ("ranking_stability", "Stability over a bootstrap of images"),
            ("ranking_by_type", "The ranking by question type"),
        ):
            frame = parent_tables.get(name)
            if frame is not None and not frame.empty:
                sections.append({"title": caption, "level": 3, "table": frame})
    return sections


# the significance table as the report shows it: its columns but those the comparison's name says
SIGNIFICANCE_COLUMNS = [
    c for c in STATISTICS_COLUMNS if c not in ("group1", "group2", "mean_diff", "p_bh", "effect_name")
]


def significance_details(tables: dict, by_name: dict[str, str]) -> list[dict]:
    """Each run's primary tests, every test folded beneath them."""
    details = []
    for run_id, t in tables.items():
        frame = t.get("significance")
        if frame is None or frame.empty:
            continue
        frame = frame[[c for c in SIGNIFICANCE_COLUMNS if c in frame]]
        key = frame[frame["metric"].isin(KEY_METRICS) & (frame["role"] == "primary")]
        details.append(
            {
                "summary": f"{by_name[run_id]}: the primary tests",
                "table": key,
                "more_summary": "every metric and test",
                "more": frame,
            }
        )
    return details


def report_sections(runs, header, comparison, tables, parent_tables, figures) -> list[dict]:
    """The report's sections after its findings (see :mod:`vqa_interp.report.page`)."""
    sections = [{"title": "Runs", "level": 2, "table": header}]
    if not comparison.empty:
        sections.append({"title": "Method comparison", "level": 2, "table": comparison})
    sections += ranking_sections(parent_tables)
    by_name = {r.info.run_id: r.info.run_name for r in runs}
    sections.append(
        {
            "title": "Floors and ceiling",
            "level": 2,
            "text": (
                "Each metric's means over the same questions (the method's), every map scored against the leave-one-out "
                "means of the annotators as the ceiling is (protocol loo); normalised = (method - random) / (ceiling - "
                "random)."
            ),
        }
    )
    for run_id, t in tables.items():
        if "baselines" in t:
            wide = t["baselines"].pivot(index="metric", columns="reference", values="mean").reset_index()
            normalised_frame = t.get("normalised")
            if normalised_frame is not None and not normalised_frame.empty:
                wide = wide.merge(
                    normalised_frame[["metric", "normalised", "ci_low", "ci_high", "n"]], on="metric", how="left"
                )
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


INLINE_ONLY = ("fig2_method_means",)  # a table drawn as a picture: the report shows the table itself


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
    rows = [
        {"run": by_name.get(r, r), "figures": link(f"{sum(f[0] == r for f in figures)} figures", f"run_{r[:8]}.html")}
        for r in evaluations
        if any(f[0] == r for f in figures)
    ]
    return groups, pd.DataFrame(rows) if rows else None


def evaluations_of(runs) -> list:
    """The reported runs that evaluated a method (a merged run stands for its shards), not sweep parents."""
    return [r for r in runs if r.data.tags.get("run_kind") in ("evaluation", "merged")]


def answer_lines(runs) -> list[str]:
    """The two answers the runs' descriptions open with (a sweep parent's, else each run's)."""
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    lines = []
    for r in parents or runs:
        text = r.data.tags.get("mlflow.note.content", "")
        if text.startswith("**The answer**"):
            body = text[len("**The answer**") :].split("\n**", 1)[0]
            prefix = f"{r.info.run_name}: " if len(parents or runs) > 1 and not parents else ""
            lines += [prefix + line.strip() for line in body.split("\n\n") if line.strip()]
    return lines


@dataclass
class ReportInputs:
    """What a report shows, read from the store: the runs (a sweep parent followed by its children),
    the runs' header table (one row a run, ``mlflow_ui`` its link), the comparison of the evaluation
    runs (one row a run), each evaluation run's tables and the sweep parents' tables by name, the
    figures ``(run_id, name, path)`` and the explorer page's data (None without one)."""

    runs: list
    header: pd.DataFrame
    comparison: pd.DataFrame
    tables: dict[str, dict[str, pd.DataFrame]]
    parent_tables: dict[str, pd.DataFrame]
    figures: list[tuple[str, str, Path]]
    page: dict | None


def write_report(inputs: ReportInputs, run_ids: list[str], out: Path) -> tuple[Path, Path]:
    """``out/report.html`` and ``out/report.md`` (and the explorer and the runs' figure pages)."""
    runs, tables, figures, page = inputs.runs, inputs.tables, inputs.figures, inputs.page
    evaluations = evaluations_of(runs)
    explorer_path = explorer.write(page, out / explorer.EXPLORER_HTML) if page else None
    sentences = findings(evaluations, tables, inputs.parent_tables)
    names = ", ".join(
        r.info.run_name for r in runs if r.info.run_id in run_ids or r.info.run_id[:8] in run_ids
    ) or ", ".join(run_ids)
    explorer_link = None
    if explorer_path is not None:
        explorer_link = {
            "href": explorer_path.name,
            "line": (
                f"every question ({len(page['questions'])}) with each run's map side by side ({len(page['columns'])} "
                "column(s)), filtered by correct/wrong, confidence, answer and question type, sorted by any metric"
            ),
        }
    header = inputs.header.assign(mlflow_ui=[link("open", u) for u in inputs.header["mlflow_ui"]])
    sections = report_sections(runs, header, inputs.comparison, tables, inputs.parent_tables, figures)
    from vqa_interp.report.answer_figure import answer_figure

    answer = {
        "lines": answer_lines(runs),
        "figure": answer_figure(
            {r: t.get("baselines") for r, t in tables.items()},
            explorer.column_labels(evaluations),
            out / "figures" / "answer.png",
        )
        if evaluations
        else None,
    }
    if len(evaluations) > 1:  # each run's figures on a page of its own, linked from the report
        for r in evaluations:
            group = [{"caption": name, "path": path} for rid, name, path in figures if rid == r.info.run_id]
            if group:
                (out / f"run_{r.info.run_id[:8]}.html").write_text(
                    render_html(
                        f"{r.info.run_name}: figures",
                        [],
                        [{"title": "Figures", "level": 2, "figures": [{"title": r.info.run_name, "figures": group}]}],
                    )
                )
    title = f"vqa-interp report: {names}"
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, sentences, sections, explorer_link, answer))
    md_path.write_text(render_markdown(title, sentences, sections, explorer_link, answer))
    return html_path, md_path
