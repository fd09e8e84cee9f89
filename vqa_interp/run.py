"""``python -m vqa_interp.run``: one run (or, with ``-m``, a sweep) of attribution vs human attention.

The Hydra entry point: config errors and missing inputs are reported before any model work and
before any MLflow run is opened; a trainable model is trained (in a training run of its own) before
the evaluation run opens; once the run is open, a failure marks it FAILED (the map cache keeps
what was made). The stages are :mod:`vqa_interp.pipeline`; what a run records is
:mod:`vqa_interp.tracking.record`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads: OpenMP threads that wait sleep soon (vqa_interp.util.cores)
    from vqa_interp.util.cores import quiet_waiting

    quiet_waiting()

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from vqa_interp.errors import VqaInterpError

log = logging.getLogger("vqa_interp")


def run_name(settings, n_questions: int, overrides=()) -> str:
    """What differs, readable in the runs table: ``saliency k=0.1 (embedded, 300 q)``; ``smoke:``
    first for a smoke run, the shard last for a shard."""
    d = settings.data
    name = f"{settings.attribution.method} k={settings.scoring.k:g} ({d.name}, {n_questions} q)"
    if any(o.startswith("+experiment=") and o.split("=", 1)[1] in ("smoke", "sanity") for o in overrides):
        name = next(o.split("=", 1)[1] for o in overrides if o.startswith("+experiment=")) + ": " + name
    return name if d.num_shards == 1 else f"{name} shard {d.shard}/{d.num_shards}"


def evaluate(cfg: DictConfig) -> str:
    """Validate, prepare data and model, then one tracked evaluation run; returns its run ID."""
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.settings import from_config
    from vqa_interp.tracking.figure_runs import defer
    from vqa_interp.tracking.hydra_job import figures_deferred, parent_run_id_for_job, progress_line
    from vqa_interp.tracking.resume import config_signature
    from vqa_interp.tracking.store import (
        check_reachable,
        ending,
        flatten,
        quiet_artifact_downloads,
        resolve_tracking_uri,
        start_run,
    )
    from vqa_interp.tracking.stores import remember_store
    from vqa_interp.util.memory import reset_peak_rss

    global _START
    quiet_artifact_downloads()
    reset_peak_rss()  # each job of a sweep in this process reports its own peak
    job_start = time.perf_counter()
    # start-up (interpreter, imports, Hydra) is paid once per process, by its first job
    timings: dict[str, float] = {"time/startup_s": job_start - _START if _START else 0.0}
    _START = 0.0
    settings = from_config(cfg)
    check_reachable(resolve_tracking_uri(settings.tracking.uri))
    parent_run_id = parent_run_id_for_job()
    if parent_run_id:
        print(progress_line(), flush=True)
    signature = config_signature(flatten(settings.resolved))
    if parent_run_id:  # a resumed sweep: this config may have FINISHED under its parent already
        reused = _reused_child(settings, parent_run_id, signature)
        if reused:
            return reused
    dataset, selection, checkpoint = _prepare(settings, timings)
    hydra_cfg = HydraConfig.get()
    tags = _run_tags(settings, signature, checkpoint, hydra_cfg)
    name = run_name(settings, len(selection.examples), list(hydra_cfg.overrides.task))
    deferred = figures_deferred()
    tracker = start_run(settings.tracking, name, parent_run_id=parent_run_id, tags=tags)
    remember_store(settings.home, settings.tracking.uri)  # python -m vqa_interp.report ID finds it
    with ending(tracker, finish=not deferred):  # FAILED or KILLED if anything below raises
        _RUN_OPENED.append(tracker.run_id)
        print(f"MLflow run: {tracker.run_id} ({name})", flush=True)  # its ID before any work (an interrupt names it)
        _log_inputs(tracker, settings, cfg, hydra_cfg, dataset, selection)
        outputs, analysis, job = _evaluated(tracker, settings, (dataset, selection, checkpoint), timings, deferred)
        with job.cancelled_on_error():
            _log_timings(tracker, settings, job, timings, job_start, wait=not deferred)
            tracker.set_description(analysis.summary_markdown)
    if deferred:  # this sweep's next job runs while the figures are drawn; the run ends when they are in
        defer(tracker, job)
    _say_finished(tracker, settings, name, outputs, analysis, timings, parent_run_id, hydra_cfg)
    return tracker.run_id


def _evaluated(tracker, settings, prepared: tuple, timings: dict, deferred: bool) -> tuple:
    """``(outputs, analysis, figure job)``: the stages run (``prepared``: dataset, selection,
    checkpoint; the predictions logged as soon as they exist), analysed and recorded, the figures
    being drawn. A run that waits for its figures draws them in two processes (the other core is idle
    while it waits); a sweep job whose next job computes meanwhile draws them in one."""
    from vqa_interp.pipeline import execute
    from vqa_interp.pipeline.analyse import analyse_run
    from vqa_interp.tracking.hydra_job import sweep_k_for_job
    from vqa_interp.tracking.record import record_outputs

    outputs = execute(
        settings,
        *prepared,
        timings,
        on_predictions=lambda frame: tracker.log_table(frame, "predictions"),
        also_k=sweep_k_for_job(),
    )
    analysis = analyse_run(outputs, settings)
    timings["time/analysis_s"] = analysis.seconds
    workers = 1 if deferred else min(2, os.cpu_count() or 1)
    return outputs, analysis, record_outputs(tracker, settings, outputs, analysis, timings, draw_workers=workers)


def _prepare(settings, timings: dict) -> tuple:
    """``(dataset, selection, checkpoint)``: the dataset and model checked before any work, the
    questions selected (``time/data_s``), a trainable model trained first if it is missing."""
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.pipeline import data as data_stage
    from vqa_interp.pipeline import model as model_stage
    from vqa_interp.pipeline import timed
    from vqa_interp.train import ensure_model

    dataset = dataset_for(settings.data, settings.home)
    model_stage.preflight(settings, dataset)
    with timed(timings, "data"):
        selection = data_stage.select(settings, dataset)
    return dataset, selection, ensure_model(settings, dataset)


def _run_tags(settings, signature: str, checkpoint, hydra_cfg) -> dict[str, str]:
    """An evaluation run's tags: its kind, Hydra folder and overrides, method, config signature and
    where its model came from."""
    from vqa_interp.tracking.resume import CONFIG_SIGNATURE_TAG
    from vqa_interp.train import model_source_tags

    return {
        "run_kind": "evaluation",
        "hydra_output_dir": str(Path(hydra_cfg.runtime.output_dir).resolve()),
        "hydra_overrides": " ".join(hydra_cfg.overrides.task),
        "method": settings.attribution.method,
        CONFIG_SIGNATURE_TAG: signature,
        **model_source_tags(checkpoint),
    }


def _log_inputs(tracker, settings, cfg: DictConfig, hydra_cfg, dataset, selection) -> None:
    """The run's params (the resolved config, flattened), its dataset input, the resolved config
    and the command line's overrides."""
    from vqa_interp.pipeline import data as data_stage
    from vqa_interp.tracking.store import flatten

    tracker.log_params(flatten(settings.resolved))
    tracker.log_dataset(**data_stage.dataset_input(settings, dataset, selection))
    tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/resolved.yaml")
    tracker.log_text("\n".join(hydra_cfg.overrides.task) + "\n", "config/overrides.txt")


