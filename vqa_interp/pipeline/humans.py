"""Scoring maps against one question's human maps: the shared step of the method's maps, the floors
and the ceiling (all through the same scorer, :mod:`vqa_interp.metrics`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vqa_interp.metrics import PreparedMap, ScoringOptions, prepare_map, resize_maps, run_metrics
from vqa_interp.metrics.engine import average_defined, score_at_ks


def scoring_options(settings) -> ScoringOptions:
    """The scorer's options of a run (``k``, ``preprocessing.*``, ``scoring.tie_policy`` / ``dice``)."""
    s = settings.scoring
    return ScoringOptions(k=s.k, size=s.size, steps=s.steps, eps=s.eps, tie_policy=s.tie_policy, dice=s.dice,
                          resample=s.resample)


def score_maps_against_humans(maps: np.ndarray, humans: np.ndarray, options: ScoringOptions, metrics: Sequence[str],
                              ks: Sequence[float], device: str | None = None) -> dict[float, list[dict]]:
    """Each map ``[T, S, S]`` (or an already prepared :class:`PreparedMap`) against the human maps
    ``[U, S, S]`` (both resized to ``options.size``),
    every metric averaged over the humans whose pair is defined: ``k -> [T rows]``.

    Each human map is prepared once for all the maps and every map is sorted once for all of ``ks``.
    ``device``: score in torch on that device, all pairs in one batch; None: NumPy.
    """
    if device is not None:
        from vqa_interp.metrics.batch import score_batch

        maps = np.stack([m.values.reshape(m.shape) if isinstance(m, PreparedMap) else m for m in maps])
        n_maps, n_humans = len(maps), len(humans)
        pairs = score_batch(np.repeat(maps, n_humans, axis=0), humans, np.tile(np.arange(n_humans), n_maps), options,
                            metrics, ks, device=device)
        return {k: [average_defined(rows[t * n_humans:(t + 1) * n_humans], metrics) for t in range(n_maps)]
                for k, rows in pairs.items()}
    prepared_h = [prepare_map(h, options) for h in humans]
    out: dict[float, list[dict]] = {k: [] for k in ks}
    for m in maps:
        prepared = m if isinstance(m, PreparedMap) else prepare_map(m, options)
        for k, row in score_at_ks(prepared, prepared_h, options, metrics, ks).items():
            out[k].append(row)
    return out


def human_ceiling(annotator_maps: np.ndarray, options: ScoringOptions,
                  metrics: Sequence[str] | None = None, ks: Sequence[float] | None = None) -> dict | None:
    """Leave-one-annotator-out agreement: each annotator's map ``[S, S]`` (as the "attribution")
    against the mean of the others (as the "human"), every metric averaged over the annotators.
    None for a question with one annotator (no ceiling can be computed). With ``ks``: a dict
    ``k -> row`` (each map sorted once for all of them)."""
    if len(annotator_maps) < 2:
        return None
    resized = resize_maps(annotator_maps, options.size, options.resample)
    names = tuple(metrics or run_metrics())
    pairs = []
    for i in range(len(resized)):
        # the mean of the others, rounded to float32 like every other map (so it sorts in linear time)
        others = np.delete(resized, i, axis=0).mean(axis=0).astype(np.float32).astype(np.float64)
        pairs.append((prepare_map(resized[i], options), prepare_map(others, options)))
    at_ks = ks or (options.k,)
    per_pair = [score_at_ks(a, [h], options, names, at_ks) for a, h in pairs]
    at = {k: average_defined([row[k] for row in per_pair], names) for k in at_ks}
    return at if ks is not None else at[options.k]
