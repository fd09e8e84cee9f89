"""``python -m vqa_interp.run``: one run (or, with ``-m``, a sweep) of attribution vs human attention.

Config errors and missing inputs are reported before any model work and before any MLflow run
is opened; the embedded model is trained (in a training run of its own) before the evaluation run
opens; once the run is open, a failure marks it FAILED (the map cache keeps what was made).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from vqa_interp.errors import VqaInterpError
from vqa_interp.tracking.store import PARENT_ID_FILE

log = logging.getLogger("vqa_interp")



HEADLINE_TIMINGS = ("time/total_s", "time/attribution_s", "time/scoring_s", "time/explain_s", "time/sanity_s",
                    "time/logging_s")
BASELINE_METRICS = ("rank_corr", "iou", "dice")


def run_name(settings, n_questions: int, overrides=()) -> str:
    """What differs, readable in the runs table: ``saliency k=0.1 (embedded, 300 q)``; ``smoke:``
    first for a smoke run, the shard last for a shard."""
    d = settings.data
    name = f"{settings.attribution.method} k={settings.scoring.k:g} ({d.name}, {n_questions} q)"
    if any(o.startswith("+experiment=") and o.split("=", 1)[1] in ("smoke", "sanity") for o in overrides):
        name = next(o.split("=", 1)[1] for o in overrides if o.startswith("+experiment=")) + ": " + name
    return name if d.num_shards == 1 else f"{name} shard {d.shard}/{d.num_shards}"


def write_maps_archive(path: Path, cache, keys) -> None:
    """The run's maps as one compressed ``.npz`` (key ``{question_id}_{answer_index}``), written
    entry by entry so that the maps are never all in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in dict.fromkeys(keys):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, cache.load(key))


def record_outputs(tracker, settings, outputs, timings: dict):
    """Log a finished run's tables, analysis and maps, and start drawing its figures: returns the
    :class:`~vqa_interp.tracking.background.FigureJob` whose figures the run logs before it ends."""
    from vqa_interp.analysis import figures, statistics
    from vqa_interp.tracking.background import draw_figures, finish_deferred

    a = settings.analysis
    start = time.perf_counter()
    tracker.set_tags(outputs.tags)
    tracker.log_table(outputs.table, "per_example")
    results = statistics.analyse(outputs.table, low=a.low, high=a.high, map_for_example=a.map_for_example,
                                 alpha=a.alpha, n_bootstrap=a.bootstrap, seed=a.seed,
                                 min_group=a.min_group)
    if outputs.references is not None and results.examples is not None:
        reference_results(results, outputs.references, settings)
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
        from vqa_interp.attribution.sanity import sanity_figure, verdict

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
    # drawn in another process (vqa_interp.tracking.background); the cached kind first, so that a
    # k sweep's next job can reuse them while this job's other figures are still being drawn
    makers = dict(sorted(makers.items(), key=lambda item: rendered.folder(item[0]) is None))
    job = draw_figures(makers, keep_in=rendered.folder, cached=[rendered.png(name) for name in sorted(skip)],
                       keeps=rendered.root if set(rendered.K_INDEPENDENT) - skip else None)
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
        if settings.tracking.log_maps and len(outputs.table):
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "maps.npz"
                write_maps_archive(archive, outputs.cache, outputs.table["map_key"])
                tracker.log_file(archive, "maps")
        timings["time/logging_s"] = time.perf_counter() - start - timings["time/analysis_s"]
    return job


class FigureCache:
    """The figures of a run that do not depend on k, kept as rendered (PNG + SVG) under
    ``<cache>/figures/<key>/``, so that the jobs of a k sweep render them once. The key holds what
    they show: the data, the model, the map set, the panels' choice, the confidence splits, the
    human map, the explain setup, the method's name and :data:`FIGURE_CACHE_VERSION`."""

    K_INDEPENDENT = ("fig1_human_weight_distribution", "fig9_10_qualitative", "token_attributions",
                     "faithfulness_curves", "image_share_by_split")

    def __init__(self, settings, outputs):
        from dataclasses import asdict

        from vqa_interp.util.signature import short_signature

        a, s = settings.analysis, settings.scoring
        tags = outputs.tags
        self.root = Path(settings.cache) / "figures" / short_signature({
            "version": FIGURE_CACHE_VERSION, "data": tags.get("data_digest"), "model": tags.get("checkpoint_digest"),
            "maps": tags.get("map_cache"), "method": settings.attribution.method, "n_panels": a.n_panels,
            "panel_ids": a.panel_ids, "map_for_example": a.map_for_example, "low": a.low, "high": a.high,
            "human": [s.human, s.annotator], "explain": asdict(settings.explain), "seed": settings.seed}, 24)

    def png(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def folder(self, name: str) -> Path | None:
        """Where a newly rendered figure is kept (None: one that depends on k)."""
        return self.root if name in self.K_INDEPENDENT else None

    def available(self) -> set[str]:
        return {n for n in self.K_INDEPENDENT if self.png(n).exists() and self.png(n).with_suffix(".svg").exists()}


FIGURE_CACHE_VERSION = 1   # raise when a k-independent figure's drawing changes


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
                                             seed=a.seed, min_group=a.min_group)
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


