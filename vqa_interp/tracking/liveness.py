"""Is a run's process alive? A run records its host, process ID and the path of a lock its process
holds until it dies; a RUNNING run nobody holds the lock of is an orphan, closed as KILLED the next
time the tool opens a run. The lock (an ``flock``, dropped by the kernel however the process ends)
makes the answer right where a process ID cannot: PID 1 of every container is "alive", and IDs are
reused."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG, ALIVE_TAG = "process_host", "process_id", "process_alive_lock"
_ALIVE: dict[int, object] = {}  # this process's liveness lock, by process ID (a forked child takes its own)


def liveness_dir(uri: str, artifact_root: str) -> Path:
    """Where processes that record runs in the store ``uri`` (resolved) hold their liveness locks: beside a SQLite store (every run
    that shares the store sees that folder, from a container too), else in the local artifact root,
    else in the home folder."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent / ".alive"
    root = str(artifact_root)
    if "://" not in root:
        return Path(root).resolve() / ".alive"
    return Path(os.environ.get("VQA_INTERP_HOME", Path.home() / ".vqa-interp")).resolve() / "alive"


def liveness_tags(uri: str, artifact_root: str) -> dict[str, str]:
    """The tags that say whether a run's process is alive: host, process ID and the path of a lock this
    process holds until it dies (:class:`~vqa_interp.util.locking.HeldLock`: the kernel drops it
    however the process ends, so a container's PID 1 that was killed is seen as dead)."""
    from vqa_interp.util.locking import HeldLock

    lock = _ALIVE.get(os.getpid())
    if lock is None:
        folder = liveness_dir(uri, artifact_root)
        lock = HeldLock(folder / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.lock")
        try:
            if lock.acquire(f"{socket.gethostname()} {os.getpid()}"):
                _ALIVE[os.getpid()] = lock
                atexit.register(lock.release)  # a normal exit leaves no lock file (a killed one: close_orphans)
        except OSError:  # a read-only place: the process ID alone says whether it lives
            lock = None
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    if lock is not None and lock.handle is not None:
        tags[ALIVE_TAG] = str(lock.path)
    return tags


def orphaned(run) -> bool:
    """Whether a RUNNING run's process is gone: nobody holds its liveness lock any more (whatever its
    process ID, in whatever PID namespace), or, where the lock is not visible from here, it ran on
    this host and its process ID is not alive."""
    from vqa_interp.util.locking import lock_is_held, process_alive

    tags = run.data.tags
    lock = tags.get(ALIVE_TAG, "")
    if lock and Path(lock).parent.is_dir():
        held = lock_is_held(lock)
        return not held  # None: the file is gone, its process ended
    pid = tags.get(PID_TAG, "")
    return (
        tags.get(HOST_TAG) == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not process_alive(int(pid))
    )


def close_orphans(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose process is gone (killed with SIGKILL, a lost
    machine...): nothing is left RUNNING once the tool runs again. Returns their IDs."""
    host = socket.gethostname()
    closed = []
    try:
        running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    except Exception:  # never let the bookkeeping of old runs stop a new one
        return closed
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if orphaned(run):
            with contextlib.suppress(Exception):
                client.set_tag(
                    run.info.run_id,
                    "error",
                    f"process {pid} on {run.data.tags.get(HOST_TAG, host)} ended without closing the run",
                )
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
            with contextlib.suppress(OSError):  # its dead process's lock file
                if run.data.tags.get(ALIVE_TAG):
                    os.remove(run.data.tags[ALIVE_TAG])
    if closed:
        log.warning("marked %d orphaned run(s) KILLED (their process is gone): %s", len(closed), ", ".join(closed))
    return closed
