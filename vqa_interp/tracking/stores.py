"""Which tracking store holds a run: the stores this project has written to, remembered under
``paths.home`` (``stores.txt``, one URI a line), so that ``python -m vqa_interp.report ID`` finds a
run logged with ``tracking.uri=...`` without being told, and the command a run prints to report it.

Reading never creates anything: a SQLite store whose file is missing is reported, not made.
"""

from __future__ import annotations

import os
from pathlib import Path

from vqa_interp.errors import VqaInterpError
from vqa_interp.settings import TrackingSettings

DEFAULT_URI = TrackingSettings.uri  # the one definition of the default store

STORES_FILE = "stores.txt"
SQLITE = "sqlite:///"


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (nothing is created)."""
    return SQLITE + str(Path(uri[len(SQLITE) :]).resolve()) if uri.startswith(SQLITE) else uri


def default_home() -> Path:
    """Where ``paths.home`` is when nothing overrides it (``VQA_INTERP_HOME`` or ``.vqa-interp``)."""
    return Path(os.environ.get("VQA_INTERP_HOME", ".vqa-interp"))


def remember_store(home: str | Path, uri: str) -> None:
    """Add ``uri`` to the stores remembered under ``home`` (a run that cannot write it still runs)."""
    uri = absolute_uri(uri)
    path = Path(home) / STORES_FILE
    try:
        if uri in known_stores(home):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:  # one short line: an atomic append
            out.write(uri + "\n")
    except OSError:
        pass


def known_stores(home: str | Path) -> list[str]:
    """The stores remembered under ``home``, oldest first."""
    try:
        lines = (Path(home) / STORES_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


def store_exists(uri: str) -> bool:
    """Whether ``uri`` can be read without creating it (a server is assumed to exist)."""
    return not uri.startswith(SQLITE) or Path(uri[len(SQLITE) :]).is_file()


def reading_client(uri: str):
    """An ``MlflowClient`` on an existing store, or a one-line error naming the missing file."""
    from mlflow.tracking import MlflowClient

    uri = absolute_uri(uri)
    if not store_exists(uri):
        raise VqaInterpError(
            f"no tracking store at {uri[len(SQLITE) :]}: pass the store the run was logged in "
            "(--tracking-uri URI, the run's tracking.uri=...)."
        )
    return MlflowClient(tracking_uri=uri)


def locate_run(run_id: str, given: str | None, home: str | Path) -> str:
    """The store to read ``run_id`` from: ``given`` when set (checked to exist); else the first of
    the default store and the remembered ones that holds the run."""
    from vqa_interp.tracking.store import find_run

    if given:
        reading_client(given)
        return absolute_uri(given)
    searched = [u for u in dict.fromkeys([absolute_uri(DEFAULT_URI), *known_stores(home)]) if store_exists(u)]
    for uri in searched:
        try:
            find_run(reading_client(uri), run_id)
        except VqaInterpError:
            continue
        return uri
    where = ", ".join(searched) if searched else "none exists"
    raise VqaInterpError(
        f"run {run_id!r} is in none of the stores this project knows ({where}): pass "
        "--tracking-uri URI, the tracking.uri=... the run was logged with."
    )


def report_command(uri: str, run_id: str) -> str:
    """The command that writes the report of ``run_id`` (its store named unless it is the default)."""
    uri = absolute_uri(uri)
    store = "" if uri == absolute_uri(DEFAULT_URI) else f" --tracking-uri {uri}"
    return f"python -m vqa_interp.report {run_id[:8]}{store}"
