"""Faithfulness of a map to the model (Petsiuk et al. 2018, RISE): does removing what the map ranks
highest change the model's answer?

For each map ``[S, S]`` (at the model's input size) the pixels are ordered by the map, highest
first (ties in index order). At ``steps + 1`` fractions ``f = 0, 1/steps, ..., 1``:

- deletion: the top ``f`` of the pixels are replaced by the blurred image, the rest kept;
- insertion: the blurred image with the top ``f`` of the pixels put back.

The target's softmax probability along each curve is integrated over ``f`` (trapezoid rule): the
area under the deletion curve is lower, and under the insertion curve higher, for a map that ranks
the pixels the model uses first. Each map costs ``2 (steps + 1)`` forward passes, batched.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def blurred(images: torch.Tensor, sigma_fraction: float = 1 / 16) -> torch.Tensor:
    """Gaussian-blurred copies ``[B, 3, S, S]`` (sigma = ``sigma_fraction * S``): the "removed" pixels."""
    from torchvision.transforms.functional import gaussian_blur

    sigma = max(0.5, sigma_fraction * images.shape[-1])
    kernel = int(2 * round(3 * sigma) + 1)
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: np.ndarray, q: torch.Tensor,
                       q_len: torch.Tensor, targets: torch.Tensor, steps: int = 10,
                       batch_size: int = 64) -> dict[str, np.ndarray]:
    """Curves and areas for ``B`` maps ``[B, S, S]`` of ``images [B, 3, S, S]``.

    Returns ``deletion`` and ``insertion`` curves ``[B, steps + 1]`` (target probabilities) and their
    areas ``deletion_auc``, ``insertion_auc`` ``[B]``.
    """
    batch, _, side, _ = images.shape
    n = side * side
    flat = torch.as_tensor(np.asarray(maps, np.float64).reshape(batch, n))
    order = torch.argsort(-flat, dim=1, stable=True)                       # highest first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n).expand(batch, n))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = [int(round(f * n)) for f in fractions]
    base = blurred(images)
    curves = {"deletion": np.zeros((batch, steps + 1)), "insertion": np.zeros((batch, steps + 1))}
    jobs = [(i, s) for i in range(batch) for s in range(steps + 1)]
    device = images.device
    with torch.no_grad():
        for kind in ("deletion", "insertion"):
            for begin in range(0, len(jobs), batch_size):
                chunk = jobs[begin:begin + batch_size]
                rows = torch.tensor([i for i, _ in chunk])
                top = (rank[rows] < torch.tensor([counts[s] for _, s in chunk])[:, None]).reshape(-1, 1, side, side)
                top = top.to(device)
                original, removed = images[rows.to(device)], base[rows.to(device)]
                x = torch.where(top, removed, original) if kind == "deletion" else torch.where(top, original, removed)
                probs = torch.softmax(model(x, q[rows].to(device), q_len[rows]), dim=1)
                picked = probs.gather(1, targets[rows].to(device)[:, None]).squeeze(1).cpu().numpy()
                for (i, s), p in zip(chunk, picked):
                    curves[kind][i, s] = p
    return {**curves, "deletion_auc": np.trapezoid(curves["deletion"], fractions, axis=1),
            "insertion_auc": np.trapezoid(curves["insertion"], fractions, axis=1)}
