"""Model-parameter randomisation tests (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model's weights are destroyed. For a sample of
questions the method's maps are recomputed after

- ``cascading`` randomisation: re-initialise the blocks from the output down, cumulatively: the
  classifier, then the attention, then the question encoder, then the backbone's blocks top-down;
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

FAIL_THRESHOLD = 0.5
SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim")


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks to randomise, from the output down: ``net.classifier``, ``net.attention``,
    ``net.text``, then the backbone's ``layer4`` .. ``layer1`` (and its stem, where it has one)."""
    blocks = [("classifier", model.net.classifier), ("attention", model.net.attention), ("text", model.net.text)]
    backbone = model.backbone
    for name in ("layer4", "layer3", "layer2", "layer1"):
        if hasattr(backbone, name):
            blocks.append((f"backbone.{name}", getattr(backbone, name)))
    if hasattr(backbone, "conv1"):
        blocks.append(("backbone.stem", nn.ModuleList([backbone.conv1, backbone.bn1])))
    return blocks


def randomise(block: nn.Module, seed: int) -> None:
    """Re-initialise every parameterised submodule of ``block`` (its own ``reset_parameters``)."""
    torch.manual_seed(seed)
    for module in block.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def ssim(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Mean structural similarity of two ``[H, W]`` maps with Gaussian weights (Wang et al. 2004),
    as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: border of half a window excluded."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)

    def blur(x):
        return ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    pad = (2 * int(3.5 * sigma + 0.5) + 1 - 1) // 2
    return float(index[pad:-pad, pad:-pad].mean())


def _minmax(x: np.ndarray) -> np.ndarray:
    from vqa_interp.metrics.prepare import apply_steps

    return apply_steps(x, ["minmax"])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x.ravel(), y.ravel()).statistic)


def _maps(model: nn.Module, method: str, options: dict, images: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor,
          batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(absolute maps ``[N, S, S]``, signed maps ``[N, S, S]``) for the model's own predictions."""
    attribute = make_attributor(model, method, options)
    absolute, signed = [], []
    for begin in range(0, len(images), batch_size):
        x, qq, ql = images[begin:begin + batch_size], q[begin:begin + batch_size], q_len[begin:begin + batch_size]
        with torch.no_grad():
            targets = model(x, qq, ql).argmax(dim=1)
        raw = attribute(x.clone().requires_grad_(True), targets, qq, ql).detach()
        absolute.append(reduce_channels(raw, "max_abs").numpy())
        signed.append(reduce_channels(raw, "sum").numpy())
    return np.concatenate(absolute), np.concatenate(signed)


def sanity_checks(model: nn.Module, method: str, options: dict, images: torch.Tensor, q: torch.Tensor,
                  q_len: torch.Tensor, *, human_scores: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
                  batch_size: int = 16, seed: int = 0, modes: Sequence[str] = ("cascading", "independent")) -> pd.DataFrame:
    """Randomisation curves for one method on ``images [N, 3, S, S]`` and their questions.

    ``human_scores(abs_maps [N, S, S]) -> {metric: [N]}`` scores maps against the questions' human
    maps (optional). Returns rows ``mode, step, block, method, similarity, mean, std, n``; step 0
    (block ``none``) is the intact model.
    """
    model = model.eval()
    original_abs, original_signed = _maps(model, method, options, images, q, q_len, batch_size)
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
            rows.append({"mode": mode, "step": step, "block": block, "method": method, "similarity": similarity,
                         "mean": float(series.mean()) if len(series) else np.nan,
                         "std": float(series.std(ddof=1)) if len(series) > 1 else np.nan, "n": len(series)})

    blocks = [name for name, _ in model_blocks(model)]
    for mode in modes:
        record(mode, 0, "none", original_abs, original_signed)
        for step, name in enumerate(blocks, 1):
            twin = copy.deepcopy(model)
            chosen = blocks[:step] if mode == "cascading" else [name]
            for i, (block_name, block) in enumerate(model_blocks(twin)):
                if block_name in chosen:
                    randomise(block, seed + i)
            absolute, signed = _maps(twin.eval(), method, options, images, q, q_len, batch_size)
            record(mode, step, name, absolute, signed)
    return pd.DataFrame(rows, columns=["mode", "step", "block", "method", "similarity", "mean", "std", "n"])


def verdict(table: pd.DataFrame) -> tuple[bool, float]:
    """(passed, mean Spearman of the absolute maps after full cascading randomisation)."""
    cascade = table[(table["mode"] == "cascading") & (table["similarity"] == "spearman_abs")]
    final = float(cascade.sort_values("step")["mean"].iloc[-1]) if len(cascade) else float("nan")
    return bool(final <= FAIL_THRESHOLD), final


def sanity_figure(table: pd.DataFrame):
    """The classic curves: similarity to the original maps after each randomisation step."""
    from vqa_interp.analysis.figures import new_figure

    method = table["method"].iloc[0]
    modes = list(dict.fromkeys(table["mode"]))
    fig, axes = new_figure(1, len(modes), figsize=(6.2 * len(modes), 4.0), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        part = table[table["mode"] == mode]
        labels = list(dict.fromkeys(part.sort_values("step")["block"]))
        for similarity in sorted(set(part["similarity"])):
            curve = part[part["similarity"] == similarity].sort_values("step")
            style = "--" if similarity.startswith("human_") else "-"
            ax.errorbar(curve["step"], curve["mean"], yerr=curve["std"], fmt="o" + style, ms=3, capsize=2,
                        label=similarity)
        ax.axhline(FAIL_THRESHOLD, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(-0.3, 1.05)
        ax.set_ylabel("mean over questions (bars: 1 SD)", fontsize=8)
        ax.set_xlabel("randomised " + ("up to (from the output down)" if mode == "cascading" else "block alone"),
                      fontsize=8)
        ax.set_title(f"{method}: {mode} randomisation", fontsize=9)
        ax.legend(fontsize=6)
    passed, final = verdict(table)
    fig.suptitle(f"Sanity check (Adebayo et al. 2018): {'passes' if passed else 'FAILS'} "
                 f"(Spearman |map| after full randomisation {final:.2f}; fails above {FAIL_THRESHOLD})", fontsize=9)
    fig.tight_layout()
    return fig
