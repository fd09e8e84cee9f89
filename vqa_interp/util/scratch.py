"""This process's scratch folder: every temporary file the tool writes (a forked call's pickled
result, a drawing process's figures) lives in one folder under the system's temporary directory,
``vqa-interp-scratch-<pid>-<random>``, holding a lock its process keeps until it dies.

The folder is removed at a normal exit; a process killed with SIGKILL cannot remove it, so the next
process that asks for its own folder first removes every folder whose lock nobody holds any more
(its process is gone, whatever its ID). Children forked with ``PR_SET_PDEATHSIG`` die with their
parent, so nothing stays behind for long.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from vqa_interp.util.locking import HeldLock, lock_is_held

PREFIX = "vqa-interp-scratch-"
OWNER = ".owner.lock"
_MINE: dict[int, tuple[Path, HeldLock]] = {}


def remove_stale(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders of processes that are gone (their lock is free); returns them."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(PREFIX + "*"):
        mine = _MINE.get(os.getpid())
        if mine is not None and folder == mine[0]:
            continue
        if folder.is_dir() and lock_is_held(folder / OWNER) is not True:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _remove_mine() -> None:
    mine = _MINE.pop(os.getpid(), None)
    if mine is not None:
        folder, lock = mine
        lock.release(remove=False)
        shutil.rmtree(folder, ignore_errors=True)


def scratch_dir() -> Path:
    """This process's scratch folder (made, and stale ones of dead processes removed, on first use)."""
    mine = _MINE.get(os.getpid())
    if mine is not None and mine[0].is_dir():
        return mine[0]
    with contextlib.suppress(OSError):
        remove_stale()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    lock = HeldLock(folder / OWNER)
    lock.acquire(str(os.getpid()))
    _MINE[os.getpid()] = (folder, lock)
    atexit.register(_remove_mine)
    return folder
