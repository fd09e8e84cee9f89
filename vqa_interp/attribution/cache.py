"""Content-addressed, on-disk cache of attribution maps, one entry per map.

A folder is named by the signature of what every map in it depends on: the checkpoint digest, the
method and its options, the channel reduction and the input geometry; an entry inside by what the
one map depends on: question id, target answer index and the example's digest (question text and
image bytes). So a run over another selection (``data.limit``, ``question_ids``, shards) takes the
maps that exist, and k, confidence thresholds and scoring options never recompute a map.
Entries are ``.npy`` files written atomically (temporary file + rename), so a killed run leaves no
half-written entry. A map being computed is *claimed* (``<key>.claim``, created exclusively,
naming host and process): a second run that needs it waits for it, or computes it when the claim's
process is gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

import numpy as np

from vqa_interp.util.locking import process_alive, write_atomic
from vqa_interp.util.signature import signature

log = logging.getLogger(__name__)


def entry_is_complete(path: Path) -> bool:
    """Whether an ``.npy`` file holds all the bytes its header promises (a cheap check: no data read)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            expected = handle.tell() + int(np.prod(shape)) * dtype.itemsize
    except (ValueError, OSError, EOFError):
        return False
    return path.stat().st_size == expected


class MapCache:
    """One map set: ``root/<signature>/<key>.npy`` plus ``key.json`` describing the signature."""

    def __init__(self, root: str | Path, depends_on: dict):
        self.signature = signature(depends_on)
        self.folder = Path(root) / self.signature[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        description = self.folder / "key.json"
        if not description.exists():
            write_atomic(description, lambda tmp: Path(tmp).write_text(json.dumps(depends_on, indent=1, default=str)))
        self.hits = 0        # maps taken from the cache (including those another run was computing)
        self.misses = 0      # maps computed by this run
        self.waited = 0      # maps this run waited for while another run computed them
        self.repaired = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    # -- claims: one process computes a map, others wait for it
    CLAIM_TIMEOUT_S = 3600.0   # a claim from another host older than this is taken over

    def _claim_path(self, key: str) -> Path:
        return self.folder / f"{key}.claim"

    def claim(self, key: str) -> bool:
        """True when this process may compute ``key`` (it now holds the claim); False while another
        live process holds it. A claim whose process is gone (same host) or that is older than
        :attr:`CLAIM_TIMEOUT_S` (another host) is taken over."""
        path = self._claim_path(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if not self._claim_is_stale(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{socket.gethostname()} {os.getpid()}")
            return True
        return False

    def _claim_is_stale(self, path: Path) -> bool:
        try:
            host, pid = path.read_text().split()
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return True        # gone meanwhile, or half-written by a process killed while claiming
        if host == socket.gethostname():
            return not process_alive(int(pid))
        return age > self.CLAIM_TIMEOUT_S

    def release(self, key: str) -> None:
        self._claim_path(key).unlink(missing_ok=True)

    def claimed_by_other(self, key: str) -> bool:
        """Whether a live claim by another process is on ``key`` (its map is being computed)."""
        path = self._claim_path(key)
        return path.exists() and not self._claim_is_stale(path)

    def has(self, key: str) -> bool:
        """True for a complete entry. A damaged one (truncated, not an array) is removed with a warning
        naming it, so that the map is computed again instead of blocking its config."""
        path = self.path(key)
        if not path.exists():
            return False
        if entry_is_complete(path):
            return True
        log.warning("map cache entry %s is damaged (truncated or not an .npy array): removed, it will be "
                    "computed again", path)
        path.unlink(missing_ok=True)
        self.repaired += 1
        return False

    def load(self, key: str) -> np.ndarray:
        """``[S, S]`` float32."""
        return np.load(self.path(key))

    def store(self, key: str, array: np.ndarray, extras: dict[str, float] | None = None) -> None:
        """Write a map ``[S, S]`` (and its per-map diagnostics, if any, beside it as JSON)."""
        if extras:
            write_atomic(self.folder / f"{key}.json", lambda tmp: Path(tmp).write_text(json.dumps(extras)))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, np.asarray(array, np.float32))
        write_atomic(self.path(key), write)
        self.release(key)

    def extras(self, key: str) -> dict[str, float]:
        """The per-map diagnostics stored with a map ({} when none)."""
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else {}
