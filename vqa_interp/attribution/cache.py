"""Content-addressed, on-disk cache of attribution maps.

A map set is named by the signature of everything its maps depend on: data selection digest,
checkpoint digest, method and its options, channel reduction, input geometry, target policy.
k, confidence thresholds and scoring options are not part of it, so a sweep over them reuses
the maps. Entries are ``.npy`` files written atomically (temporary file + rename), so a killed
run leaves no half-written entry.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from vqa_interp.util.locking import write_atomic
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
        self.hits = 0
        self.misses = 0
        self.repaired = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

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

    def extras(self, key: str) -> dict[str, float]:
        """The per-map diagnostics stored with a map ({} when none)."""
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else {}