def reference_results(results, references, settings) -> None:
    """Add the floors/ceiling tables and metrics to ``results`` (see :mod:`vqa_interp.analysis.baselines`)."""
    from vqa_interp.analysis.baselines import baselines_table, normalised_scores, paired_baseline_tests
    from vqa_interp.metrics.registry import family_metrics

    a = settings.analysis
    table = baselines_table(results.examples, references, n_bootstrap=a.bootstrap, seed=a.seed)
    tests = paired_baseline_tests(results.examples, references, n_bootstrap=a.bootstrap, seed=a.seed)
    results.tables.update({"baselines": table, "baseline_tests": tests, "references_per_question": references})
    family = set(family_metrics())
    for row in table.itertuples():
        if (row.metric in BASELINE_METRICS and row.reference in ("random", "centre", "image", "human_ceiling")
                and np.isfinite(row.mean)):
            results.metrics[f"baseline/{row.reference}/{row.metric}"] = row.mean
    for metric, value in normalised_scores(table).items():
        if metric in family and np.isfinite(value):
            results.metrics[f"norm/{metric}"] = value


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


def check_annotator(settings, examples) -> None:
    """``scoring.human=annotator`` with an annotator no selected question has would score nothing:
    refuse it before any work, naming the annotators there are."""
    from vqa_interp.errors import ConfigError

    s = settings.scoring
    if s.human != "annotator":
        return
    suffix = f"_{s.annotator}"
    if not any(p.stem.endswith(suffix) for e in examples for p in e.human_map_paths):
        most = max((len(e.human_map_paths) for e in examples), default=0)
        raise ConfigError(f"scoring.annotator={s.annotator}: none of the {len(examples)} selected questions has a map "
                          f"from annotator {s.annotator} ({{question_id}}{suffix}.png); they have at most {most} "
                          f"annotators. Choose scoring.annotator between 1 and {most}, or scoring.human=mean.")


def parent_run_id_for_job() -> str | None:
    """Inside a Hydra multirun job: the parent run id written by the sweep callback."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_cfg.sweep.dir) / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


def sweep_k_for_job() -> list[float]:
    """Inside a Hydra multirun job: the k values the sweep runs (written by the sweep callback)."""
    import json

    from vqa_interp.tracking.callback import SWEEP_K_FILE

    if not _in_multirun():
        return []
    from hydra.core.hydra_config import HydraConfig

    path = Path(HydraConfig.get().sweep.dir) / SWEEP_K_FILE
    try:
        return [float(k) for k in json.loads(path.read_text())] if path.exists() else []
    except (ValueError, TypeError):
        return []


def scorable_at(settings, k: float) -> bool:
    """Whether this run's scoring setup is valid at ``k`` (the sweep's other values are checked by
    :class:`~vqa_interp.metrics.prepare.ScoringOptions`, as the jobs' own k is)."""
    from dataclasses import replace

    from vqa_interp.pipeline import scoring_options

    try:
        replace(scoring_options(settings), k=k)
    except ValueError:
        return False
    return True


