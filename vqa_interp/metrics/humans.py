"""Scoring maps against one question's human maps: the shared step of the method's maps, the floors
and the ceiling (all through the same scorer, :mod:`vqa_interp.metrics`).

Two references, each named where it is used:

- the **headline** reference (``scoring.human``): the mean of all ``n`` annotators' maps (or one
  annotator, or each in turn): what the headline scores, ``score/<metric>``, are against;
- the **leave-one-out** reference: for each annotator ``i``, the mean of the other ``n - 1``. The
  human ceiling scores annotator ``i`` against it; a map scored "like the ceiling" is scored
  against every leave-one-out mean and averaged over ``i`` (columns ``loo/<metric>``). A map that
  is one more human, drawn like the others, then scores what the ceiling scores in expectation, so
  the normalised scores and the floor/ceiling table compare like with like (a map scored against
  the mean of all ``n``, which holds less noise than a mean of ``n - 1``, would beat a human).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from vqa_interp.metrics import PreparedMap, ScoringOptions, prepare_map, resize_maps, run_metrics
from vqa_interp.metrics.engine import average_defined, score_at_ks
from vqa_interp.metrics.registry import LOO_PREFIX


def scoring_options(settings) -> ScoringOptions:
    """The scorer's options of a run (``k``, ``preprocessing.*``, ``scoring.tie_policy`` / ``dice``):
    the :class:`ScoringOptions` part of its ``ScoringSettings``."""
    s = settings.scoring
    return ScoringOptions(**{f.name: getattr(s, f.name) for f in fields(ScoringOptions)})


def _prepared(maps, options: ScoringOptions) -> list[PreparedMap]:
    return [m if isinstance(m, PreparedMap) else prepare_map(m, options) for m in maps]


def _values(maps) -> np.ndarray:
    return np.stack([m.values.reshape(m.shape) if isinstance(m, PreparedMap) else m for m in maps])


def score_maps_against_humans(
    maps, humans, options: ScoringOptions, metrics: Sequence[str], ks: Sequence[float], device: str | None = None
) -> dict[float, list[dict]]:
    """Each map ``[T, S, S]`` (or an already prepared :class:`PreparedMap`) against the human maps
    ``[U, S, S]`` (or prepared ones; both at ``options.size``),
    every metric averaged over the humans whose pair is defined: ``k -> [T rows]``.

    Each human map is prepared once for all the maps and every map is sorted once for all of ``ks``.
    ``device``: score in torch on that device, all pairs in one batch; None: NumPy.
    """
    if device is not None:
        from vqa_interp.metrics.batch import score_batch

        maps, humans = _values(maps), _values(humans)
        n_maps, n_humans = len(maps), len(humans)
        pairs = score_batch(
            np.repeat(maps, n_humans, axis=0),
            humans,
            np.tile(np.arange(n_humans), n_maps),
            options,
            metrics,
            ks,
            device=device,
        )
        return {
            k: [average_defined(rows[t * n_humans : (t + 1) * n_humans], metrics) for t in range(n_maps)]
            for k, rows in pairs.items()
        }
    prepared_h = _prepared(humans, options)
    out: dict[float, list[dict]] = {k: [] for k in ks}
    for m in maps:
        prepared = m if isinstance(m, PreparedMap) else prepare_map(m, options)
        for k, row in score_at_ks(prepared, prepared_h, options, metrics, ks).items():
            out[k].append(row)
    return out


def leave_one_out_means(annotators: np.ndarray) -> np.ndarray:
    """``[n, S, S]`` annotator maps -> ``[n, S, S]``: row ``i`` the mean of the others, rounded to
    float32 like every other map (so it sorts in linear time). Needs ``n >= 2``."""
    total = annotators.sum(axis=0, dtype=np.float64)
    n = len(annotators)
    return np.stack([((total - a) / (n - 1)).astype(np.float32).astype(np.float64) for a in annotators])


@dataclass
class QuestionHumans:
    """One question's human maps, resized and prepared once for every map scored against them.

    ``headline``: the ``scoring.human`` reference ``[U]``; ``annotators``: each annotator ``[n]``;
    ``loo``: the leave-one-out means ``[n]`` (empty for a question with one annotator)."""

    headline: list[PreparedMap]
    annotators: list[PreparedMap]
    loo: list[PreparedMap]


def question_humans(
    dataset, example, geometry, options: ScoringOptions, mode: str = "mean", annotator: int = 1
) -> QuestionHumans | None:
    """Read a question's annotator maps once and prepare both references (None: no human map, or
    no such annotator in ``annotator`` mode)."""
    each = dataset.human_maps(example, geometry, "each", 1)
    if each is None or not len(each):
        return None
    resized = resize_maps(each, options.size, options.resample)
    annotators = _prepared(resized, options)
    if mode == "each":
        headline = annotators
    elif mode == "mean":
        # the same float32 mean as Dataset.human_maps(mode="mean"), from the maps already read
        headline = _prepared(resize_maps(each.mean(axis=0, keepdims=True), options.size, options.resample), options)
    else:
        chosen = dataset.human_maps(example, geometry, mode, annotator)
        if chosen is None:
            return None
        headline = _prepared(resize_maps(chosen, options.size, options.resample), options)
    loo = _prepared(leave_one_out_means(resized), options) if len(resized) >= 2 else []
    return QuestionHumans(headline, annotators, loo)


def score_both(
    maps,
    humans: QuestionHumans,
    options: ScoringOptions,
    metrics: Sequence[str],
    ks: Sequence[float],
    device: str | None = None,
) -> dict[float, list[dict]]:
    """Each map against the headline reference, with the leave-one-out protocol's scores as
    ``loo/<metric>`` (NaN for a question with one annotator): ``k -> [T rows]``."""
    prepared = maps if device is not None else _prepared(maps, options)
    scores = score_maps_against_humans(prepared, humans.headline, options, metrics, ks, device)
    if humans.loo:
        loo = score_maps_against_humans(prepared, humans.loo, options, metrics, ks, device)
    else:
        loo = {k: [{m: float("nan") for m in metrics} for _ in range(len(maps))] for k in ks}
    return {
        k: [{**row, **{LOO_PREFIX + m: other[m] for m in metrics}} for row, other in zip(scores[k], loo[k])] for k in ks
    }


def ceiling_from(
    humans: QuestionHumans, options: ScoringOptions, metrics: Sequence[str], ks: Sequence[float]
) -> dict[float, dict] | None:
    """The human ceiling of a prepared question: each annotator against the mean of the others,
    averaged over the annotators; the same values under the headline and ``loo/`` names (the
    ceiling is leave-one-out by definition). None with one annotator."""
    if len(humans.annotators) < 2:
        return None
    per_pair = [score_at_ks(a, [h], options, metrics, ks) for a, h in zip(humans.annotators, humans.loo)]
    out = {}
    for k in ks:
        row = average_defined([pair[k] for pair in per_pair], metrics)
        out[k] = {**row, **{LOO_PREFIX + m: row[m] for m in metrics}}
    return out


def human_ceiling(
    annotator_maps: np.ndarray,
    options: ScoringOptions,
    metrics: Sequence[str] | None = None,
    ks: Sequence[float] | None = None,
) -> dict | None:
    """Leave-one-annotator-out agreement: each annotator's map ``[S, S]`` (as the "attribution")
    against the mean of the others (as the "human"), every metric averaged over the annotators.
    None for a question with one annotator (no ceiling can be computed). With ``ks``: a dict
    ``k -> row`` (each map sorted once for all of them)."""
    if len(annotator_maps) < 2:
        return None
    resized = resize_maps(annotator_maps, options.size, options.resample)
    names = tuple(metrics or run_metrics())
    humans = QuestionHumans([], _prepared(resized, options), _prepared(leave_one_out_means(resized), options))
    at_ks = ks or (options.k,)
    at = {
        k: {m: row[m] for m in (*names, "undefined")} for k, row in ceiling_from(humans, options, names, at_ks).items()
    }
    return at if ks is not None else at[options.k]


def score_leave_one_out(
    maps: np.ndarray, annotator_maps: np.ndarray, options: ScoringOptions, metrics: Sequence[str] | None = None
) -> list[dict]:
    """Maps ``[T, H, W]`` scored like the human ceiling: against each annotator's leave-one-out mean
    (``annotator_maps [n, H', W']``, n >= 2), averaged over the annotators; one row per map."""
    if len(annotator_maps) < 2:
        raise ValueError(f"the leave-one-out protocol needs at least 2 annotator maps; got {len(annotator_maps)}")
    names = tuple(metrics or run_metrics())
    resized = resize_maps(annotator_maps, options.size, options.resample)
    loo = _prepared(leave_one_out_means(resized), options)
    rows = score_maps_against_humans(
        resize_maps(maps, options.size, options.resample), loo, options, names, (options.k,)
    )
    return rows[options.k]
