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
            raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")
        signal.signal(signal.SIGTERM, handler)


_INTERRUPTED: list[bool] = []


def mark_interrupted() -> None:
    """Remember that this process was interrupted (Ctrl-C, SIGTERM): a sweep parent closed at exit
    then ends KILLED, not FAILED."""
    _INTERRUPTED.append(True)


def was_interrupted() -> bool:
    return bool(_INTERRUPTED)
