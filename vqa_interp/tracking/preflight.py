"""Checks of a tracking URI before any run opens, each failing in one line with the fix: a server
that does not answer, a file store MLflow refuses, a SQLite file that is not a readable database."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)
SQLITE_HEADER = b"SQLite format 3\x00"


def check_local_store(uri: str) -> None:
    """One-line errors, before any run opens, for a local store MLflow would fail on with a
    traceback: a file store (``file:./mlruns`` or a bare folder: MLflow 3.13+ refuses them) and a
    SQLite file that is not a readable database (truncated, overwritten)."""
    from vqa_interp.errors import ConfigError

    default = "tracking.uri=sqlite:///mlruns/mlflow.db (the default)"
    if (
        uri.startswith("file:")
        or "://" not in uri
        and not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql", "databricks"))
    ):
        raise ConfigError(
            f"tracking.uri={uri}: a file store (a folder of runs), which MLflow 3.13+ no longer writes "
            f"to; expected a database or a server URI. Use {default}, or a tracking server "
            "(tracking.uri=http://HOST:PORT); `mlflow migrate-filestore` moves old file-store runs."
        )
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    path = Path(uri[len(prefix) :])
    if not path.exists() or path.stat().st_size == 0:
        return  # MLflow creates it
    import sqlite3

    problem = ""
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            problem = "it does not start with the SQLite header"
    if not problem:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
                result = db.execute("PRAGMA quick_check").fetchone()
            if result and result[0] != "ok":
                problem = f"SQLite's quick_check reports {result[0]!r}"
        except sqlite3.DatabaseError as exc:
            problem = f"SQLite: {exc}"
    if problem:
        raise ConfigError(
            f"tracking.uri={uri}: {path} is not a readable SQLite database ({problem}; a truncated or "
            f"overwritten file). Move it aside (mv {path} {path}.broken) to start an empty store there, "
            "restore it from a backup, or set tracking.uri to another store."
        )


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when ``uri`` is a tracking server that does not answer (MLflow itself
    retries for minutes), or a local store MLflow cannot use (:func:`check_local_store`)."""
    if not uri.startswith(("http://", "https://")):
        check_local_store(uri)
        return
    import urllib.error
    import urllib.request

    from vqa_interp.errors import ConfigError

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise ConfigError(
        f"tracking.uri={uri}: no MLflow tracking server answers there ({reason}). Start it "
        f"(mlflow server --host 127.0.0.1 --port PORT --backend-store-uri sqlite:///mlruns/mlflow.db) "
        f"or unset MLFLOW_TRACKING_URI to record into the local store mlruns/mlflow.db."
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def check_artifact_location(client, experiment, expected: Path) -> None:
    """Before a run opens: the experiment's artifacts must go where this project keeps them.

    A SQLite store records the artifact location as an absolute path, so after ``cp -a`` or a move
    of the project, every run would silently write into the original tree. When the experiment
    points elsewhere and this project's artifact folder holds a copy of that experiment's run
    folders (a copied or moved project), the store is repointed (the experiment and its runs) and a
    warning says so; otherwise the run stops, naming both places and the fix.
    """
    from urllib.parse import unquote, urlparse

    from vqa_interp.errors import ConfigError

    database = sqlite_path(client.tracking_uri)
    location = experiment.artifact_location
    if database is None or not location.startswith("file:"):
        return
    current = Path(unquote(urlparse(location).path))
    if current == expected:
        return
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    copied = expected.is_dir() and any((expected / r.info.run_id).is_dir() for r in runs)
    if not copied and runs:
        raise ConfigError(
            f"tracking.artifact_root: the experiment {experiment.name!r} in {database} keeps its artifacts in "
            f"{current}, not in {expected}. If the project was copied or moved, copy {current} to {expected} "
            f"too (the store is then repointed); otherwise set tracking.artifact_root={current.parent} or use "
            f"another tracking.experiment."
        )
    import sqlite3

    old_prefix, new_prefix = current.as_uri(), expected.as_uri()
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            (new_prefix, int(experiment.experiment_id)),
        )
        db.execute(
            "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
            "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
            (new_prefix, len(old_prefix) + 1, int(experiment.experiment_id), len(old_prefix), old_prefix),
        )
    if runs:
        log.warning(
            "the tracking store %s was moved or copied from another folder: its experiment %r and %d "
            "run(s) pointed at %s; they now point at %s (this project's copy)",
            database,
            experiment.name,
            len(runs),
            current,
            expected,
        )
    else:
        log.info("experiment %r (no runs yet) now keeps its artifacts in %s", experiment.name, expected)
