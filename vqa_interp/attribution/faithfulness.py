"""Faithfulness of a map to the model (Petsiuk et al. 2018, RISE): does removing what the map ranks
highest change the model's answer?

For each map ``[S, S]`` (at the model's input size) the pixels are ordered by the map, highest
first. At ``steps + 1`` fractions ``f = 0, 1/steps, ..., 1``:

- deletion: the top ``f`` of the pixels are replaced by the substrate, the rest kept;
- insertion: the substrate with the top ``f`` of the pixels put back.

Ties are broken by no position: the pixels tied at the step's threshold share its remaining slots,
each blended ``slots / tied`` of the way to the substrate (the scorer's ``fractional`` top-k rule).
Taking the lowest index first, as an index-order sort does, would remove the top rows of a flat
map first; here flipping the image and the map together leaves the curves unchanged.

The substrate is the blurred image (``blur``, RISE's choice; sigma a fraction of the side) or the
image's mean colour (``mean``). On the embedded benchmark a weak blur (sigma 1/16 of the side)
leaves its flat-coloured objects recognisable, so deleting *all* pixels hardly moves the answer
(target probability 0.56 -> 0.51 over 120 questions) and every map looks alike; sigma 1/4 (the
default) takes it to 0.31, and separates saliency (deletion AUC 0.34) from random maps (0.45).

The target's softmax probability along each curve is integrated over ``f`` (trapezoid rule): the
area under the deletion curve is lower, and under the insertion curve higher, for a map that ranks
the pixels the model uses first. Each map costs ``2 (steps + 1)`` forward passes, batched (the
curves' two ends are shared by every map of the same image and target).
"""

from __future__ import annotations

import numpy as np
import torch

from vqa_interp.models.base import take


def blurred(images: torch.Tensor, sigma_fraction: float = 0.25) -> torch.Tensor:
    """Gaussian-blurred copies ``[B, 3, S, S]`` (sigma = ``sigma_fraction * S``, reflected borders).

    Separable: two 1-D passes (torchvision's ``gaussian_blur`` convolves with the full 2-D kernel,
    ``K^2`` taps per pixel, which at sigma S/4 was most of the curves' time).
    """
    side = images.shape[-1]
    sigma = max(0.5, sigma_fraction * side)
    # reflection pads half the kernel, which must be less than the side: an odd kernel of at most 2 S - 1
    size = min(int(2 * round(3 * sigma) + 1), 2 * side - 1)
    x = torch.arange(size, dtype=images.dtype, device=images.device) - size // 2
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    half = size // 2
    out = torch.nn.functional.pad(images, (half, half, 0, 0), mode="reflect")
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    out = torch.nn.functional.pad(out, (0, 0, half, half), mode="reflect")
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def substrate(images: torch.Tensor, kind: str = "blur", blur_sigma: float = 0.25) -> torch.Tensor:
    """What removed pixels become, ``[B, 3, S, S]``: ``blur`` or ``mean`` (each image's mean colour)."""
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
    return blurred(images, blur_sigma)


