"""Attribution maps w.r.t. the image pixels, from Captum, batched and cached.

A method is one small adapter registered in :data:`METHODS` plus one config file in
``conf/method/``. An adapter gets the model and the method's options and returns a function
``(images [B, 3, S, S], targets [B], q [B, T], q_len [B]) -> attributions [B, 3, S, S]``.
"""
from __future__ import annotations

import contextlib
import operator
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from vqa_interp.preprocessing import reduce_channels

# Captum warns on every Guided Backprop / DeconvNet call that it hooks the ReLU modules: that is the
# method working as intended (the model has one ReLU module per call site), not a problem to report.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")

AttributeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
METHODS: dict[str, Callable[[nn.Module, dict], AttributeFn]] = {}
OPTIONS: dict[str, set[str]] = {}


def register(name: str, options: Iterable[str] = ()):
    """Decorator: register an adapter under ``name`` with the option keys it accepts."""
    def wrap(build):
        METHODS[name] = build
        OPTIONS[name] = set(options)
        return build
    return wrap


def _resolve_layer(model: nn.Module, dotted: str) -> nn.Module:
    try:
        return operator.attrgetter(dotted)(model)
    except AttributeError as exc:
        names = [n for n, _ in model.named_modules() if n.count(".") <= 1 and n]
        raise ValueError(f"method.layer: {dotted!r} is not a module of the model; "
                         f"try one of {names[:12]}") from exc


@register("saliency", options=("abs",))
def _saliency(model, options):
    from captum.attr import Saliency

    explainer = Saliency(model)
    return lambda x, t, q, ql: explainer.attribute(x, target=t, abs=bool(options.get("abs", True)),
                                                   additional_forward_args=(q, ql))


@register("gbackp")
def _guided_backprop(model, options):
    from captum.attr import GuidedBackprop

    explainer = GuidedBackprop(model)
    return lambda x, t, q, ql: explainer.attribute(x, target=t, additional_forward_args=(q, ql))


@register("deconv")
def _deconvolution(model, options):
    from captum.attr import Deconvolution

    explainer = Deconvolution(model)
    return lambda x, t, q, ql: explainer.attribute(x, target=t, additional_forward_args=(q, ql))


@register("ggradcam", options=("layer", "interpolate_mode"))
def _guided_gradcam(model, options):
    from captum.attr import GuidedGradCam

    explainer = GuidedGradCam(model, _resolve_layer(model, options.get("layer", "backbone.layer4")))
    mode = options.get("interpolate_mode", "nearest")
    return lambda x, t, q, ql: explainer.attribute(x, target=t, additional_forward_args=(q, ql),
                                                   interpolate_mode=mode)


@register("inputxgrad")
def _input_x_gradient(model, options):
    from captum.attr import InputXGradient

    explainer = InputXGradient(model)
    return lambda x, t, q, ql: explainer.attribute(x, target=t, additional_forward_args=(q, ql))


def make_attributor(model: nn.Module, method: str, options: dict) -> AttributeFn:
    """The attribution function of ``method`` (see :data:`METHODS`) for ``model``."""
    if method not in METHODS:
        raise ValueError(f"method.name: {method!r} is unknown; expected one of {sorted(METHODS)}")
    return METHODS[method](model, options)


@dataclass(frozen=True)
class MapRequest:
    """One map to compute: an example's image/question and the answer index to attribute."""
    key: str               # cache key of this map within the run's map set
    image_row: int         # row into the images array
    question_row: int      # row into q / q_len
    target_index: int      # answer index (logit) to attribute


def compute_maps(model: nn.Module, attribute: AttributeFn, requests: list[MapRequest],
                 load_images: Callable[[list[int]], torch.Tensor], q: torch.Tensor, q_len: torch.Tensor,
                 *, batch_size: int, channel_reduction: str, device: str = "cpu") -> Iterator[tuple[MapRequest, np.ndarray]]:
    """Yield ``(request, map [S, S] float32)`` batch by batch (maps are never all held at once).

    On CUDA the LSTM backward needs cuDNN off in eval mode, so the whole attribution runs with
    cuDNN disabled there.
    """
    use_cuda = device.startswith("cuda")
    context = torch.backends.cudnn.flags(enabled=False) if use_cuda else contextlib.nullcontext()
    with context:
        for begin in range(0, len(requests), batch_size):
            batch = requests[begin:begin + batch_size]
            images = load_images([r.image_row for r in batch]).to(device).requires_grad_(True)
            rows = torch.tensor([r.question_row for r in batch])
            targets = torch.tensor([r.target_index for r in batch], device=device)
            raw = attribute(images, targets, q[rows].to(device), q_len[rows])
            reduced = reduce_channels(raw.detach(), channel_reduction).float().cpu().numpy()
            yield from zip(batch, reduced)
