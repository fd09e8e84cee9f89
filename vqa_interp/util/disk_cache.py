"""One small on-disk cache for every stage that keeps what it computed: entries keyed by a signature
of what they depend on, versioned, written atomically.

``DiskCache(root, kind, version)`` keeps entries under ``root/kind/``; an entry's name is the first
24 hex digits of the sha256 of ``{**depends_on, "version": version}`` (plus a part name and a suffix),
so raising ``version`` when a stage's output changes retires every old entry without deleting it.
A killed writer leaves no half-written file (:func:`~vqa_interp.util.locking.write_atomic`), and
every entry carries the sha256 of its name and content in its first line, written in the same atomic write
and checked on every read (:func:`read_digested`): an entry cut short, edited or swapped with
another is reported in one warning naming it and computed again, never read.
Used by the predictions, the score and reference tables, the explain stage and the figures; the map
cache (:mod:`vqa_interp.attribution.cache`) adds its claim protocol on top of the same writes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Sequence

from vqa_interp.util.locking import write_atomic
from vqa_interp.util.signature import signature

log = logging.getLogger(__name__)
DIGEST_PREFIX = b"# vqa-interp sha256="


def content_digest(name: str, payload: bytes) -> str:
    """sha256 of an entry's name and content: an entry moved under another entry's name fails it too."""
    return hashlib.sha256(name.encode() + b"\0" + payload).hexdigest()


def write_digested(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` under a first line holding its :func:`content_digest`, atomically (both or
    nothing)."""
    path = Path(path)
    header = DIGEST_PREFIX + content_digest(path.name, payload).encode() + b"\n"
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(header + payload))


def read_digested(path: str | Path, what: str = "cache entry") -> bytes | None:
    """The payload of a file written by :func:`write_digested`, or None when it is missing. A file
    whose digest line is missing or does not match its content is removed with a warning naming it
    (it will be computed again)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    header, _, payload = raw.partition(b"\n")
    if header.startswith(DIGEST_PREFIX) and header[len(DIGEST_PREFIX) :].decode(errors="replace") == content_digest(
        path.name, payload
    ):
        return payload
    log.warning(
        "%s %s fails its content digest (cut short, changed or replaced after it was written): removed, "
        "it will be computed again",
        what,
        path,
    )
    path.unlink(missing_ok=True)
    return None


# text columns of the cached tables: read back as text (an answer "2" stays a string)
TEXT_COLUMNS = (
    "question",
    "answer",
    "answer_type",
    "prediction",
    "method",
    "target",
    "target_answer",
    "map_key",
    "reference",
    "undefined",
    "token",
    "source",
    "curve",
)


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
        """The cached table, or None when it is missing, fails its digest (with a warning) or lacks
        ``columns``. An entry written from an empty table reads back as an empty one."""
        import pandas as pd

        payload = read_digested(self.path(depends_on, part), f"cached {self.folder.name} table")
        if payload is None:
            return None
        if len(payload.strip()) == 0:
            return pd.DataFrame()
        frame = pd.read_csv(
            io.BytesIO(payload), keep_default_na=False, na_values=[""], dtype={c: str for c in TEXT_COLUMNS}
        )
        if not set(columns) <= set(frame.columns):
            return None
        if "undefined" in frame:
            frame["undefined"] = frame["undefined"].fillna("").astype(str)
        return frame

    def write_table(self, depends_on: dict, frame, part: str = "") -> None:
        write_digested(self.path(depends_on, part), frame.to_csv(index=False).encode())

    def entry_folder(self, depends_on: dict) -> Path:
        """A folder entry (several files made together, e.g. rendered figures)."""
        return self.folder / self.key(depends_on)
