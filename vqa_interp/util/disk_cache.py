"""One small on-disk cache for every stage that keeps what it computed: entries keyed by a signature
of what they depend on, versioned, written atomically.

``DiskCache(root, kind, version)`` keeps entries under ``root/kind/``; an entry's name is the first
24 hex digits of the sha256 of ``{**depends_on, "version": version}`` (plus a part name and a suffix),
so raising ``version`` when a stage's output changes retires every old entry without deleting it.
A killed writer leaves no half-written file (:func:`~vqa_interp.util.locking.write_atomic`).
Used by the predictions, the score and reference tables, the explain stage and the figures; the map
cache (:mod:`vqa_interp.attribution.cache`) adds its claim protocol on top of the same writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vqa_interp.util.locking import write_atomic
from vqa_interp.util.signature import signature

# text columns of the cached tables: read back as text (an answer "2" stays a string)
TEXT_COLUMNS = ("question", "answer", "answer_type", "prediction", "method", "target", "target_answer", "map_key",
                "reference", "undefined", "token", "source", "curve")


class DiskCache:
    """Entries of one kind: ``root/kind/<key>[_part]<suffix>``."""

    def __init__(self, root: str | Path, kind: str, version: int):
        self.folder = Path(root) / kind
        self.version = version

    def key(self, depends_on: dict) -> str:
        return signature({**depends_on, "version": self.version})[:24]

    def path(self, depends_on: dict, part: str = "", suffix: str = ".csv") -> Path:
        return self.folder / f"{self.key(depends_on)}{'_' + part if part else ''}{suffix}"

    def exists(self, depends_on: dict, part: str = "", suffix: str = ".csv") -> bool:
        return self.path(depends_on, part, suffix).exists()

    def read_table(self, depends_on: dict, part: str = "", columns: Sequence[str] = ()):
        """The cached table, or None when it is missing or lacks ``columns``. An entry written from an
        empty table reads back as an empty one."""
        import pandas as pd

        path = self.path(depends_on, part)
        if not path.exists():
            return None
        if path.stat().st_size <= 1:
            return pd.DataFrame()
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""],
                            dtype={c: str for c in TEXT_COLUMNS})
        if not set(columns) <= set(frame.columns):
            return None
        if "undefined" in frame:
            frame["undefined"] = frame["undefined"].fillna("").astype(str)
        return frame

    def write_table(self, depends_on: dict, frame, part: str = "") -> None:
        write_atomic(self.path(depends_on, part), lambda tmp: frame.to_csv(tmp, index=False))

    def entry_folder(self, depends_on: dict) -> Path:
        """A folder entry (several files made together, e.g. rendered figures)."""
        return self.folder / self.key(depends_on)