def figures_deferred() -> bool:
    """Whether this job's run may end after the job returns, once its figures are drawn: in a
    sweep whose jobs run in this process (Hydra's basic launcher), where the sweep's next job or
    its end finishes it (:func:`vqa_interp.tracking.background.finish_deferred`). A launcher that
    runs jobs in other processes gets each run finished by its own job."""
    from hydra.core.hydra_config import HydraConfig

    if not _in_multirun():
        return False
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return target.endswith(".BasicLauncher")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def evaluate(cfg: DictConfig) -> str:
    """Validate, prepare data and model, then one tracked evaluation run; returns its run ID."""
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.errors import DataError
    from vqa_interp.pipeline import execute, preflight_model_files, timed
    from vqa_interp.settings import from_config
    from vqa_interp.tracking.background import defer, log_figures
    from vqa_interp.tracking.store import (check_reachable, ending, flatten, resolve_tracking_uri, run_url, start_run,
                                           ui_command)
    from vqa_interp.train import ensure_embedded_model

    global _START
    job_start = time.perf_counter()
    # start-up (interpreter, imports, Hydra) is paid once per process, by its first job
    timings: dict[str, float] = {"time/startup_s": job_start - _START if _START else 0.0}
    _START = 0.0
    settings = from_config(cfg)
    check_reachable(resolve_tracking_uri(settings.tracking.uri))
    preflight_model_files(settings)
    dataset = dataset_for(settings.data, settings.home)
    with timed(timings, "data"):
        selection = dataset.examples()
    if not selection.examples:
        raise DataError(f"data: the selection is empty (skipped: {dict(selection.skipped)}); check data.limit, "
                        "data.question_ids, data.shard and the human maps folder.")
    check_annotator(settings, selection.examples)
    checkpoint = ensure_embedded_model(settings, dataset)
    hydra_cfg = HydraConfig.get()
    tags = {"run_kind": "evaluation", "hydra_output_dir": str(Path(hydra_cfg.runtime.output_dir).resolve()),
            "hydra_overrides": " ".join(hydra_cfg.overrides.task), "method": settings.attribution.method}
    name = run_name(settings, len(selection.examples), list(hydra_cfg.overrides.task))
    deferred = figures_deferred()
    tracker = start_run(settings.tracking, name, parent_run_id=parent_run_id_for_job(), tags=tags)
    with ending(tracker, finish=not deferred):   # FAILED or KILLED if anything below raises
        _RUN_OPENED.append(tracker.run_id)
        print(f"MLflow run: {tracker.run_id} ({name})", flush=True)
        tracker.log_params(flatten(settings.resolved))
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/resolved.yaml")
        tracker.log_text("\n".join(hydra_cfg.overrides.task) + "\n", "config/overrides.txt")
        outputs = execute(settings, dataset, selection, checkpoint, timings,
                          on_predictions=lambda frame: tracker.log_table(frame, "predictions"),
                          also_k=[k for k in sweep_k_for_job() if scorable_at(settings, k)])
        job = record_outputs(tracker, settings, outputs, timings)
        with job.cancelled_on_error():
            if not deferred:
                log_figures(tracker, job)    # waits for the drawing
            timings["time/total_s"] = time.perf_counter() - job_start + timings["time/startup_s"]
            tracker.log_metrics({k: v for k, v in timings.items() if k in HEADLINE_TIMINGS})
            tracker.log_table(pd.DataFrame([{"stage": k.split("/", 1)[1][:-2], "seconds": v}
                                            for k, v in timings.items()]), "timings")
            tracker.set_description(outputs.summary_markdown)
    if deferred:   # this sweep's next job runs while the figures are drawn; the run ends when they are in
        defer(tracker, job)
    uri = resolve_tracking_uri(settings.tracking.uri)
    if outputs.summary:
        print("\n" + outputs.summary + "\n", flush=True)
    print(f"MLflow run {tracker.run_id} ({name}) finished: {len(outputs.table)} rows, model accuracy "
          f"{outputs.counts['model/accuracy']:.3f}, {timings['time/total_s']:.1f} s.\n"
          f"  {run_url(uri, tracker.experiment_id, tracker.run_id)}\n  (serve it with: {ui_command(uri)})", flush=True)
    return tracker.run_id


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str:
    from vqa_interp.tracking.store import mark_interrupted, raise_on_sigterm
    from vqa_interp.util.allocator import keep_freed_buffers

    raise_on_sigterm()
    keep_freed_buffers()
    _RUN_OPENED.clear()
    try:
        return evaluate(cfg)
    except KeyboardInterrupt:
        mark_interrupted()
        raise
    except BaseException as exc:
        if _in_multirun():
            if not _RUN_OPENED:   # the parent cannot see a job that never opened its run: leave it a note
                record_job_failure(exc)
            raise            # the sweep records the failed job
        if isinstance(exc, VqaInterpError):
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


_RUN_OPENED: list[str] = []


def record_job_failure(exc: BaseException) -> None:
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.tracking.sweep import record_failed_job

    with contextlib.suppress(Exception):
        hydra_cfg = HydraConfig.get()
        record_failed_job(hydra_cfg.sweep.dir, int(hydra_cfg.job.num), list(hydra_cfg.overrides.task),
                          f"{type(exc).__name__}: {exc}")


_START = time.perf_counter()

if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("VQA_INTERP_LOG", "INFO"))
    main()
