"""What a finished run records in MLflow: its tables, the analysis the analyse stage returned
(:mod:`vqa_interp.pipeline.analyse`), metrics, maps and panels, and the figures it hands to a drawing
process (:mod:`vqa_interp.report.drawing`). It computes nothing it logs."""

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

HEADLINE_TIMINGS = (
    "time/total_s",
    "time/attribution_s",
    "time/scoring_s",
    "time/explain_s",
    "time/sanity_s",
    "time/logging_s",
)


def write_maps_archive(path: Path, cache, keys) -> None:
    """The run's maps as one compressed ``.npz`` (key ``{question_id}_{answer_index}``), written
    entry by entry so that the maps are never all in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in dict.fromkeys(keys):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, cache.load(key))


def record_outputs(tracker, settings, outputs, analysis, timings: dict, draw_workers: int = 1):
    """Log a finished run's tables, its analysis (:class:`~vqa_interp.pipeline.analyse.Analysis`) and
    maps, and start drawing its figures (in ``draw_workers`` processes): returns the
    :class:`~vqa_interp.report.drawing.FigureJob` whose figures the run logs before it ends."""
    from vqa_interp.analysis import figures
    from vqa_interp.report.drawing import draw_figures_split
    from vqa_interp.report.figure_cache import FigureCache
    from vqa_interp.tracking.figure_runs import finish_deferred

    start = time.perf_counter()
    results = analysis.results
    tracker.set_tags(outputs.tags)
    tracker.log_table(outputs.table, "per_example")
    for name, frame in results.tables.items():
        tracker.log_table(frame, name)
    tracker.log_metrics({**outputs.counts, **results.metrics})
    cases = figures.panel_cases(outputs, results, settings)
    rendered = FigureCache(settings, outputs)
    # an earlier job of this sweep still drawing the figures this one would reuse: wait for it;
    # and keep no more drawing processes than the machine has cores
    finish_deferred(wait=False, keeps=rendered.root, at_most=max(0, (os.cpu_count() or 1) - 1))
    skip = rendered.available()
    makers = figures.figure_makers(outputs, results, settings, cases, skip=skip)
    if analysis.sanity is not None:
        makers.update(record_sanity(tracker, analysis.sanity))
    if outputs.explain is not None:
        makers.update(record_explain(tracker, settings, outputs, analysis, skip=skip))
    if "baselines" in results.tables:
        from vqa_interp.analysis.baselines import floor_ceiling_figure

        makers["floor_ceiling"] = lambda: floor_ceiling_figure(results.tables["baselines"], settings.attribution.method)
    # drawn in another process (vqa_interp.report.drawing); the cached kind first, so that a
    # k sweep's next job can reuse them while this job's other figures are still being drawn
    makers = dict(sorted(makers.items(), key=lambda item: rendered.folder(item[0]) is None))
    job = draw_figures_split(
        makers,
        keep_in=rendered.folder,
        cached=[rendered.png(name) for name in sorted(skip)],
        keeps=rendered.root if set(rendered.K_INDEPENDENT) - skip else None,
        workers=draw_workers,
    )
    with job.cancelled_on_error():
        if cases:
            log_panel(tracker, cases)
        if settings.tracking.log_maps:
            log_maps(tracker, settings, outputs, results.examples)
        timings["time/logging_s"] = time.perf_counter() - start
    return job


def log_maps(tracker, settings, outputs, examples) -> None:
    """The question explorer's entry and page, and every map of the run (``maps/maps.npz``)."""
    title = f"{settings.attribution.method} on {settings.model.name}"
    explorer_runs.log(tracker, explorer.run_data(outputs, examples, settings, tracker.run_id, title))
    if len(outputs.table):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "maps.npz"
            write_maps_archive(archive, outputs.cache, outputs.table["map_key"])
            tracker.log_file(archive, "maps")


def record_sanity(tracker, sanity) -> dict:
    """Log the sanity check's curves, verdict and tag; returns its figure's drawing function."""
    from vqa_interp.analysis.figures import sanity_figure

    tracker.log_table(sanity.table, "sanity_randomisation")
    tracker.log_metrics({"sanity/final_spearman_abs": sanity.final, "sanity/passed": float(sanity.passed)})
    tracker.set_tags({"sanity_check": "pass" if sanity.passed else "fail"})
    return {"sanity_randomisation": lambda: sanity_figure(sanity.table)}


def record_explain(tracker, settings, outputs, analysis, skip=()) -> dict:
    """Log the explain stage's tables and metrics; returns its figures (but those named in
    ``skip``), by name, as functions that draw them."""
    from vqa_interp.explain.figures import curves_figure, share_figure, token_cases, token_figure

    explain = outputs.explain
    examples = analysis.results.examples
    if examples is None or examples.empty:
        return {}
    if len(explain.tokens):
        tracker.log_table(explain.tokens, "token_attributions")
    if len(explain.curves):
        tracker.log_table(explain.curves, "faithfulness_curves")
    for name, frame in analysis.explain_tables.items():
        tracker.log_table(frame, name)
    tracker.log_metrics(analysis.explain_metrics)
    figures = {}
    cases = token_cases(outputs, examples, settings.explain.n_token_panels) if "token_attributions" not in skip else []
    if cases:
        figures["token_attributions"] = lambda: token_figure(cases)
    if len(explain.curves) and "faithfulness_curves" not in skip:
        figures["faithfulness_curves"] = lambda: curves_figure(explain.curves, settings.attribution.method)
    if "image_share" in examples and examples["image_share"].notna().any() and "image_share_by_split" not in skip:
        figures["image_share_by_split"] = lambda: share_figure(examples, settings.attribution.method)
    return figures


def log_panel(tracker, cases: list[dict]) -> None:
    """The qualitative panel's arrays (``panels/panel.npz``: ``{qid}_image``, ``{qid}_human``,
    ``{qid}_map``) and captions (``tables/panel_cases.csv``), so a sweep parent can put every method's
    map of the same questions side by side without reading the data again."""
    arrays = {}
    for case in cases:
        q = case["question_id"]
        arrays.update(
            {
                f"{q}_image": case["image"],
                f"{q}_human": case["human"].astype(np.float32),
                f"{q}_map": case["attribution"].astype(np.float32),
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panel.npz"
        np.savez_compressed(path, **arrays)
        tracker.log_file(path, "panels")
    tracker.log_table(
        pd.DataFrame([{"question_id": c["question_id"], "title": c["title"]} for c in cases]), "panel_cases"
    )
