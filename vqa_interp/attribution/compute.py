"""Batched map computation: requests -> channel-reduced maps ``[S, S]``, batch by batch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from vqa_interp.attribution.registry import AttributeFn
from vqa_interp.models.base import take
from vqa_interp.util.memory import halving_on_oom

CHANNEL_REDUCTIONS = ("max_abs", "sum_abs", "l2", "sum")


def reduce_channels(attributions: torch.Tensor, how: str = "max_abs") -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H, W]``; the paper's ``max_abs`` is ``max_c |a_c|``."""
    if how == "max_abs":
        return attributions.abs().amax(dim=1)
    if how == "sum_abs":
        return attributions.abs().sum(dim=1)
    if how == "l2":
        return attributions.pow(2).sum(dim=1).sqrt()
    if how == "sum":
        return attributions.sum(dim=1)
    raise ValueError(f"preprocessing.channel_reduction: {how!r} is unknown; expected one of {CHANNEL_REDUCTIONS}")


@dataclass(frozen=True)
class MapRequest:
    """One map to compute: an example's image/question and the answer to attribute."""

    key: str  # cache key of this map within the run's map set
    image_row: int  # row into the images (the example's row)
    question_row: int  # row into the question encoding
    target: str  # the (normalised) answer string whose score is attributed


def compute_maps(
    model,
    attribute: AttributeFn,
    requests: list[MapRequest],
    load_images: Callable[[list[int]], torch.Tensor],
    question: tuple,
    *,
    batch_size: int,
    channel_reduction: str,
    device: str = "cpu",
) -> Iterator[tuple[MapRequest, np.ndarray, dict[str, float]]]:
    """Yield ``(request, map [S, S] float32, extras)`` batch by batch (maps are never all held at once).

    ``model`` is the :class:`~vqa_interp.models.base.VqaModel`, ``question`` its encoding of every
    example (rows ``question_row``). An attribution function may return ``(attributions, {name: [B]
    tensor})``: per-map diagnostics (e.g. Integrated Gradients' completeness error) that come back
    as ``extras``.

    On CUDA the LSTM backward needs cuDNN off in eval mode, so the whole attribution runs with
    cuDNN disabled there.
    """
    use_cuda = device.startswith("cuda")
    context = torch.backends.cudnn.flags(enabled=False) if use_cuda else contextlib.nullcontext()

    def run(batch: list[MapRequest]) -> list[tuple[MapRequest, np.ndarray, dict[str, float]]]:
        images = load_images([r.image_row for r in batch]).to(device).requires_grad_(True)
        rows = torch.tensor([r.question_row for r in batch])
        target = tuple(t.to(device) for t in model.encode_targets([r.target for r in batch]))
        raw = attribute(images, target, model.to_device(take(question, rows), device))
        extras: dict = {}
        if isinstance(raw, tuple):
            raw, extras = raw
        reduced = reduce_channels(raw.detach(), channel_reduction).float().cpu().numpy()
        return [
            (request, array, {k: float(v[i]) for k, v in extras.items()})
            for i, (request, array) in enumerate(zip(batch, reduced))
        ]

    with context:
        for begin in range(0, len(requests), batch_size):
            # a CUDA out-of-memory error halves the batch once (the maps do not depend on the batch)
            yield from halving_on_oom(run, requests[begin : begin + batch_size], "attribution")
