"""Ctrl-C and SIGTERM: the open run ends KILLED, and a sweep parent closed at exit knows it was
interrupted."""

from __future__ import annotations


def raise_on_sigterm() -> None:
    """Handle SIGTERM like Ctrl-C: the open run ends KILLED, the maps already made stay cached."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame):
            mark_interrupted()
            _TERMINATED.append(signum)
            raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

        signal.signal(signal.SIGTERM, handler)


_INTERRUPTED: list[str | None] = []
_TERMINATED: list[int] = []


def exit_code() -> int:
    """The exit status of an interrupted process, as a shell reports a signal: 143 after SIGTERM,
    130 after Ctrl-C (SIGINT)."""
    return 143 if _TERMINATED else 130


def mark_interrupted(run_id: str | None = None) -> None:
    """Remember that this process was interrupted (Ctrl-C, SIGTERM), and in which open run: a sweep
    parent closed at exit then ends KILLED, not FAILED, and says which job's run ended with it."""
    _INTERRUPTED.append(run_id)


def interrupted_line(parent_id: str | None = None) -> str:
    """The one line a user reads after Ctrl-C or SIGTERM: which run ended KILLED, that nothing
    computed is lost, and how to go on."""
    run_id = next((r for r in reversed(_INTERRUPTED) if r), None)
    parts = [f"MLflow run {run_id} ends KILLED" if run_id else "no run of this job had opened"]
    if parent_id:
        parts.append(f"sweep parent {parent_id} closed KILLED")
    again = (
        "the same command resumes the sweep, reusing its finished jobs"
        if parent_id
        else "the same command resumes from them"
    )
    return f"interrupted: {'; '.join(parts)}; the maps made so far stay cached and {again}."


def was_interrupted() -> bool:
    return bool(_INTERRUPTED)
