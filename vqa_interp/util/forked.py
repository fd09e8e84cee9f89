"""One function call in a forked process, its result brought back by pickle: a run scores its maps
(NumPy, one core) in a child while the parent explains the model (torch) on the other core, and
the child then takes explain batches the parent has not claimed (torch on one thread: with one
intra-op thread no OpenMP team is started in the child, which is what makes torch safe after a
fork, as in a DataLoader worker).

The child starts from a copy of the parent's memory (nothing is sent to it), restores the default
SIGINT/SIGTERM handlers (so a signal meant for the run never runs the parent's handlers in the
child, e.g. marking the MLflow run KILLED), dies with its parent (``PR_SET_PDEATHSIG``), writes
``("ok", result)`` or ``("error", exception, traceback)`` to a file and leaves with ``os._exit``
(no ``atexit`` hook, no buffer flush). It must not touch the MLflow store, more than one torch
thread, a GPU or the parent's open files; NumPy work, one-thread CPU torch work and files of its
own are what it is for.
Where ``fork`` is missing (not Linux), :func:`start` calls the function in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

from vqa_interp.util.progress import hide_bars
from vqa_interp.util.scratch import scratch_dir

_PR_SET_PDEATHSIG = 1


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def wait_for(pid: int, on_error: Callable[[], None]) -> int:
    """Block until child ``pid`` ends; its exit code (negative: the signal that ended it). Anything
    raised while waiting (a signal's handler) calls ``on_error`` (which stops the child), then goes on."""
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        on_error()
        raise
    return os.waitstatus_to_exitcode(status)


def exit_code_if_ended(pid: int) -> int | None:
    """Child ``pid``'s exit code if it has ended (it is then reaped), else None; never blocks."""
    ended, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if ended else None


def kill_and_reap(pid: int) -> None:
    """End child ``pid`` (SIGKILL) and reap it; nothing if it is gone already."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def die_with_parent() -> None:
    """In a forked child: the kernel sends it SIGKILL when its parent dies, however the parent dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Forked:
    """A call running in a forked child (``pid``), or already made here (``pid`` None)."""

    def __init__(self, pid: int | None, path: Path, value: Any = None):
        self.pid, self.path, self.value, self.status = pid, path, value, None

    def result(self) -> Any:
        """Wait for the call and return its result; its exception is raised again here (with the
        child's traceback as its note); a child that died without a word raises ``RuntimeError``."""
        if self.pid is None:
            return self.value
        if self.status is None:
            self.status = wait_for(self.pid, self.cancel)
        try:
            with open(self.path, "rb") as handle:
                outcome = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError):
            raise RuntimeError(f"the forked process (pid {self.pid}) ended with status {self.status} and no result")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if outcome[0] == "error":
            error = outcome[1]
            error.add_note(f"(raised in the forked process {self.pid}:)\n{outcome[2]}")
            raise error
        return outcome[1]

    def cancel(self) -> None:
        """Stop the child (the parent failed) and reap it."""
        if self.pid is not None and self.status is None:
            kill_and_reap(self.pid)
            self.status = -9
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def start(call: Callable[[], Any], fork: bool = True) -> Forked:
    """Run ``call()`` in a forked child (``fork`` and Linux) or here; returns at once in the first
    case. Collect with :meth:`Forked.result`; on any error of the parent, :meth:`Forked.cancel`."""
    if not (fork and can_fork()):
        return Forked(None, Path(), call())
    handle, name = tempfile.mkstemp(prefix="forked-", suffix=".pickle", dir=scratch_dir())
    os.close(handle)
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            die_with_parent()
            hide_bars()  # the parent's bar is the one on the terminal
            try:
                outcome = ("ok", call())
            except BaseException as error:  # brought back to the parent, raised there
                outcome = ("error", error, traceback.format_exc())
            with open(name, "wb") as out:
                try:
                    pickle.dump(outcome, out)
                except Exception as error:  # an unpicklable result or exception: its text instead
                    out.seek(0)
                    out.truncate()
                    pickle.dump(
                        (
                            "error",
                            RuntimeError(f"{type(error).__name__}: {error}"),
                            outcome[-1] if outcome[0] == "error" else traceback.format_exc(),
                        ),
                        out,
                    )
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return Forked(pid, Path(name))
