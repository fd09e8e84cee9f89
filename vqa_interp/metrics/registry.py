"""The metric registry: one entry per metric, filled by :func:`metric` at import of its family file.

A metric declares what the rest of the tool needs to know about it, so that scoring, the slow
reference tests, the analysis family, the figures, the sweep comparison and the report all read
their metric lists from here:

- ``compute(a, h) -> float``: the fast score of two :class:`~vqa_interp.metrics.prepare.PreparedMap`
  (``a`` the attribution map, ``h`` the human map), from the features named in ``needs``;
- ``reference(a, h, options) -> float``: the slow, obvious computation from the two resized maps
  ``[size, size]`` (float64), written next to the fast one and used only by tests;
- ``needs``: the prepared features it reads (``minmax``, ``weights``, ``ranks``, ``region``, ...);
- ``higher_is_better`` and ``range`` (``(low, high)``, ``inf`` where unbounded);
- ``in_family``: whether it belongs to the primary family the analysis adjusts over (False for a
  metric that, at the default settings, is a function of another one in the family, see
  :data:`REDUNDANT_NOTE`, and for the secondary saliency-benchmark and localisation metrics);
- ``slow``: a run computes it only when ``scoring.metrics`` names it (``score()`` computes all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from vqa_interp.errors import ConfigError

# columns of a map's scores against the leave-one-out means of the annotators (the ceiling's protocol)
LOO_PREFIX = "loo/"

REDUNDANT_NOTE = (
    "With equal-size regions (tie_policy fractional or index), precision = recall = F1 = "
    "disc_intersect / n and IoU = F1 / (2 - F1): one number in five columns. IoU stands for them "
    "in the tested family; the others stay in the per-example table."
)


@dataclass(frozen=True)
class Metric:
    """One registered metric (see the module docs)."""

    name: str
    compute: Callable
    reference: Callable
    needs: tuple[str, ...]
    higher_is_better: bool
    range: tuple[float, float]
    family: str
    description: str
    in_family: bool = True
    slow: bool = False  # a run computes it only when scoring.metrics names it
    headline: int = 0  # 1, 2, ...: reported first, in this order (see headline_metrics); 0: not
    k_free_when: Callable | None = None  # options -> True where it reads no region after all (soft Dice)

    def depends_on_k(self, options=None) -> bool:
        """Whether the score changes with ``k`` under scoring ``options`` (a ScoringOptions; None:
        under some options): whether it reads a top-k region."""
        if options is not None and self.k_free_when is not None and self.k_free_when(options):
            return False
        return any(n in ("region", "sparse_region") for n in self.needs)

    @property
    def bounded(self) -> bool:
        return all(math.isfinite(v) for v in self.range)


REGISTRY: dict[str, Metric] = {}


def metric(
    name: str,
    *,
    needs: tuple[str, ...],
    range: tuple[float, float],
    reference: Callable,
    higher_is_better: bool = True,
    in_family: bool = True,
    family: str = "",
    slow: bool = False,
    headline: int = 0,
    k_free_when: Callable | None = None,
):
    """Decorator: register the fast function as metric ``name`` (its docstring's first line is the
    description; ``family`` defaults to the defining module's name)."""

    def wrap(compute: Callable) -> Callable:
        REGISTRY[name] = Metric(
            name=name,
            compute=compute,
            reference=reference,
            needs=tuple(needs),
            higher_is_better=higher_is_better,
            range=tuple(range),
            family=family or compute.__module__.rsplit(".", 1)[-1],
            description=(compute.__doc__ or name).strip().split("\n")[0],
            in_family=in_family,
            slow=slow,
            headline=headline,
            k_free_when=k_free_when,
        )
        return compute

    return wrap


BATCHED: dict[str, Callable] = {}


def batched(name: str):
    """Decorator: register the batched torch version of metric ``name``: ``f(a, h) -> [B]`` tensor of
    two :class:`~vqa_interp.metrics.batch.MapBatch` (pair ``i`` is row ``i`` of both). Used by the
    device scorer; a metric without one is scored there by its NumPy version, pair by pair."""

    def wrap(function: Callable) -> Callable:
        BATCHED[name] = function
        return function

    return wrap


def metric_names(include_slow: bool = True) -> tuple[str, ...]:
    """Every registered metric, in registration order (without the slow ones if asked)."""
    return tuple(n for n, m in REGISTRY.items() if include_slow or not m.slow)


def selected(names, key: str = "metrics") -> tuple[str, ...]:
    """``names`` checked against the registry (None: every registered metric), in the given order;
    the one check of metric names (raises :class:`ConfigError` naming ``key``)."""
    if names is None:
        return metric_names()
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"{key}={list(names)}: {unknown} unknown; expected names from {list(REGISTRY)}"
            + (" or 'all'." if key == "scoring.metrics[]" else ".")
        )
    return tuple(names)


def run_metrics(selection=None) -> tuple[str, ...]:
    """The metrics a run computes: ``scoring.metrics`` (a list of names, or ``"all"``), by default
    every registered metric except the slow ones; in registry order."""
    if selection is None:
        return metric_names(include_slow=False)
    if isinstance(selection, str):
        selection = (selection,)
    if list(selection) == ["all"]:
        return metric_names()
    chosen = set(selected([m for m in selection if m != "all"], "scoring.metrics[]"))
    return metric_names() if "all" in selection else tuple(m for m in REGISTRY if m in chosen)


def headline_metrics(n: int | None = None) -> tuple[str, ...]:
    """The metrics a run reports first (``headline`` rank 1, 2, ...: rank correlation, IoU, Dice):
    the floors' metrics, the sanity checks' human agreement, plausibility vs faithfulness (the first
    ``n``)."""
    ranked = sorted((m.headline, n_) for n_, m in REGISTRY.items() if m.headline)
    return tuple(name for _, name in ranked)[:n]


def family_metrics() -> tuple[str, ...]:
    """The metrics of the pre-specified primary family the analysis adjusts over: the paper's
    non-redundant ones (rank_corr, intersect, iou, dice). The other metrics are reported with raw
    p-values as secondary outcomes (registered with ``in_family=False``)."""
    return tuple(n for n, m in REGISTRY.items() if m.in_family)


def bounded_metrics() -> tuple[str, ...]:
    """The metrics with a finite range (drawn on shared axes in figures)."""
    return tuple(n for n, m in REGISTRY.items() if m.bounded)


def get(name: str) -> Metric:
    return REGISTRY[selected([name], "metric")[0]]
