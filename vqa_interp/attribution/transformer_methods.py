"""Transformer-native maps: what a model with self-attention over text and image patches
(``attentions`` attachment, :meth:`vqa_interp.models.vilt.ViltModel.attentions`) says it looked at.

Each map is row ``r`` (the token the answer head reads; for a generative model, the mean of the rows
that predict the answer's tokens) of a ``[T, T]`` matrix over the image-token columns, laid out on
the ``h x w`` grid and upsampled bilinearly to the input ``[B, 1, S, S]``:

- ``attention``: one layer's attention probabilities (``method.layer``, default the last), mean over heads;
- ``rollout`` (Abnar & Zuidema 2020): ``R = prod_l norm(mean_h(A_l) + I)`` from the first layer up,
  the residual added and each row renormalised to sum 1;
- ``chefer`` (Chefer, Gur & Wolf 2021, relevancy for self-attention): ``R = I``, then for each layer
  from the first up ``R += mean_h(clamp(dA_l * A_l, min=0)) @ R``, ``dA_l`` the gradient of the
  target's score (a classifier's logit, a generative model's answer log-probability) with respect
  to layer ``l``'s attention probabilities;
- ``gradcam`` on a model without a spatial CAM layer (a generative VLM, ``token_states``): Grad-CAM
  over the image tokens of a transformer layer's output ``H [B, T, D]``: ``relu(sum_d w_d H[:, i, d])``
  at each image token ``i``, ``w = mean_i dscore/dH[:, i]`` (the gradient averaged over the image
  tokens, as Grad-CAM averages it over the grid).

The token layout (which row, which columns, the grid) comes from the model
(:meth:`~vqa_interp.models.vilt.ViltModel.token_layout`), so these functions name no model.
"""

from __future__ import annotations

import torch

from vqa_interp.attribution.registry import Method, register
from vqa_interp.errors import ConfigError


def on_grid(values: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``[B, h*w]`` patch values -> ``[B, 1, S, S]`` (bilinear, pixel centres aligned)."""
    h, w = grid
    maps = values.reshape(values.shape[0], 1, h, w)
    return torch.nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _start(a: torch.Tensor, row) -> torch.Tensor:
    """``[B, 1, T]``: the start vector of ``row``: a token index (its unit vector), a list of indices
    (the mean of theirs) or per-example row weights ``[B, T]`` (a generative model's answer rows)."""
    if isinstance(row, torch.Tensor):
        return row.to(a.dtype).to(a.device)[:, None, :]
    rows = [row] if isinstance(row, int) else list(row)
    v = torch.zeros(a.shape[0], 1, a.shape[-1], dtype=a.dtype, device=a.device)
    v[:, 0, rows] = 1.0 / len(rows)
    return v


def columns_of(values: torch.Tensor, columns) -> torch.Tensor:
    """``[B, N]``: the image-token columns of ``values [B, T]`` (a slice shared by the batch, or
    per-example indices ``[B, N]``)."""
    if isinstance(columns, torch.Tensor):
        return values.gather(1, columns.to(values.device))
    return values[:, columns]


def attention_map(attentions: list[torch.Tensor], row, columns, layer: int = -1) -> torch.Tensor:
    """``[B, N]``: layer ``layer``'s attention (an index into ``attentions``, -1 the last) of token
    ``row`` (see :func:`_start`) over ``columns``, mean over heads."""
    if not -len(attentions) <= layer < len(attentions):
        raise ConfigError(
            f"method.layer={layer} is out of range: the model has {len(attentions)} attention layers "
            f"(0 .. {len(attentions) - 1}, or -{len(attentions)} .. -1 from the top)."
        )
    a = attentions[layer].mean(dim=1)
    return columns_of((_start(a, row) @ a)[:, 0], columns)


def rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """``[B, T, T]`` attention rollout (residual added, rows renormalised)."""
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand_as(attentions[0][:, 0]).clone()
    for a in attentions:
        mixed = a.mean(dim=1) + eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return result


def relevancy(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """``[B, T, T]`` Chefer et al.'s relevancy for self-attention from each layer's attention
    probabilities and their gradients."""
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype, device=attentions[0].device)
    result = eye.expand_as(attentions[0][:, 0]).clone()
    for a, g in zip(attentions, gradients):
        weighted = (g * a).clamp(min=0).mean(dim=1)
        result = result + weighted @ result
    return result


def rollout_row(attentions: list[torch.Tensor], row) -> torch.Tensor:
    """``[B, T]``: row ``row`` of :func:`rollout` (the mean of rows, for a list), as a vector times the
    layers' matrices from the top (``e_row^T M_L ... M_1``: O(L T^2) instead of the full product's
    O(L T^3))."""
    v = _start(attentions[-1], row)
    for a in reversed(attentions):
        mixed = a.mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], dtype=mixed.dtype, device=mixed.device)
        v = v @ (mixed / mixed.sum(dim=-1, keepdim=True))
    return v[:, 0]