def _reused_child(settings, parent_run_id: str, signature: str) -> str | None:
    """The ID of the child of a resumed sweep that FINISHED with this config, else None."""
    from vqa_interp.tracking.resume import reuse_child
    from vqa_interp.tracking.store import client_for, resolve_tracking_uri

    reused = reuse_child(client_for(resolve_tracking_uri(settings.tracking.uri)), parent_run_id, signature)
    if reused is None:
        return None
    print(
        f"MLflow run {reused.info.run_id} ({reused.info.run_name}) reused: it FINISHED with the same config "
        f"in this sweep before it was interrupted.",
        flush=True,
    )
    return reused.info.run_id


def _log_timings(tracker, settings, job, timings: dict, job_start: float, *, wait: bool) -> None:
    """Wait for the figures (``wait``: the run's drawing processes) and log them, then the headline
    timings, the peak memory and every stage's seconds (``tables/timings.csv``)."""
    from vqa_interp.tracking.figure_runs import log_figures
    from vqa_interp.tracking.record import HEADLINE_TIMINGS
    from vqa_interp.util.memory import peak_metrics

    if wait:
        # what the run still waits for its figures (drawn in a forked process since the scores were
        # recorded): in the timings table, not a metric
        timings["time/figures_wait_s"] = log_figures(tracker, job)
    timings["time/total_s"] = time.perf_counter() - job_start + timings["time/startup_s"]
    headline = {k: v for k, v in timings.items() if k in HEADLINE_TIMINGS}
    tracker.log_metrics({**headline, **peak_metrics(settings.device)})
    stages = [{"stage": k.split("/", 1)[1][:-2], "seconds": v} for k, v in timings.items()]
    tracker.log_table(pd.DataFrame(stages), "timings")


