"""The ViLT network behind :class:`~vqa_interp.models.vilt.ViltModel`: Hugging Face's
``ViltForQuestionAnswering`` with the tool's pixel input (the square ``[B, 3, S, S]`` image every
model gets) and answer logits ``[B, n_answers]``."""

from __future__ import annotations

import torch
from torch import nn

from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD


class ViltNet(nn.Module):
    """``forward(pixels [B, 3, S, S], input_ids [B, L], attention_mask [B, L], token_type_ids [B, L])
    -> logits [B, A]`` of a ``ViltForQuestionAnswering`` ``hf``, with deterministic patch embeddings
    (module docs). :meth:`run` also returns every layer's attention probabilities ``[B, H, T, T]``
    (in the graph, for gradients)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf
        self.cam = nn.Identity()  # the last block's input patches as [B, D, h, w] (Grad-CAM)
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32)[None, :, None, None]
        # ImageNet-normalised -> ViLT's (x - 0.5) / 0.5: one affine map
        self.register_buffer("scale", std / 0.5, persistent=False)
        self.register_buffer("shift", (mean - 0.5) / 0.5, persistent=False)

    @property
    def config(self):
        return self.hf.config

    def grid(self, pixels: torch.Tensor) -> tuple[int, int]:
        patch = self.config.patch_size
        return pixels.shape[-2] // patch, pixels.shape[-1] // patch

    def embed(self, pixels, input_ids, attention_mask, token_type_ids):
        """``(hidden [B, T, D], additive mask [B, 1, 1, T])``: text, image [CLS], patches."""
        emb = self.hf.vilt.embeddings
        x = pixels * self.scale + self.shift
        text = emb.text_embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        patches = emb.patch_embeddings(x)  # [B, D, h, w]
        batch, dim, h, w = patches.shape
        side = self.config.image_size // self.config.patch_size
        spatial = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, dim, side, side)
        spatial = nn.functional.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=True)
        image = patches.flatten(2).transpose(1, 2) + spatial.flatten(2).transpose(1, 2)
        cls = emb.cls_token.expand(batch, -1, -1) + emb.position_embeddings[:, :1, :]
        image = torch.cat([cls, image], dim=1)
        text = text + emb.token_type_embeddings(torch.zeros_like(input_ids))
        image = image + emb.token_type_embeddings(torch.ones(image.shape[:2], dtype=torch.long, device=image.device))
        hidden = torch.cat([text, image], dim=1)
        mask = torch.cat(
            [attention_mask.to(hidden.dtype), torch.ones(image.shape[:2], dtype=hidden.dtype, device=hidden.device)],
            dim=1,
        )
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
        return hidden, additive

    def run(self, pixels, input_ids, attention_mask, token_type_ids, output_attentions: bool = False):
        """``(logits [B, A], [attention probabilities [B, H, T, T] per layer] or [])``."""
        hidden, additive = self.embed(pixels, input_ids, attention_mask, token_type_ids)
        layers = self.hf.vilt.encoder.layer
        length = input_ids.shape[1]
        h, w = self.grid(pixels)
        attentions = []
        for i, layer in enumerate(layers):
            if i == len(layers) - 1:  # the last block's input patches through the CAM identity, as a grid
                patches = hidden[:, length + 1 :].transpose(1, 2).reshape(hidden.shape[0], -1, h, w)
                patches = self.cam(patches).flatten(2).transpose(1, 2)
                hidden = torch.cat([hidden[:, : length + 1], patches], dim=1)
            out = layer(hidden, additive, output_attentions=output_attentions)
            hidden = out[0]
            if output_attentions:
                attentions.append(out[1])
        hidden = self.hf.vilt.layernorm(hidden)
        logits = self.hf.classifier(self.hf.vilt.pooler(hidden))
        return logits, attentions

    def forward(self, pixels, input_ids, attention_mask, token_type_ids):
        return self.run(pixels, input_ids, attention_mask, token_type_ids)[0]