def top_weights(flat: torch.Tensor, threshold: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``[m, n]`` weights of each map's top ``count`` pixels: 1 above ``threshold`` (``[m]``), the
    pixels equal to it sharing the remaining slots (``(count - above) / tied`` each), 0 below. The
    weights of a map sum to ``count``, and no position decides which tied pixel goes first."""
    above = flat > threshold[:, None]
    tied = flat == threshold[:, None]
    share = (count - above.sum(1)).to(flat.dtype) / tied.sum(1).clamp(min=1).to(flat.dtype)
    return above.to(flat.dtype) + tied.to(flat.dtype) * share[:, None]


def deletion_insertion(
    model,
    images: torch.Tensor,
    maps: np.ndarray,
    question: tuple,
    targets: torch.Tensor,
    steps: int = 10,
    batch_size: int = 64,
    kind: str = "blur",
    blur_sigma: float = 0.25,
) -> dict[str, np.ndarray]:
    """Curves and areas for ``B`` maps ``[B, S, S]`` of ``images [B, 3, S, S]`` (``model`` a
    :class:`~vqa_interp.models.base.VqaModel`, ``question`` its encoding of the ``B`` questions).

    Returns ``deletion`` and ``insertion`` curves ``[B, steps + 1]`` (target probabilities) and their
    areas ``deletion_auc``, ``insertion_auc`` ``[B]``.
    """
    return curves_for_map_sets(
        model,
        images,
        {"maps": maps},
        question,
        targets,
        steps=steps,
        batch_size=batch_size,
        kind=kind,
        blur_sigma=blur_sigma,
    )["maps"]


def curves_for_map_sets(
    model,
    images: torch.Tensor,
    map_sets: dict[str, np.ndarray],
    question: tuple,
    targets: torch.Tensor,
    steps: int = 10,
    batch_size: int = 64,
    kind: str = "blur",
    blur_sigma: float = 0.25,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`deletion_insertion` for several sets of maps of the same images and targets (a method's
    maps and random maps, say): the curves' ends (the image, the substrate) are the same for every
    map and are computed once, so each target costs ``2 + 2 (steps - 1) x len(map_sets)`` forwards,
    in batches of ``batch_size`` images."""
    from vqa_interp.models.base import as_target

    targets = as_target(targets)
    device = images.device
    batch, _, side, _ = images.shape
    n = side * side
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = torch.tensor([int(round(f * n)) for f in fractions], device=device)
    base = substrate(images, kind, blur_sigma)

    def probabilities(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if hasattr(model, "target_probabilities"):  # the model interface (a classifier or generative)
            return model.target_probabilities(x, take(question, rows), take(targets, rows))
        probs = torch.softmax(model.forward(x, take(question, rows)).float(), dim=1)  # a bare classifier
        return probs.gather(1, targets[0][rows][:, None]).squeeze(1)

    results = {}
    with torch.no_grad():
        every = torch.arange(batch, device=device)
        ends = [
            torch.cat(
                [
                    probabilities(source[c : c + batch_size], every[c : c + batch_size])
                    for c in range(0, batch, batch_size)
                ]
            )
            .cpu()
            .numpy()
            for source in (images, base)
        ]
        # interior points: (map, step, curve) with step in 1..steps-1 and curve deletion (0) / insertion (1)
        grid = torch.cartesian_prod(every, torch.arange(1, steps, device=device), torch.arange(2, device=device))
        for name, maps in map_sets.items():
            flat = torch.as_tensor(np.ascontiguousarray(maps, np.float64).reshape(batch, n)).to(device)
            # each step's threshold: the value of its last pixel in the descending order
            thresholds = torch.sort(flat, dim=1, descending=True).values[:, (counts - 1).clamp(min=0)]  # [B, steps+1]
            curves = np.zeros((2, batch, steps + 1))
            curves[0, :, 0], curves[0, :, steps] = ends  # deletion: image -> substrate
            curves[1, :, 0], curves[1, :, steps] = ends[::-1]  # insertion: substrate -> image
            for c in range(0, len(grid), batch_size):
                rows, step, curve = grid[c : c + batch_size].unbind(1)
                top = top_weights(flat[rows], thresholds[rows, step], counts[step]).to(images.dtype)  # [m, n]
                # deletion keeps the image outside the top pixels, insertion inside them
                deleting = (curve == 0)[:, None].to(images.dtype)
                keep = top.mul_(1 - 2 * deleting).add_(deleting).reshape(-1, 1, side, side)  # 1 - top where deleting
                # base + keep (image - base), in place: two image-sized temporaries, not four
                mixed = (images[rows] - base[rows]).mul_(keep).add_(base[rows])
                del top, keep
                p = probabilities(mixed, rows).cpu().numpy()
                del mixed
                curves[curve.cpu().numpy(), rows.cpu().numpy(), step.cpu().numpy()] = p
            results[name] = {
                "deletion": curves[0],
                "insertion": curves[1],
                "deletion_auc": np.trapezoid(curves[0], fractions, axis=1),
                "insertion_auc": np.trapezoid(curves[1], fractions, axis=1),
            }
    return results