def relevancy_row(attentions: list[torch.Tensor], gradients: list[torch.Tensor], row) -> torch.Tensor:
    """``[B, T]``: row ``row`` of :func:`relevancy` (the mean of rows, for a list;
    ``e_row^T (I + W_L) ... (I + W_1)``, from the top)."""
    v = _start(attentions[-1], row)
    for a, g in zip(reversed(attentions), reversed(gradients)):
        v = v + v @ (g * a).clamp(min=0).mean(dim=1)
    return v[:, 0]


def _from_attentions(combine):
    """A builder whose map is ``combine(attentions, row, columns, options) -> [B, N]`` of one forward."""

    def build(model, options):
        def attribute(x, target, question):
            with torch.no_grad():
                _, attentions = model.attentions(x, question, target)
                row, columns, grid = model.token_layout(x, question, target)
                return on_grid(combine(attentions, row, columns, options), grid, tuple(x.shape[-2:]))

        return attribute

    return build


_attention = _from_attentions(
    lambda attentions, row, columns, options: attention_map(attentions, row, columns, options["layer"])
)
_rollout = _from_attentions(lambda attentions, row, columns, options: columns_of(rollout_row(attentions, row), columns))


def token_gradcam(model, x: torch.Tensor, target: tuple, question: tuple, layer: str) -> torch.Tensor:
    """``[B, 1, S, S]``: Grad-CAM over the image tokens of ``model.token_layer(layer)``'s output."""
    captured = []

    def keep(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = model.token_layer(layer).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            # the pixels put the layer's output in the graph (the model's parameters are frozen)
            scores = model.target_scores(x.detach().requires_grad_(True), question, target)
            states = captured[-1]
            (gradients,) = torch.autograd.grad(scores.sum(), states)
    finally:
        handle.remove()
    _, columns, grid = model.token_layout(x, question, target)
    with torch.no_grad():
        if not isinstance(columns, torch.Tensor):
            columns = torch.arange(states.shape[1])[columns].expand(len(x), -1)
        index = columns.to(states.device)[:, :, None].expand(-1, -1, states.shape[-1])
        h, g = states.detach().gather(1, index), gradients.gather(1, index)  # [B, N, D]
        cam = (g.mean(dim=1, keepdim=True) * h).sum(dim=-1).clamp(min=0)  # [B, N]
        return on_grid(cam.float(), grid, tuple(x.shape[-2:]))


def _chefer(model, options):
    def attribute(x, target, question):
        with torch.enable_grad():
            # the pixels put the attentions in the graph (the model's parameters are frozen); the
            # gradient stops at the attentions, nothing is computed below the first layer
            scores, attentions = model.attentions(x.detach().requires_grad_(True), question, target)
            gradients = torch.autograd.grad(scores.sum(), attentions)
        row, columns, grid = model.token_layout(x, question, target)
        with torch.no_grad():
            values = columns_of(relevancy_row([a.detach() for a in attentions], list(gradients), row), columns)
            return on_grid(values, grid, tuple(x.shape[-2:]))

    return attribute


for _method in (
    Method(
        "attention",
        _attention,
        {"layer": -1},
        "one layer's attention (default the last) from the answer token over the patches, mean over heads",
        "Vaswani et al. 2017",
        needs=("pixels", "attentions"),
    ),
    Method(
        "rollout",
        _rollout,
        {},
        "attention rollout (residual added, rows renormalised)",
        "Abnar & Zuidema 2020",
        needs=("pixels", "attentions"),
    ),
    Method(
        "chefer",
        _chefer,
        {},
        "relevancy: gradient-weighted attention propagated through the layers",
        "Chefer, Gur & Wolf 2021",
        needs=("pixels", "attentions"),
    ),
):
    register(_method)
