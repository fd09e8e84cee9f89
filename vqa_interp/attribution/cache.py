"""Content-addressed, on-disk cache of attribution maps, one entry per map.

A folder is named by the signature of what every map in it depends on: the checkpoint digest, the
method and its options, the channel reduction and the input geometry; an entry inside by what the
one map depends on: question id, target answer index and the example's digest (question text and
image bytes). So a run over another selection (``data.limit``, ``question_ids``, shards) takes the
maps that exist, and k, confidence thresholds and scoring options never recompute a map.
Entries are ``.map`` files, an ``.npy`` array under a line holding its sha256, written atomically
(temporary file + rename; :func:`~vqa_interp.util.disk_cache.write_digested`), so a killed run
leaves no half-written entry, and an entry cut short, edited or swapped with another fails its
digest: it is named in a warning and computed again. A map being computed is *claimed*: its computing process holds an exclusive
``flock`` on ``<key>.claim`` (:class:`~vqa_interp.util.locking.HeldLock`, naming host, process and
time for people). A second run that needs the map waits for it; the kernel drops the lock when its
holder dies, however it dies (SIGKILL, the end of a container whose PID 1 it was), and the waiting
run then computes the map itself.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from vqa_interp.errors import DataError
from vqa_interp.util.disk_cache import read_digested, write_digested
from vqa_interp.util.locking import HeldLock, lock_is_held, write_atomic
from vqa_interp.util.signature import signature


class MapCache:
    """One map set: ``root/<signature>/<key>.map`` plus ``key.json`` describing the signature."""

    def __init__(self, root: str | Path, depends_on: dict):
        self.signature = signature(depends_on)
        self.folder = Path(root) / self.signature[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        description = self.folder / "key.json"
        if not description.exists():
            write_atomic(description, lambda tmp: Path(tmp).write_text(json.dumps(depends_on, indent=1, default=str)))
        self.hits = 0  # maps taken from the cache (including those another run was computing)
        self.misses = 0  # maps computed by this run
        self.waited = 0  # maps this run waited for while another run computed them
        self.repaired = 0
        self._held: dict[str, HeldLock] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.map"

    # -- claims: one process computes a map, others wait for it
    def _claim_path(self, key: str) -> Path:
        return self.folder / f"{key}.claim"

    def claim(self, key: str) -> bool:
        """True when this process may compute ``key`` (it now holds the claim's lock); False while
        another live process holds it."""
        if key in self._held:
            return True
        lock = HeldLock(self._claim_path(key))
        if not lock.acquire(f"{socket.gethostname()} {os.getpid()} {time.time():.0f}"):
            return False
        self._held[key] = lock
        return True

    def release(self, key: str) -> None:
        lock = self._held.pop(key, None)
        if lock is not None:
            lock.release()

    def claimed_by_other(self, key: str) -> bool:
        """Whether a live process other than this one holds ``key``'s claim (its map is being computed)."""
        return key not in self._held and bool(lock_is_held(self._claim_path(key)))

    def claimant(self, key: str) -> str:
        """Who holds ``key``'s claim and for how long, for people (``"" when unknown``)."""
        try:
            host, pid, since = self._claim_path(key).read_text().split()
            return f"process {pid} on {host}, for {time.time() - float(since):.0f} s"
        except (OSError, ValueError):
            return ""

    def has(self, key: str) -> bool:
        """True for an entry whose content matches its digest. A damaged one (cut short, edited,
        swapped) is removed with a warning naming it, so that the map is computed again."""
        path = self.path(key)
        if not path.exists():
            return False
        if self._payload(key) is not None:
            return True
        self.repaired += 1
        return False

    def _payload(self, key: str) -> bytes | None:
        return read_digested(self.path(key), "map cache entry")

    def load(self, key: str) -> np.ndarray:
        """``[S, S]`` float32 (a :class:`~vqa_interp.errors.DataError` if the entry was damaged since
        :meth:`has` checked it)."""
        payload = self._payload(key)
        if payload is None:
            raise DataError(
                f"map cache entry {self.path(key)} was damaged while the run used it; run the same "
                "command again to compute it anew"
            )
        return np.load(io.BytesIO(payload))

    def store(self, key: str, array: np.ndarray, extras: dict[str, float] | None = None) -> None:
        """Write a map ``[S, S]`` (and its per-map diagnostics, if any, beside it as JSON)."""
        if extras:
            write_atomic(self.folder / f"{key}.json", lambda tmp: Path(tmp).write_text(json.dumps(extras)))
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array, np.float32))
        write_digested(self.path(key), buffer.getvalue())
        self.release(key)

    def extras(self, key: str) -> dict[str, float]:
        """The per-map diagnostics stored with a map ({} when none)."""
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else {}
