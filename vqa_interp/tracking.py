"""Everything MLflow: the store, one run's record, and the parent run of a Hydra multirun.

The default store is SQLite under ``mlruns/`` (``sqlite:///mlruns/mlflow.db``, artifacts in
``mlruns/artifacts``); ``tracking.uri`` or ``MLFLOW_TRACKING_URI`` points elsewhere (e.g. a
``mlflow server``). Only this module talks to MLflow.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
PARENT_ID_FILE = "mlflow_parent_run_id"
PARENT_TAG = "mlflow.parentRunId"


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///path`` absolute (so it survives a change of directory)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith("http"):
        return f"open {uri} in a browser (the tracking server's UI)"
    return f"mlflow ui --backend-store-uri {uri}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Nested dict/list config -> ``{"a.b": "value"}`` with string values (MLflow params)."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(node) if isinstance(node, (list, tuple)) else str(node)}


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=resolve_tracking_uri(uri))


def ensure_experiment(client, name: str, artifact_root: str) -> str:
    """The experiment's id, creating it (artifacts under ``artifact_root`` for local stores)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not client.tracking_uri.startswith("http"):
        location = (Path(artifact_root).resolve() / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it in between
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class RunTracker:
    """One MLflow run; thin, typed helpers over ``MlflowClient``."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for begin in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[begin:begin + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for begin in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[begin:begin + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def log_table(self, frame, name: str, artifact_dir: str = "tables") -> None:
        """A DataFrame as ``{artifact_dir}/{name}.csv``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.csv"
            frame.to_csv(path, index=False)
            self.log_file(path, artifact_dir)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def start_run(cfg: DictConfig, run_name: str, *, parent_run_id: str | None = None,
              tags: dict | None = None) -> RunTracker:
    client = client_for(cfg.tracking.uri)
    experiment_id = ensure_experiment(client, cfg.tracking.experiment, cfg.tracking.artifact_root)
    all_tags = {"git_commit": git_commit(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()})
    return RunTracker(client, run.info.run_id)


@contextlib.contextmanager
def tracked_run(cfg: DictConfig, run_name: str, **kwargs) -> Iterator[RunTracker]:
    """A new run that ends FINISHED, or FAILED (with the traceback logged) if the block raises."""
    with ending(start_run(cfg, run_name, **kwargs)) as tracker:
        yield tracker


@contextlib.contextmanager
def ending(tracker: RunTracker) -> Iterator[RunTracker]:
    """End an open run FINISHED after the block, or FAILED (KILLED on Ctrl-C) with the error logged."""
    try:
        yield tracker
    except BaseException as exc:
        with contextlib.suppress(Exception):
            tracker.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
            tracker.log_text("".join(traceback.format_exception(exc)), "error.txt")
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.end("FINISHED")


def training_run(cfg: DictConfig):
    """The MLflow run of a model training (params: the model config)."""
    @contextlib.contextmanager
    def _run():
        with tracked_run(cfg, f"train-{cfg.model.name}", tags={"run_kind": "training"}) as tracker:
            tracker.log_params(flatten({"model": OmegaConf.to_container(cfg.model, resolve=True),
                                        "data": OmegaConf.to_container(cfg.data, resolve=True)}))
            yield tracker
    return _run()


# ------------------------------------------------------------------ multirun parent
def parent_run_id_for_job() -> str | None:
    """Inside a Hydra multirun job: the parent run id written by :class:`MlflowSweepCallback`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_cfg.sweep.dir) / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


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
        sweep_dir = Path(config.hydra.sweep.dir)  # HydraConfig is not set yet in this hook
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = list(config.hydra.overrides.task)
        self.tracker = start_run(config, f"sweep-{sweep_dir.name}",
                                 tags={"run_kind": "sweep", "hydra_sweep_dir": str(sweep_dir.resolve()),
                                       "sweep_overrides": " ".join(overrides)})
        self.tracker.log_params({"sweep.overrides": " ".join(overrides)})
        (sweep_dir / PARENT_ID_FILE).write_text(self.tracker.run_id)
        atexit.register(self._close, "FAILED")
        print(f"MLflow parent run: {self.tracker.run_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("FINISHED", in_process=True)

    def _close(self, status: str, in_process: bool = False) -> None:
        """Summarise and end the parent. From ``atexit`` (a job failed and Hydra is exiting) the
        work runs in a fresh process: at interpreter shutdown MLflow's artifact downloads, which
        use a thread pool, are refused."""
        if self.tracker is None:
            return
        tracker, self.tracker = self.tracker, None
        uri = resolve_tracking_uri(self.cfg.tracking.uri)
        if in_process:
            from vqa_interp.sweep import close_parent

            status = close_parent(tracker, status)
        else:
            result = subprocess.run([sys.executable, "-m", "vqa_interp.sweep", tracker.run_id, "--status", status,
                                     "--tracking-uri", uri], capture_output=True, text=True,
                                    env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                        str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))})
            if result.returncode != 0:
                log.error("closing the sweep parent failed: %s", result.stderr[-2000:])
                with contextlib.suppress(Exception):
                    tracker.end("FAILED")
            else:
                status = result.stdout.split()[-1]  # "parent run ID: STATUS"
        print(f"MLflow parent run {tracker.run_id} closed ({status}). Open the UI: {ui_command(uri)}", flush=True)
