"""Content signatures: a run's maps and models are named by a hash of what they depend on."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def signature(payload: Any) -> str:
    """sha256 of a canonical JSON form of ``payload`` (dict keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def short_signature(payload: Any, length: int = 12) -> str:
    return signature(payload)[:length]
