"""What a finished run records in MLflow: its tables, analysis, metrics, maps and panels, and the
figures it hands to a drawing process (:mod:`vqa_interp.report.drawing`)."""
from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from vqa_interp.report import explorer
from vqa_interp.tracking import explorer_runs

HEADLINE_TIMINGS = ("time/total_s", "time/attribution_s", "time/scoring_s", "time/explain_s", "time/sanity_s",
                    "time/logging_s")


def write_maps_archive(path: Path, cache, keys) -> None:
    """The run's maps as one compressed ``.npz`` (key ``{question_id}_{answer_index}``), written
    entry by entry so that the maps are never all in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in dict.fromkeys(keys):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, cache.load(key))


def record_outputs(tracker, settings, outputs, timings: dict, draw_workers: int = 1):
    """Log a finished run's tables, analysis and maps, and start drawing its figures (in
    ``draw_workers`` processes): returns the :class:`~vqa_interp.report.drawing.FigureJob`
    whose figures the run logs before it ends."""
    from vqa_interp.analysis import figures, statistics
    from vqa_interp.report.drawing import draw_figures_split
    from vqa_interp.tracking.figure_runs import finish_deferred
    from vqa_interp.report.figure_cache import FigureCache

    a = settings.analysis
    start = time.perf_counter()
    tracker.set_tags(outputs.tags)
    tracker.log_table(outputs.table, "per_example")
    results = statistics.analyse(outputs.table, low=a.low, high=a.high, map_for_example=a.map_for_example,
                                 alpha=a.alpha, n_bootstrap=a.bootstrap, seed=a.seed,
                                 min_group=a.min_group, metrics=outputs.metrics, test=a.test, min_images=a.min_images)
    if outputs.references is not None and results.examples is not None:
        reference_results(results, outputs.references, n_bootstrap=a.bootstrap, seed=a.seed,
                          min_questions=a.min_group, min_images=a.min_images)
    adjusted_results(results, outputs.references, n_bootstrap=a.bootstrap, seed=a.seed, min_group=a.min_group,
                     min_images=a.min_images, alpha=a.alpha)
    for name, frame in results.tables.items():
        tracker.log_table(frame, name)
    tracker.log_metrics({**outputs.counts, **results.metrics})
    timings["time/analysis_s"] = time.perf_counter() - start
    cases = figures.panel_cases(outputs, results, settings)
    rendered = FigureCache(settings, outputs)
    # an earlier job of this sweep still drawing the figures this one would reuse: wait for it;
    # and keep no more drawing processes than the machine has cores
    finish_deferred(wait=False, keeps=rendered.root, at_most=max(0, (os.cpu_count() or 1) - 1))
    skip = rendered.available()
    makers = figures.figure_makers(outputs, results, settings, cases, skip=skip)
    if outputs.sanity is not None and not outputs.sanity.empty:
        from vqa_interp.analysis.figures import sanity_figure
        from vqa_interp.attribution.sanity import verdict

        passed, final = verdict(outputs.sanity)
        tracker.log_table(outputs.sanity, "sanity_randomisation")
        tracker.log_metrics({"sanity/final_spearman_abs": final, "sanity/passed": float(passed)})
        tracker.set_tags({"sanity_check": "pass" if passed else "fail"})
        makers["sanity_randomisation"] = lambda: sanity_figure(outputs.sanity)
        outputs.summary_lines.append(
            f"Sanity check ({settings.attribution.method}, model randomisation): "
            f"{'passes' if passed else 'FAILS'}: mean Spearman of |maps| after full randomisation {final:.2f} "
            f"(fails above 0.5).")
    explain_lines: list[str] = []
    if outputs.explain is not None:
        makers.update(record_explain(tracker, settings, outputs, results, explain_lines, skip=skip))
    if "baselines" in results.tables:
        from vqa_interp.analysis.baselines import floor_ceiling_figure

        makers["floor_ceiling"] = lambda: floor_ceiling_figure(results.tables["baselines"],
                                                               settings.attribution.method)
    # drawn in another process (vqa_interp.report.drawing); the cached kind first, so that a
    # k sweep's next job can reuse them while this job's other figures are still being drawn
    makers = dict(sorted(makers.items(), key=lambda item: rendered.folder(item[0]) is None))
    job = draw_figures_split(makers, keep_in=rendered.folder, cached=[rendered.png(name) for name in sorted(skip)],
                             keeps=rendered.root if set(rendered.K_INDEPENDENT) - skip else None, workers=draw_workers)
    with job.cancelled_on_error():
        from vqa_interp.analysis.summary import run_summary

        method, k = settings.attribution.method, settings.scoring.k
        sanity = " ".join(outputs.summary_lines)
        outputs.summary = run_summary(results, method, k, sanity_line=sanity, n_bootstrap=min(1000, a.bootstrap),
                                      seed=a.seed, explain_lines=explain_lines)
        outputs.summary_markdown = run_summary(results, method, k, markdown=True, sanity_line=sanity,
                                               n_bootstrap=min(1000, a.bootstrap), seed=a.seed,
                                               explain_lines=explain_lines)
        if cases:
            log_panel(tracker, cases)
        if settings.tracking.log_maps:
            explorer_runs.log(tracker, explorer.run_data(outputs, results.examples, settings, tracker.run_id,
                                                    f"{method} on {settings.model.name}"))
        if settings.tracking.log_maps and len(outputs.table):
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "maps.npz"
                write_maps_archive(archive, outputs.cache, outputs.table["map_key"])
                tracker.log_file(archive, "maps")
        timings["time/logging_s"] = time.perf_counter() - start - timings["time/analysis_s"]
    return job


def record_explain(tracker, settings, outputs, results, lines: list[str], skip=()) -> dict:
    """Log the explain stage's tables and metrics, add its summary lines to ``lines``; returns its
    figures (but those named in ``skip``), by name, as functions that draw them."""
    from vqa_interp.explain.analysis import explain_results
    from vqa_interp.explain.figures import curves_figure, share_figure, token_cases, token_figure

    explain, a = outputs.explain, settings.analysis
    examples = results.examples          # drawn from the run's table, which holds the explain columns
    if examples is None or examples.empty:
        return {}
    tables, metrics, found = explain_results(examples, explain.per_target, alpha=a.alpha, n_bootstrap=a.bootstrap,
                                             seed=a.seed, min_group=a.min_group, test=a.test, min_images=a.min_images)
    if len(explain.tokens):
        tracker.log_table(explain.tokens, "token_attributions")
    if len(explain.curves):
        tracker.log_table(explain.curves, "faithfulness_curves")
    for name, frame in tables.items():
        tracker.log_table(frame, name)
    tracker.log_metrics(metrics)
    lines.extend(found)
    figures = {}
    cases = token_cases(outputs, examples, settings.explain.n_token_panels) if "token_attributions" not in skip else []
    if cases:
        figures["token_attributions"] = lambda: token_figure(cases)
    if len(explain.curves) and "faithfulness_curves" not in skip:
        figures["faithfulness_curves"] = lambda: curves_figure(explain.curves, settings.attribution.method)
    if "image_share" in examples and examples["image_share"].notna().any() and "image_share_by_split" not in skip:
        figures["image_share_by_split"] = lambda: share_figure(examples, settings.attribution.method)
    return figures


def adjusted_results(results, references, **options) -> None:
    """Add the correct/wrong comparisons read per question and within answer types to ``results``
    (:mod:`vqa_interp.analysis.adjusted`)."""
    from vqa_interp.analysis.adjusted import adjusted_comparisons

    if results.examples is not None and not results.examples.empty and "correct" in results.examples:
        results.tables["adjusted_comparisons"] = adjusted_comparisons(results.examples, references, **options)


def reference_results(results, references, *, n_bootstrap: int, seed: int, min_questions: int = 10,
                      min_images: int = 5) -> None:
    """Add the floors/ceiling tables and metrics to ``results`` (see :mod:`vqa_interp.analysis.baselines`:
    paired on the method's questions, scored leave-one-out like the ceiling)."""
    from vqa_interp.analysis.baselines import baselines_table, normalised_table, paired_baseline_tests, protocol_of
    from vqa_interp.attribution.baselines import REFERENCES
    from vqa_interp.metrics.registry import family_metrics, headline_metrics

    # logged as metrics: the headline metrics of the floors and the ceiling (the oracle, which only
    # the embedded data has, stays in the table)
    logged = {r for r in REFERENCES if r != "oracle"}
    protocol = protocol_of(references)
    options = {"n_bootstrap": n_bootstrap, "seed": seed, "protocol": protocol}
    table = baselines_table(results.examples, references, **options)
    normalised = normalised_table(results.examples, references, **options)
    tests = paired_baseline_tests(results.examples, references, **options, min_questions=min_questions,
                                  min_images=min_images)
    results.tables.update({"baselines": table, "normalised": normalised, "baseline_tests": tests,
                           "references_per_question": references})
    family = set(family_metrics())
    for row in table.itertuples():
        if row.metric in headline_metrics() and row.reference in logged and np.isfinite(row.mean):
            results.metrics[f"baseline/{row.reference}/{row.metric}"] = row.mean
    for row in normalised.itertuples():
        if row.metric in family and np.isfinite(row.normalised):
            results.metrics[f"norm/{row.metric}"] = row.normalised


def log_panel(tracker, cases: list[dict]) -> None:
    """The qualitative panel's arrays (``panels/panel.npz``: ``{qid}_image``, ``{qid}_human``,
    ``{qid}_map``) and captions (``tables/panel_cases.csv``), so a sweep parent can put every method's
    map of the same questions side by side without reading the data again."""
    arrays = {}
    for case in cases:
        q = case["question_id"]
        arrays.update({f"{q}_image": case["image"], f"{q}_human": case["human"].astype(np.float32),
                       f"{q}_map": case["attribution"].astype(np.float32)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panel.npz"
        np.savez_compressed(path, **arrays)
        tracker.log_file(path, "panels")
    tracker.log_table(pd.DataFrame([{"question_id": c["question_id"], "title": c["title"]} for c in cases]),
                      "panel_cases")
