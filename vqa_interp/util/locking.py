"""Inter-process locks and atomic file writes, shared by every stage that writes to disk."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Hydra launchers run jobs as separate processes; this keeps two of them from generating
    the dataset or training the model at the same time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename into ``path``: a killed writer leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 whatever the umask: give the file the mode an open() would have, so a
        # shared cache or model folder stays readable by the group the umask allows
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HeldLock:
    """An exclusive ``flock`` on a file, held from :meth:`acquire` until :meth:`release` or the
    holder's death: the kernel drops the lock of a process that dies however it dies (SIGKILL, the
    end of its container), so liveness never depends on a process ID (PID 1 of every container is
    "alive" on the host's view of IDs, and IDs are reused). ``note`` is written into the file for
    people (who holds it, since when)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle = None

    def acquire(self, note: str = "") -> bool:
        """True when this process now holds the lock; False while another live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            try:  # the file was replaced meanwhile (its holder released and unlinked it): try again
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                handle.seek(0)
                handle.truncate()
                handle.write(note)
                handle.flush()
                self.handle = handle
                return True
            handle.close()
        return False

    def release(self, remove: bool = True) -> None:
        """Drop the lock (and, by default, its file: unlinked first, so no one locks a stale inode)."""
        if self.handle is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self.handle.close()
        self.handle = None


def lock_is_held(path: str | Path) -> bool | None:
    """Whether a live process holds ``path``'s lock (True), nobody does (False), or the file is not
    there (None). Never takes the lock for longer than the test."""
    try:
        handle = open(path, "r")
    except FileNotFoundError:
        return None
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False
