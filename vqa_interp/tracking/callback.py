"""The Hydra callback that gives a multirun one MLflow parent run (the only Hydra code outside the
entry points)."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vqa_interp.tracking.resume import SWEEP_SIGNATURE_TAG, resume_parent, sweep_signature
from vqa_interp.tracking.store import (
    PARENT_ID_FILE,
    RunTracker,
    quiet_artifact_downloads,
    resolve_tracking_uri,
    start_run,
)
from vqa_interp.tracking.stores import remember_store, report_command
from vqa_interp.tracking.ui_view import run_url, table_url, ui_command

log = logging.getLogger(__name__)


SWEEP_K_FILE = "sweep_k.json"
SWEEP_PROGRESS_FILE = "sweep_progress.json"  # {"jobs": n, "started": epoch seconds}: each job's progress line


def sweep_size(overrides: list[str]) -> int:
    """How many jobs a multirun's overrides make: the product of each swept key's number of values
    (0 when Hydra's parser cannot tell; the jobs then say their number only)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    size = 1
    try:
        for override in OverridesParser.create().parse_overrides(overrides):
            if override.is_sweep_override():
                size *= len(list(override.sweep_string_iterator()))
    except Exception:
        return 0
    return size


def swept_values(overrides: list[str], key: str) -> list[float]:
    """The values a multirun sweeps ``key`` over (``k=0.05,0.1`` or ``k=range(...)``); [] if none.
    Each job scores at all of them from one sort of its maps and caches the other jobs' tables."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values: list[float] = []
    try:
        for override in OverridesParser.create().parse_overrides(overrides):
            if override.key_or_group == key and override.is_sweep_override():
                values = [float(v) for v in override.sweep_string_iterator()]
    except Exception:  # an override Hydra will itself reject, or a non-numeric k: let the job say so
        return []
    return values


class MlflowSweepCallback(Callback):
    """Opens one parent run per multirun and closes it (never leaving it RUNNING).

    The parent's id goes to ``<sweep dir>/mlflow_parent_run_id`` where every job, in whatever
    process or machine a launcher puts it, reads it and tags its own run with
    ``mlflow.parentRunId``. At the end, the parent gets the comparison across its children;
    if a job failed, Hydra raises before ``on_multirun_end``, so an ``atexit`` hook does the
    same closing, with status FAILED.
    """

    def __init__(self) -> None:
        self.tracker: RunTracker | None = None
        self.cfg: DictConfig | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.cfg = config
        quiet_artifact_downloads()
        sweep_dir = Path(config.hydra.sweep.dir)  # HydraConfig is not set yet in this hook
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = list(config.hydra.overrides.task)
        from vqa_interp.errors import VqaInterpError
        from vqa_interp.settings import tracking_settings

        name = "sweep: " + (" ".join(named_overrides(overrides)) or sweep_dir.name)
        signature = sweep_signature(overrides)
        tags = {
            "run_kind": "sweep",
            "hydra_sweep_dir": str(sweep_dir.resolve()),
            "sweep_overrides": " ".join(overrides),
            SWEEP_SIGNATURE_TAG: signature,
        }
        try:  # the same command after an interruption reopens its parent (tracking/resume.py)
            self.tracker = resume_parent(tracking_settings(config), signature, tags) or start_run(
                tracking_settings(config), name, tags=tags
            )
        except VqaInterpError as exc:  # a store the sweep cannot record into: one line, before any job
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        if "resumed" not in self.tracker.client.get_run(self.tracker.run_id).data.tags:
            self.tracker.log_params({"sweep.overrides": " ".join(overrides)})
        (sweep_dir / PARENT_ID_FILE).write_text(self.tracker.run_id)
        (sweep_dir / SWEEP_K_FILE).write_text(json.dumps(swept_values(overrides, "k")))
        (sweep_dir / SWEEP_PROGRESS_FILE).write_text(
            json.dumps({"jobs": sweep_size(overrides), "started": time.time()})
        )
        atexit.register(self._close, "FAILED")
        remember_store(config.paths.home, config.tracking.uri)  # python -m vqa_interp.report ID finds it
        print(f"MLflow parent run: {self.tracker.run_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("FINISHED", in_process=True)

    def _close(self, status: str, in_process: bool = False) -> None:
        """Summarise and end the parent. From ``atexit`` (a job failed and Hydra is exiting) the
        work runs in a fresh process: at interpreter shutdown MLflow's artifact downloads, which
        use a thread pool, are refused."""
        from vqa_interp.tracking.figure_runs import finish_deferred, pending_runs

        finishing = pending_runs() if in_process and self.tracker is not None else []
        if any(_sharded(self.tracker.client, run_id) for run_id in finishing):
            finishing = []  # shards merge only once FINISHED in the store: their figures first
        if not finishing:
            finish_deferred()  # the jobs' runs still waiting for their figures (see run.figures_deferred)
        if self.tracker is None:
            return
        from vqa_interp.tracking.signals import was_interrupted

        if status == "FAILED" and was_interrupted():
            status = "KILLED"
        tracker, self.tracker = self.tracker, None
        uri = resolve_tracking_uri(self.cfg.tracking.uri)
        if in_process:
            from vqa_interp.tracking.sweep import close_parent

            # the comparison runs while the last jobs' figures still draw (it reads none of them)
            status = close_parent(tracker, status, finishing, finish_deferred if finishing else None)
        else:
            result = subprocess.run(
                [sys.executable, "-m", "vqa_interp.sweep", tracker.run_id, "--status", status, "--tracking-uri", uri],
                capture_output=True,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
                    ),
                },
            )
            if result.returncode != 0:
                log.error("closing the sweep parent failed: %s", result.stderr[-2000:])
                with contextlib.suppress(Exception):
                    tracker.end(status if status == "KILLED" else "FAILED")
            else:
                status = result.stdout.split()[-1]  # "parent run ID: STATUS"
        if status == "KILLED":  # after Ctrl-C: one line for the job and the sweep
            from vqa_interp.tracking.signals import interrupted_line

            print(interrupted_line(tracker.run_id), file=sys.stderr, flush=True)
            if in_process:  # the comparison was interrupted: the sweep exits as the signal says
                from vqa_interp.tracking.signals import exit_code

                sys.exit(exit_code())
            return
        if tracker.summary:
            print("\n" + tracker.summary + "\n", flush=True)
        print(
            f"MLflow parent run {tracker.run_id} closed ({status}).\n  {run_url(uri, tracker.experiment_id, tracker.run_id)}"
            f"\n  runs table: {table_url(uri, tracker.experiment_id)}\n  (serve it with: {ui_command(uri)})"
            f"\nreport: {report_command(uri, tracker.run_id)}",
            flush=True,
        )


WHERE_KEYS = ("paths.", "tracking.", "hydra.")  # where things live, not what the sweep compares
PATH_VALUED = ("data.root", "model.checkpoint", "model.pretrained", "model.backbone_weights")


def named_overrides(overrides: list[str]) -> list[str]:
    """The overrides that name a sweep: places (``paths.*``, ``tracking.*``) left out, a file or folder
    given by its last part only (``model.pretrained=.../llava-1.5-7b-hf`` -> ``llava-1.5-7b-hf``)."""
    named = []
    for override in overrides:
        key, _, value = override.partition("=")
        bare = key.lstrip("+~")
        if bare.startswith(WHERE_KEYS):
            continue
        if bare in PATH_VALUED and "/" in value:
            value = value.rstrip("/").rsplit("/", 1)[-1]
        named.append(f"{key}={value}" if _ else key)
    return named


def _sharded(client, run_id: str) -> bool:
    """Whether the run is one shard of a split run (``data.num_shards`` > 1)."""
    try:
        return int(client.get_run(run_id).data.params.get("data.num_shards", 1)) > 1
    except (ValueError, TypeError):
        return False
