"""How each generative VLM family's inputs are built from the tool's square image and prompt, and
where its parts are (:mod:`vqa_interp.models.generative` runs them).

Each method takes the model (a :class:`~vqa_interp.models.generative.GenerativeVlm`). Every pixel
input is a differentiable function of the tool's ``[B, 3, S, S]`` image in [0, 1]: the
maps cover exactly the image the human maps cover.

- :class:`Family` (LLaVA): a fixed-size image, resized to the processor's size and normalised with its
  mean and std; 1-D positions counted over the real tokens (left padding).
- :class:`QwenFamily` (Qwen2-VL, Qwen2.5-VL): flattened ``3 x 2 x 14 x 14`` patches in the processor's
  merge order with ``image_grid_thw``; ``mm_token_type_ids``; the model's own M-RoPE positions.
- :class:`PaliGemmaFamily`: a SigLIP image; a prefix LM (``token_type_ids``), positions from 1.
"""

from __future__ import annotations

import torch
from torch import nn

from vqa_interp.errors import CheckpointError


class Family:
    """How one model family's inputs are made from the tool's image and prompt, and where its parts
    are: the LLaVA layout (a fixed-size image, resized and normalised; 1-D positions counted over
    the real tokens). :class:`QwenFamily` overrides the pixel input and the positions."""

    name = "llava"
    passes_positions = True  # positions from the attention mask (left padding); False: the model's own
    first_position = 0  # the position of a sequence's first real token
    packs = True  # an image's questions train in one sequence (vqa_interp.models.packing)
    default_prompt = None  # a format string where the processor has no chat template

    def image_size(self, processor) -> tuple[int, int]:
        """``(h, w)`` of the image the processor makes (where the tool's image is resized to)."""
        return _crop_size(processor)

    def render_size(self, processor, side: int) -> tuple[int, int]:
        """The size of the blank image the prompt's token ids are made with."""
        return self.image_size(processor)

    def pixel_inputs(self, model, x01: torch.Tensor) -> dict:
        """The model's image keyword arguments from ``x01 [B, 3, S, S]`` in [0, 1] (differentiable)."""
        size = self.image_size(model.processor)
        if tuple(x01.shape[-2:]) != size:
            x01 = nn.functional.interpolate(x01, size=size, mode="bilinear", align_corners=False)
        return {"pixel_values": _normalised(model.processor, x01)}

    def extra_inputs(self, model, ids: torch.Tensor, answer_mask: torch.Tensor | None = None) -> dict:
        """More keyword arguments of the forward for ``ids`` (the prompts, then ``answer_mask``'s answer
        tokens when given)."""
        return {}

    def parts(self, hf):
        """``(lm layers, final norm, lm_head, projector, vision tower)``."""
        inner = hf.model
        lm = inner.language_model
        return list(lm.layers), lm.norm, hf.lm_head, inner.multi_modal_projector, inner.vision_tower


class QwenFamily(Family):
    """Qwen2-VL / Qwen2.5-VL: the image is resized to a multiple of 28 (patch 14, merged 2x2) as the
    processor's ``smart_resize`` does, cut into flattened ``3 x 2 x 14 x 14`` patches (the frame
    repeated over the temporal patch) in the processor's merge order, with ``image_grid_thw``; the
    forward needs ``mm_token_type_ids`` (1 at image tokens) and computes its own 3-D (M-RoPE)
    positions from the attention mask."""

    name = "qwen2_vl"
    passes_positions = False
    packs = False  # 3-D rotary positions over the whole sequence

    def image_size(self, processor, side: int | None = None) -> tuple[int, int]:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        ip = processor.image_processor
        patch, merge = int(ip.patch_size), int(ip.merge_size)
        side = side or patch * merge
        limits = {
            k: v
            for k, v in (
                ("min_pixels", getattr(ip, "min_pixels", None)),
                ("max_pixels", getattr(ip, "max_pixels", None)),
            )
            if v
        }
        return tuple(smart_resize(side, side, factor=patch * merge, **limits))

    def render_size(self, processor, side: int) -> tuple[int, int]:
        return self.image_size(processor, side)

    def pixel_inputs(self, model, x01: torch.Tensor) -> dict:
        ip = model.processor.image_processor
        patch, merge, frames = int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size)
        h, w = self.image_size(model.processor, x01.shape[-1])
        if tuple(x01.shape[-2:]) != (h, w):
            x01 = nn.functional.interpolate(x01, size=(h, w), mode="bilinear", align_corners=False)
        x = _normalised(model.processor, x01)
        batch, channels = x.shape[:2]
        gh, gw = h // patch, w // patch
        # [B, T, C, gh/m, m, P, gw/m, m, P] -> per image [gh*gw, C*T*P*P], the processor's order
        x = x[:, None].expand(batch, frames, channels, h, w)
        x = x.reshape(batch, frames, channels, gh // merge, merge, patch, gw // merge, merge, patch)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(batch * gh * gw, channels * frames * patch * patch)
        grid = torch.tensor([[1, gh, gw]] * batch, dtype=torch.long, device=x.device)
        return {"pixel_values": x, "image_grid_thw": grid}

    def extra_inputs(self, model, ids: torch.Tensor, answer_mask: torch.Tensor | None = None) -> dict:
        return {"mm_token_type_ids": (ids == model.image_token_id).to(torch.long)}

    def parts(self, hf):
        inner = hf.model
        lm = inner.language_model
        return list(lm.layers), lm.norm, hf.lm_head, inner.visual.merger, inner.visual


class PaliGemmaFamily(Family):
    """PaliGemma: a SigLIP image at the processor's size (mean = std = 0.5); no chat template (the
    processor writes the image tokens, ``<bos>``, the prompt and a newline; the prompt defaults to
    PaliGemma's ``answer en {question}``); a prefix LM: ``token_type_ids`` 0 over the prompt (it attends
    both ways), 1 over the answer; positions counted from 1."""

    name = "paligemma"
    first_position = 1
    packs = False  # the prefix LM's token types and mask cover the whole sequence
    default_prompt = "answer en {question}"

    def extra_inputs(self, model, ids: torch.Tensor, answer_mask: torch.Tensor | None = None) -> dict:
        types = torch.zeros_like(ids)
        if answer_mask is not None:
            types[:, ids.shape[1] - answer_mask.shape[1] :] = answer_mask
        return {"token_type_ids": types}


def _normalised(processor, x01: torch.Tensor) -> torch.Tensor:
    ip = processor.image_processor
    mean, std = (
        torch.as_tensor(list(v), dtype=x01.dtype, device=x01.device)[None, :, None, None]
        for v in (ip.image_mean, ip.image_std)
    )
    return (x01 - mean) / std


def _crop_size(processor) -> tuple[int, int]:
    """``(h, w)`` the processor's images have: its crop size, else its size (a dict or a ``SizeDict``)."""
    ip = processor.image_processor
    for name in ("crop_size", "size"):
        value = getattr(ip, name, None)
        get = value.get if isinstance(value, dict) else (lambda key, v=value: getattr(v, key, None))
        if value is not None and get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if value is not None and get("shortest_edge"):
            return int(get("shortest_edge")), int(get("shortest_edge"))
    raise CheckpointError("model.pretrained: the processor's image size (crop_size / size) is not readable")


FAMILIES = {"llava": Family(), "qwen2_vl": QwenFamily(), "qwen2_5_vl": QwenFamily(), "paligemma": PaliGemmaFamily()}
UNSUPPORTED = {
    "llava_next": "its pixel input is a variable grid of crops (anyres, image_sizes), which the tool does not build "
    "from one square image",
}
