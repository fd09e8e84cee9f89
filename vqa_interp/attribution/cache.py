"""Content-addressed, on-disk cache of attribution maps.

A map set is named by the signature of everything its maps depend on: data selection digest,
checkpoint digest, method and its options, channel reduction, input geometry, target policy.
k, confidence thresholds and scoring options are not part of it, so a sweep over them reuses
the maps. Entries are ``.npy`` files written atomically (temporary file + rename), so a killed
run leaves no half-written entry.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vqa_interp.util.locking import write_atomic
from vqa_interp.util.signature import signature


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

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

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
