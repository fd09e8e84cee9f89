"""The slow, obvious per-pair scorer: each registered metric's own ``reference`` (written next to
its fast version), called on freshly resized maps. The test oracle of the fast scorer; nothing is
shared between pairs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vqa_interp.metrics.prepare import ScoringOptions, resize_maps
from vqa_interp.metrics.registry import REGISTRY, metric_names


def score_pair_reference(
    attribution: np.ndarray, human: np.ndarray, options: ScoringOptions, metrics: Sequence[str] | None = None
) -> dict[str, float]:
    """The selected metrics (default all) for one pair ``[H, W]`` / ``[H', W']``, the obvious way."""
    names = tuple(metrics) if metrics is not None else metric_names()
    a, h = (resize_maps(m[None], options.size, options.resample)[0] for m in (attribution, human))
    for name, m in (("attribution", a), ("human", h)):
        if not np.isfinite(m).all():
            return {**dict.fromkeys(names, float("nan")), "undefined": f"{name}_non_finite"}
    for name, m in (("attribution", a), ("human", h)):
        if m.max() == m.min():
            return {**dict.fromkeys(names, float("nan")), "undefined": f"{name}_constant"}
    return {**{n: float(REGISTRY[n].reference(a, h, options)) for n in names}, "undefined": ""}