def _say_finished(tracker, settings, name: str, outputs, analysis, timings: dict, parent_run_id, hydra_cfg) -> None:
    """The run's summary (a sweep's job: with ``-v`` only; its parent gives the answer), its
    finished line and link, the same in the job's own log, and, for a single run, the runs table,
    the UI command and the report command last."""
    from vqa_interp.tracking.store import resolve_tracking_uri
    from vqa_interp.tracking.stores import report_command
    from vqa_interp.tracking.ui_view import run_url, table_url, ui_command
    from vqa_interp.util.arguments import verbose
    from vqa_interp.util.memory import peak_text

    uri = resolve_tracking_uri(settings.tracking.uri)
    finished = (
        f"MLflow run {tracker.run_id} ({name}) finished: {len(outputs.table)} rows, model accuracy "
        f"{outputs.counts['model/accuracy']:.3f}, {timings['time/total_s']:.1f} s, "
        f"{peak_text(settings.device)}.\n  {run_url(uri, tracker.experiment_id, tracker.run_id)}"
    )
    if analysis.summary and (not parent_run_id or verbose()):
        print("\n" + analysis.summary + "\n", flush=True)
    print(finished, flush=True)
    with contextlib.suppress(OSError):  # the job's own log (Hydra's, in its folder) holds it all
        with open(Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log", "a", encoding="utf-8") as out:
            out.write(f"{analysis.summary}\n\n{finished}\n")
    if not parent_run_id:  # a sweep's parent prints the table, the UI and its report command last
        print(
            f"  runs table: {table_url(uri, tracker.experiment_id)}\n  (serve it with: {ui_command(uri)})\n"
            f"report: {report_command(uri, tracker.run_id)}",
            flush=True,
        )


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str:
    from vqa_interp.errors import NotApplicableError
    from vqa_interp.tracking.hydra_job import in_multirun, record_job_failure, record_job_not_applicable
    from vqa_interp.tracking.signals import exit_code, interrupted_line, mark_interrupted, raise_on_sigterm
    from vqa_interp.util.allocator import keep_freed_buffers

    raise_on_sigterm()
    keep_freed_buffers()
    _RUN_OPENED.clear()
    try:
        return evaluate(cfg)
    except KeyboardInterrupt:
        mark_interrupted(_RUN_OPENED[-1] if _RUN_OPENED else None)
        if not in_multirun():  # in a sweep the parent, closing KILLED at exit, says it in its line
            print(interrupted_line(), file=sys.stderr, flush=True)
        sys.exit(exit_code())  # one line, no traceback: 130 after Ctrl-C, 143 after SIGTERM
    except NotApplicableError as exc:
        if in_multirun() and not _RUN_OPENED:  # a model x method pair that cannot run: listed by the parent
            record_job_not_applicable(exc)
            print(f"not applicable: {exc}", file=sys.stderr, flush=True)
            return ""
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except BaseException as exc:
        if in_multirun():
            if not _RUN_OPENED:  # the parent cannot see a job that never opened its run: leave it a note
                record_job_failure(exc)
            raise  # the sweep records the failed job
        if isinstance(exc, VqaInterpError):
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


_RUN_OPENED: list[str] = []
_START = time.perf_counter()

if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("VQA_INTERP_LOG", "INFO"))
    from vqa_interp.cli_help import register_help_resolver
    from vqa_interp.util.arguments import argument_problem, choice_problem, take_verbose

    sys.argv[1:] = take_verbose(sys.argv[1:])
    problem = argument_problem(sys.argv[1:]) or choice_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
    register_help_resolver()
    main()
