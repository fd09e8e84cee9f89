"""The MLflow store API: the store, one run's record, and reading runs back.

The default store is SQLite under ``mlruns/`` (``sqlite:///mlruns/mlflow.db``, artifacts in
``mlruns/artifacts``); ``tracking.uri`` or ``MLFLOW_TRACKING_URI`` points elsewhere (e.g. a
``mlflow server``). Only the ``tracking`` package imports MLflow; other stages use this API.
"""

from __future__ import annotations

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

from vqa_interp.errors import ConfigError
from vqa_interp.tracking.liveness import close_orphans, liveness_tags
from vqa_interp.tracking.preflight import (  # (re-exported: the entry points import it from here)
    check_artifact_location,
    check_reachable,
    sqlite_path,
)
from vqa_interp.tracking.ui_view import ensure_view

log = logging.getLogger(__name__)
PARENT_ID_FILE = "mlflow_parent_run_id"
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
DESCRIPTION_FILE = "summary.md"  # a description longer than a tag holds, whole


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///path`` absolute (so it survives a change of directory)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri[len(prefix) :]).resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"tracking.uri={uri}: the folder {path.parent} cannot be created ({exc.strerror}); "
                "choose a folder you can write, e.g. tracking.uri=sqlite:///mlruns/mlflow.db"
            ) from None
        if not os.access(path.parent, os.W_OK):
            raise ConfigError(
                f"tracking.uri={uri}: the folder {path.parent} is not writable; choose a folder you "
                "can write, e.g. tracking.uri=sqlite:///mlruns/mlflow.db"
            )
        return prefix + str(path)
    return uri


def quiet_artifact_downloads() -> None:
    """No MLflow per-file download bars (a sweep parent or a report reads every run's tables: they
    say nothing to a user); a user's own setting of ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` wins."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
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
    """An ``MlflowClient`` for ``uri``. A SQLite store is created (or its schema upgraded) by one
    process at a time: two runs started at once on a new store otherwise both create its tables
    and one fails in MLflow's migration."""
    from mlflow.tracking import MlflowClient

    from vqa_interp.util.locking import file_lock

    uri = resolve_tracking_uri(uri)
    database = sqlite_path(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri)
    with file_lock(database.with_name(database.name + ".lock")):
        client = MlflowClient(tracking_uri=uri)  # MLflow creates or upgrades the tables here
        client.search_experiments(max_results=1)
    return client


