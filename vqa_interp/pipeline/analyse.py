"""The analyse stage: a finished run's per-example table, floors and ceiling, sanity curves and
explain tables in; every test, reference table, the sanity verdict and the two answers as text out
(:class:`Analysis`). It logs nothing: :mod:`vqa_interp.tracking.record` logs what it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from vqa_interp.analysis.run_tables import analyse_tables
from vqa_interp.analysis.statistics import AnalysisResults


@dataclass
class SanityVerdict:
    """The model-randomisation check: ``table`` one row per (randomised block, question), ``final``
    the mean Spearman of |maps| after full randomisation, ``passed`` when it falls to 0.5 or below."""

    table: pd.DataFrame
    passed: bool
    final: float
    line: str


@dataclass
class Analysis:
    """What a run found: ``results`` (tables by name, metrics by name, one row per question in
    ``results.examples``), the sanity verdict, the explain stage's tables and metrics, and the
    summary (with the two answers) for the terminal and as markdown for MLflow's description."""

    results: AnalysisResults
    sanity: SanityVerdict | None = None
    explain_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    explain_metrics: dict[str, float] = field(default_factory=dict)
    explain_lines: list[str] = field(default_factory=list)
    summary: str = ""
    summary_markdown: str = ""
    seconds: float = 0.0


def analyse_run(outputs, settings) -> Analysis:
    """The analyse stage of one run (``outputs``: :class:`~vqa_interp.pipeline.RunOutputs`)."""
    from vqa_interp.analysis.summary import run_summary

    a = settings.analysis
    start = time.perf_counter()
    analysis = Analysis(analyse_tables(outputs.table, outputs.references, a, outputs.metrics))
    if outputs.sanity is not None and not outputs.sanity.empty:
        analysis.sanity = sanity_verdict(outputs.sanity, settings.attribution.method)
    examples = analysis.results.examples  # drawn from the run's table, which holds the explain columns
    if outputs.explain is not None and examples is not None and not examples.empty:
        from vqa_interp.explain.analysis import explain_results

        analysis.explain_tables, analysis.explain_metrics, analysis.explain_lines = explain_results(
            examples,
            outputs.explain.per_target,
            alpha=a.alpha,
            n_bootstrap=a.bootstrap,
            seed=a.seed,
            min_group=a.min_group,
            test=a.test,
            min_images=a.min_images,
        )
    method, k = settings.attribution.method, settings.scoring.k
    sanity = analysis.sanity.line if analysis.sanity else ""
    for markdown in (False, True):
        text = run_summary(
            analysis.results,
            method,
            k,
            markdown=markdown,
            sanity_line=sanity,
            n_bootstrap=min(1000, a.bootstrap),
            seed=a.seed,
            explain_lines=analysis.explain_lines,
        )
        setattr(analysis, "summary_markdown" if markdown else "summary", text)
    analysis.seconds = time.perf_counter() - start
    return analysis


def sanity_verdict(curves: pd.DataFrame, method: str) -> SanityVerdict:
    """The verdict of the randomisation curves (:func:`vqa_interp.attribution.sanity.verdict`) and its line."""
    from vqa_interp.attribution.sanity import verdict

    passed, final = verdict(curves)
    line = (
        f"Sanity check ({method}, model randomisation): {'passes' if passed else 'FAILS'}: mean Spearman of "
        f"|maps| after full randomisation {final:.2f} (fails above 0.5)."
    )
    return SanityVerdict(curves, passed, final, line)
