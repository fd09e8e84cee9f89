"""The scorer in torch, batched: the same features and metrics as :class:`PreparedMap` and the
family files, for ``B`` maps at once on any torch device (``device=cuda`` runs use it).

Every feature is float64 and computed the same way as the NumPy path (a test checks all metrics
against it to 1e-6 on CPU): the sort is ``torch.sort(stable=True)``; average ranks come from the
run boundaries of the sorted values (``cummax`` of run starts, reversed ``cummin`` of run ends);
regions follow the tie policies of :mod:`vqa_interp.metrics.prepare`. A metric registered without a
batched version (``emd``, or a plugin's) is scored by its NumPy version on the CPU.
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from vqa_interp.metrics.prepare import PreparedMap, ScoringOptions
from vqa_interp.metrics.registry import BATCHED, REGISTRY


class MapBatch:
    """``B`` resized maps ``[B, size, size]`` ready for batched scoring; features are ``[B, n]``
    tensors (``n = size * size``) or ``[B]`` per-map numbers, each computed on first use."""

    K_DEPENDENT = ("region", "region_size")

    def __init__(self, maps: torch.Tensor, options: ScoringOptions):
        self.values = maps.reshape(len(maps), -1).to(torch.float64)
        self.options = options

    # -- bookkeeping
    @cached_property
    def undefined(self) -> list[str]:
        """Per map: "" or why it cannot be scored ("non_finite", "constant")."""
        finite = torch.isfinite(self.values).all(dim=1)
        constant = self.values.amin(dim=1) == self.values.amax(dim=1)
        return [
            "" if f and not c else ("non_finite" if not f else "constant")
            for f, c in zip(finite.tolist(), constant.tolist())
        ]

    def at_k(self, k: float) -> "MapBatch":
        """The same maps for another ``k`` (k-independent features shared)."""
        if k == self.options.k:
            return self
        other = MapBatch.__new__(MapBatch)
        other.__dict__ = {key: v for key, v in self.__dict__.items() if key not in self.K_DEPENDENT}
        other.options = ScoringOptions(**{**self.options.__dict__, "k": k})
        return other

    def take(self, index: torch.Tensor, features: Sequence[str] = ()) -> "MapBatch":
        """Rows ``index`` of the batch (a map repeated for each of its pairs), with ``features``
        computed first on the distinct maps so they are not computed again per pair."""
        for name in features:
            getattr(self, name)
        other = MapBatch.__new__(MapBatch)
        other.__dict__ = {key: _take(v, index) for key, v in self.__dict__.items()}
        return other

    # -- features (the same definitions as PreparedMap)
    @cached_property
    def minmax(self) -> torch.Tensor:
        low, high = self.values.amin(1, keepdim=True), self.values.amax(1, keepdim=True)
        return (self.values - low) * (1.0 / (high - low))

    @cached_property
    def minmax_sum(self) -> torch.Tensor:
        return self.minmax.sum(1)

    @cached_property
    def minmax_sumsq(self) -> torch.Tensor:
        return (self.minmax * self.minmax).sum(1)

    @cached_property
    def density(self) -> torch.Tensor:
        return self.minmax * (1.0 / self.minmax_sum)[:, None]

    @cached_property
    def kl_density(self) -> torch.Tensor:
        low = self.values.amin(1, keepdim=True).clamp(max=0.0)
        shifted = self.values - low
        return shifted * (1.0 / shifted.sum(1))[:, None]

    @cached_property
    def centred_minmax(self) -> torch.Tensor:
        return self.minmax - (self.minmax_sum / self.values.shape[1])[:, None]

    @cached_property
    def centred_minmax_norm(self) -> torch.Tensor:
        return (self.centred_minmax * self.centred_minmax).sum(1).sqrt()

    @cached_property
    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values.mean(1), self.values.std(1, correction=0)

    @cached_property
    def at_max(self) -> torch.Tensor:
        """``[B, n]`` bool: the pixels holding each map's maximum."""
        return self.values == self.values.amax(1, keepdim=True)

    @cached_property
    def weights(self) -> torch.Tensor:
        from vqa_interp.metrics.prepare import apply_steps

        steps = self.options.steps
        if steps == ("minmax", "unit_sum"):
            return self.minmax * (1.0 / (self.minmax_sum + self.options.eps))[:, None]
        # other step lists are rare: the NumPy definitions, row by row
        return torch.as_tensor(
            np.stack([apply_steps(v, steps, self.options.eps) for v in self.values.cpu().numpy()]),
            device=self.values.device,
        )

    @cached_property
    def sort(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sorted values, order)``, ``[B, n]`` each, ascending, ties in index order."""
        return torch.sort(self.values, dim=1, stable=True)

    @cached_property
    def centred_ranks(self) -> torch.Tensor:
        """Average ranks minus ``(n + 1) / 2``, in pixel order."""
        sorted_values, order = self.sort
        batch, n = sorted_values.shape
        position = torch.arange(n, device=sorted_values.device).expand(batch, n)
        starts = torch.ones_like(sorted_values, dtype=torch.bool)
        starts[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
        ends = torch.ones_like(starts)  # the last position of each run of equal values
        ends[:, :-1] = starts[:, 1:]
        run_start = torch.cummax(torch.where(starts, position, 0), dim=1).values
        run_end = torch.cummin(torch.where(ends, position, n).flip(1), dim=1).values.flip(1)
        ranks_sorted = (run_start + run_end + 2).to(torch.float64) / 2.0 - (n + 1) / 2.0
        return torch.empty_like(ranks_sorted).scatter_(1, order, ranks_sorted)

    @cached_property
    def rank_norm(self) -> torch.Tensor:
        return (self.centred_ranks * self.centred_ranks).sum(1).sqrt()

    @cached_property
    def region(self) -> torch.Tensor:
        """``[B, n]`` top-k weights (see the tie policies in :mod:`vqa_interp.metrics.prepare`)."""
        sorted_values, _ = self.sort
        n = sorted_values.shape[1]
        n_region = self.options.n_region
        threshold = sorted_values[:, n - n_region][:, None]
        above = self.values > threshold
        tied = self.values == threshold
        free = (n_region - above.sum(1, keepdim=True)).to(torch.float64)
        policy = self.options.tie_policy
        if policy == "include":
            return (above | tied).to(torch.float64)
        if policy == "index":  # the lowest flat indices among the tied pixels
            return (above | (tied & (torch.cumsum(tied, dim=1) <= free))).to(torch.float64)
        return above.to(torch.float64) + tied.to(torch.float64) * (free / tied.sum(1, keepdim=True))

    @cached_property
    def region_size(self) -> torch.Tensor:
        return self.region.sum(1)


def _take(value, index: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, tuple):
        return tuple(_take(v, index) for v in value)
    if isinstance(value, list):
        return [value[i] for i in index.tolist()]
    return value


HUMAN_FEATURES = (
    "undefined",
    "minmax",
    "minmax_sum",
    "minmax_sumsq",
    "density",
    "kl_density",
    "centred_minmax",
    "centred_minmax_norm",
    "centred_ranks",
    "rank_norm",
    "region",
    "region_size",
    "weights",
)


def score_batch(
    attributions: np.ndarray,
    humans: np.ndarray,
    pair_human: Sequence[int],
    options: ScoringOptions,
    metrics: Sequence[str],
    ks: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
) -> dict[float, list[dict]]:
    """Score attribution map ``i`` against human map ``pair_human[i]``, batched on ``device``.

    Args:
        attributions: ``[B, S, S]`` maps already resized to ``options.size`` (float).
        humans: ``[U, S, S]`` distinct human maps at the same size (each prepared once).
        pair_human: ``[B]`` the human map of each pair.
        ks: the k values to score at (default: ``options.k``); the sort is shared.

    Returns:
        ``k -> [B rows]``, each row as :func:`vqa_interp.metrics.score_prepared` gives it.
    """
    device = torch.device(device)
    index = torch.as_tensor(list(pair_human), dtype=torch.long, device=device)
    a_all = MapBatch(torch.as_tensor(np.asarray(attributions), device=device), options)
    h_all = MapBatch(torch.as_tensor(np.asarray(humans), device=device), options)
    reasons = [
        f"attribution_{ra}" if ra else (f"human_{rh}" if rh else "")
        for ra, rh in zip(a_all.undefined, [h_all.undefined[i] for i in index.tolist()])
    ]
    fallback = [m for m in metrics if m not in BATCHED]
    out: dict[float, list[dict]] = {}
    for k in ks or (options.k,):
        a, h = a_all.at_k(k), h_all.at_k(k)
        h_pairs = h.take(index, HUMAN_FEATURES)
        columns = {m: BATCHED[m](a, h_pairs).detach().cpu().numpy() for m in metrics if m in BATCHED}
        rows = []
        for i, reason in enumerate(reasons):
            if reason:
                rows.append({**{m: float("nan") for m in metrics}, "undefined": reason})
                continue
            row = {m: float(columns[m][i]) if m in columns else None for m in metrics}
            if fallback:
                at_k = ScoringOptions(**{**options.__dict__, "k": k})
                pa = PreparedMap(a_all.values[i].cpu().numpy(), at_k)
                ph = PreparedMap(h_all.values[int(index[i])].cpu().numpy(), at_k)
                row.update({m: float(REGISTRY[m].compute(pa, ph)) for m in fallback})
            rows.append({**row, "undefined": ""})
        out[k] = rows
    return out


__all__ = ["MapBatch", "score_batch"]