def ensure_experiment(client, name: str, artifact_root: str) -> str:
    """The experiment's id, creating it (artifacts under ``artifact_root`` for local stores)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        ensure_view(client, experiment.experiment_id, experiment.tags)
        check_artifact_location(client, experiment, Path(artifact_root).resolve() / name)
        return experiment.experiment_id
    location = None
    if not client.tracking_uri.startswith("http"):
        location = (Path(artifact_root).resolve() / name).as_uri()
    try:
        # MLflow 3 opens an experiment of this kind on its runs table, not on the GenAI overview
        experiment_id = client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
        ensure_view(client, experiment_id, {})
        return experiment_id
    except Exception:  # another process created it in between
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class RunTracker:
    """One MLflow run; thin, typed helpers over ``MlflowClient``."""

    def __init__(self, client, run_id: str, experiment_id: str | None = None, tags=()):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id or client.get_run(run_id).info.experiment_id
        self.summary = ""  # what the terminal shows when the run ends (a sweep parent's ranking)
        # what this tracker sent, by key: written as LOGGED_FILE when the run ends, so that a store
        # (a server on PostgreSQL, many writers on SQLite) can be checked to hold every one
        self.logged: dict[str, set] = {"params": set(), "metrics": set(), "tags": set(tags), "artifacts": set()}

    def set_description(self, markdown: str) -> None:
        """The run's description in the UI (``mlflow.note.content``). A tag holds at most MLflow's
        ``MAX_TAG_VAL_LENGTH`` characters (8000; MLflow truncates a longer one mid-line with a
        warning): a longer text is logged whole as :data:`DESCRIPTION_FILE` and the description is
        its paragraphs that fit, then a line naming that file."""
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        if not markdown:
            return
        if len(markdown) > MAX_TAG_VAL_LENGTH:
            self.log_text(markdown, DESCRIPTION_FILE)
            pointer = f"\n\n*(Cut here: the whole text is the run's artifact {DESCRIPTION_FILE}.)*"
            head = markdown[: MAX_TAG_VAL_LENGTH - len(pointer)]
            markdown = (head.rsplit("\n\n", 1)[0] if "\n\n" in head else head) + pointer
        self.set_tags({DESCRIPTION_TAG: markdown})

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        self.logged["params"].update(params)
        for begin in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[begin : begin + 100])

    def log_dataset(self, name: str, digest: str, source: str, profile: dict, context: str = "evaluation") -> None:
        """The data the run scored as an MLflow dataset input (the runs table's Dataset column):
        ``profile`` (e.g. the number of questions) is stored as its JSON profile."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest,
            source_type="local",
            source=json.dumps({"uri": source}),
            profile=json.dumps(profile),
        )
        self.client.log_inputs(
            self.run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
        )

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        self.logged["metrics"].update(m.key for m in items)
        for begin in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[begin : begin + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.logged["tags"].update(tags)

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)
        self.logged["artifacts"].add(f"{artifact_dir}/{Path(path).name}" if artifact_dir else Path(path).name)

    def log_table(self, frame, name: str, artifact_dir: str = "tables") -> None:
        """A DataFrame as ``{artifact_dir}/{name}.csv``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.csv"
            frame.to_csv(path, index=False)
            self.log_file(path, artifact_dir)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)
        self.logged["artifacts"].add(artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        """A matplotlib figure as ``artifact_file`` (PNG at 150 dpi) and beside it as SVG."""
        from vqa_interp.analysis.figures import save_figure

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            save_figure(figure, path)
            self.log_figure_files(path, str(Path(artifact_file).parent))

    def log_figure_files(self, png: str | Path, artifact_dir: str) -> None:
        """A figure already saved: ``png`` and the SVG beside it."""
        self.log_file(png, artifact_dir)
        self.log_file(Path(png).with_suffix(".svg"), artifact_dir)

    def end(self, status: str = "FINISHED") -> None:
        with contextlib.suppress(Exception):  # the record of what was sent never stops a run's closing
            self.client.log_text(self.run_id, json.dumps({k: sorted(v) for k, v in self.logged.items()}), LOGGED_FILE)
        self.client.set_terminated(self.run_id, status)


def start_run(tracking, run_name: str, *, parent_run_id: str | None = None, tags: dict | None = None) -> RunTracker:
    """Open a run in ``tracking`` (a :class:`vqa_interp.settings.TrackingSettings`)."""
    check_reachable(resolve_tracking_uri(tracking.uri))
    client = client_for(tracking.uri)
    experiment_id = ensure_experiment(client, tracking.experiment, tracking.artifact_root)
    close_orphans(client, experiment_id)
    all_tags = {
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **liveness_tags(resolve_tracking_uri(tracking.uri), tracking.artifact_root),
        **(tags or {}),
    }
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()})
    return RunTracker(client, run.info.run_id, experiment_id, tags=all_tags)


LOGGED_FILE = "tracking/logged.json"  # the keys a run's tracker sent (RunTracker.logged)


@contextlib.contextmanager
def tracked_run(tracking, run_name: str, **kwargs) -> Iterator[RunTracker]:
    """A new run that ends FINISHED, or FAILED (with the traceback logged) if the block raises."""
    with ending(start_run(tracking, run_name, **kwargs)) as tracker:
        yield tracker


@contextlib.contextmanager
def ending(tracker: RunTracker, *, finish: bool = True, failed: str = "FAILED") -> Iterator[RunTracker]:
    """End an open run FINISHED after the block (``finish=False``: leave it open, for the caller
    to end), or ``failed`` (KILLED on Ctrl-C) with the error logged if the block raises."""
    try:
        yield tracker
    except BaseException as exc:
        with contextlib.suppress(Exception):
            tracker.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
            tracker.log_text("".join(traceback.format_exception(exc)), "error.txt")
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else failed)
        raise
    if finish:
        tracker.end("FINISHED")


@contextlib.contextmanager
def training_run(settings) -> Iterator[RunTracker]:
    """The MLflow run of a model training (params: the model and data settings)."""
    from dataclasses import asdict

    with tracked_run(settings.tracking, f"train-{settings.model.name}", tags={"run_kind": "training"}) as tracker:
        model = {k: v for k, v in asdict(settings.model).items() if k != "options"}
        tracker.log_params(flatten({"model": {**model, **settings.model.options}, "data": asdict(settings.data)}))
        yield tracker


# ------------------------------------------------------------------ reading runs back
def find_run(client, run_id: str):
    """The run ``run_id`` (a full ID, an 8+ character prefix, or a run name), or a user-facing error."""
    from mlflow.exceptions import MlflowException

    from vqa_interp.errors import VqaInterpError

    try:
        return client.get_run(run_id)
    except MlflowException:
        pass
    experiments = [e.experiment_id for e in client.search_experiments()]
    candidates = []
    if experiments:
        for run in client.search_runs(experiments, max_results=50000):
            if run.info.run_id.startswith(run_id) and len(run_id) >= 8 or run.info.run_name == run_id:
                candidates.append(run)
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise VqaInterpError(
            f"run {run_id!r} matches {len(candidates)} runs in {client.tracking_uri}: "
            f"{[r.info.run_id for r in candidates][:5]}; give the full run ID."
        )
    raise VqaInterpError(
        f"run ID {run_id!r} is not in the tracking store {client.tracking_uri} "
        "(check the ID, or point --tracking-uri / MLFLOW_TRACKING_URI at the right store)."
    )


SUPERSEDED_TAG = "superseded"  # a resumed sweep's leftover, replaced by a new run of its config


def child_runs(client, parent_run_id: str, superseded: bool = False) -> list:
    """The runs tagged as children of ``parent_run_id`` (without the leftovers a resumed sweep
    replaced, unless ``superseded``; see :mod:`vqa_interp.tracking.resume`)."""
    run = client.get_run(parent_run_id)
    runs = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10000
    )
    return runs if superseded else [r for r in runs if r.data.tags.get(SUPERSEDED_TAG) != "true"]


def download_table(client, run_id: str, name: str, tmp: str):
    """``tables/<name>.csv`` of a run as a DataFrame, or None when the run has no such table."""
    import pandas as pd

    try:
        return pd.read_csv(client.download_artifacts(run_id, f"tables/{name}.csv", tmp))
    except Exception:  # a run without the table (failed, empty, older version)
        return None


def download_artifact(client, run_id: str, path: str, tmp: str) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, tmp))
    except Exception:
        return None


def list_artifacts(client, run_id: str, folder: str) -> list[str]:
    try:
        return [a.path for a in client.list_artifacts(run_id, folder)]
    except Exception:
        return []
