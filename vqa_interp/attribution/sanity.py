"""Model-parameter randomisation tests (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model's weights are destroyed. For a sample of
questions the method's maps are recomputed after

- ``cascading`` randomisation: re-initialise the model's blocks from the output down, cumulatively
  (the model interface's ``blocks()``: for the Kazemi net the classifier, then the attention, then
  the question encoder, then the backbone's blocks top-down);
- ``independent`` randomisation: one block at a time, the rest intact;

and compared with the original maps by the Spearman correlation of the absolute maps, the
Spearman correlation of the signed maps (channel sum), and SSIM of the [0, 1]-scaled absolute
maps (Gaussian weights, sigma 1.5: Wang et al. 2004, as in Adebayo et al.). As there, the explained
answer is the randomised model's own prediction. How the human-agreement metrics move is reported
beside (``human_<metric>``). A method whose absolute maps keep a mean Spearman above 0.5 after the
whole model is randomised fails the check.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import torch
from scipy import ndimage
from torch import nn

from vqa_interp.attribution.compute import reduce_channels
from vqa_interp.attribution.registry import make_attributor
from vqa_interp.models.base import take

FAIL_THRESHOLD = 0.5
SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim")


def randomise(block: nn.Module, seed: int) -> None:
    """Re-initialise every parameter of ``block``: a submodule's own ``reset_parameters`` where it has
    one (Linear, Conv, Embedding, LayerNorm), else a fresh normal draw with the parameter's current
    standard deviation (or 0.02, BERT's initializer range, for a constant), so that parameters a
    module holds directly (ViLT's position embeddings and image [CLS] token) are not left intact."""
    torch.manual_seed(seed)
    for module in block.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            continue
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
                parameter.normal_(0.0, spread if spread > 0 else 0.02)


def ssim(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Mean structural similarity of two ``[H, W]`` maps with Gaussian weights (Wang et al. 2004),
    as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: border of half a window excluded."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)

    def blur(x):
        return ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = (2 * int(3.5 * sigma + 0.5) + 1 - 1) // 2
    return float(index[pad:-pad, pad:-pad].mean())


def _minmax(x: np.ndarray) -> np.ndarray:
    from vqa_interp.metrics.prepare import apply_steps

    return apply_steps(x, ["minmax"])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x.ravel(), y.ravel()).statistic)


def _maps(
    model, method: str, options: dict, images: torch.Tensor, question: tuple, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(absolute maps ``[N, S, S]``, signed maps ``[N, S, S]``) for the model's own predictions."""
    attribute = make_attributor(model, method, options)
    absolute, signed = [], []
    for begin in range(0, len(images), batch_size):
        x, qq = images[begin : begin + batch_size], take(question, range(begin, min(begin + batch_size, len(images))))
        with torch.no_grad():
            targets = model.predicted_targets(x, qq)
        raw = attribute(x.clone().requires_grad_(True), targets, qq)
        raw = (raw[0] if isinstance(raw, tuple) else raw).detach()
        absolute.append(reduce_channels(raw, "max_abs").numpy())
        signed.append(reduce_channels(raw, "sum").numpy())
    return np.concatenate(absolute), np.concatenate(signed)


def sanity_checks(
    model,
    method: str,
    options: dict,
    images: torch.Tensor,
    question: tuple,
    *,
    human_scores: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    modes: Sequence[str] = ("cascading", "independent"),
) -> pd.DataFrame:
    """Randomisation curves for one method of ``model`` (a :class:`~vqa_interp.models.base.VqaModel`)
    on ``images [N, 3, S, S]`` and their questions' encoding ``question``.

    ``human_scores(abs_maps [N, S, S]) -> {metric: [N]}`` scores maps against the questions' human
    maps (optional). Returns rows ``mode, step, block, method, similarity, mean, std, n``; step 0
    (block ``none``) is the intact model.
    """
    model = model.eval()
    original_abs, original_signed = _maps(model, method, options, images, question, batch_size)
    rows = []

    def record(mode: str, step: int, block: str, absolute: np.ndarray, signed: np.ndarray) -> None:
        values = {
            "spearman_abs": [_spearman(o, r) for o, r in zip(original_abs, absolute)],
            "spearman_signed": [_spearman(o, r) for o, r in zip(original_signed, signed)],
            "ssim": [ssim(_minmax(o), _minmax(r)) for o, r in zip(original_abs, absolute)],
        }
        if human_scores is not None:
            values.update({f"human_{k}": v for k, v in human_scores(absolute).items()})
        for similarity, series in values.items():
            series = np.asarray(series, float)
            series = series[np.isfinite(series)]
            rows.append(
                {
                    "mode": mode,
                    "step": step,
                    "block": block,
                    "method": method,
                    "similarity": similarity,
                    "mean": float(series.mean()) if len(series) else np.nan,
                    "std": float(series.std(ddof=1)) if len(series) > 1 else np.nan,
                    "n": len(series),
                }
            )

    blocks = [name for name, _ in model.blocks()]
    for mode in modes:
        record(mode, 0, "none", original_abs, original_signed)
        for step, name in enumerate(blocks, 1):
            twin = copy.deepcopy(model)
            chosen = blocks[:step] if mode == "cascading" else [name]
            for i, (block_name, block) in enumerate(twin.blocks()):
                if block_name in chosen:
                    randomise(block, seed + i)
            absolute, signed = _maps(twin.eval(), method, options, images, question, batch_size)
            record(mode, step, name, absolute, signed)
    return pd.DataFrame(rows, columns=["mode", "step", "block", "method", "similarity", "mean", "std", "n"])


def verdict(table: pd.DataFrame) -> tuple[bool, float]:
    """(passed, mean Spearman of the absolute maps after full cascading randomisation)."""
    cascade = table[(table["mode"] == "cascading") & (table["similarity"] == "spearman_abs")]
    final = float(cascade.sort_values("step")["mean"].iloc[-1]) if len(cascade) else float("nan")
    return bool(final <= FAIL_THRESHOLD), final
