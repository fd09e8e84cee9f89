"""The question side of the model: which words an answer rests on, and how the attribution divides
between the image and the question (Captum's VQA tutorial attributes both halves of this model).

- :func:`token_attributions`: Layer Integrated Gradients on the question's word embedding
  (``net.text.embedding``) through the question side (``model.net``; the image features are
  computed once), baseline the padding sequence (token 0, whose embedding is zero), the same
  target as the image map. A token's score is its attribution summed over the embedding
  dimension, divided by the L2 norm over the question's tokens (padding positions are 0).
- :func:`image_question_share`: one Integrated Gradients pass over the image *and* the embedded
  question together (baselines: a zero image in the normalised input space, the zero embedding);
  the image's share is ``|A_image|_1 / (|A_image|_1 + |A_question|_1)``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def _embedding(model: nn.Module) -> nn.Embedding:
    return model.net.text.embedding


def token_attributions(model: nn.Module, images: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor,
                       targets: torch.Tensor, n_steps: int = 32,
                       internal_batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token attributions ``[B, T]`` (normalised, 0 at padding) and IG's completeness error ``[B]``
    (``|sum of raw attributions - (f(x) - f(baseline))|``) for ``images [B, 3, S, S]``, ``q [B, T]``.
    ``internal_batch_size``: scaled inputs per pass (None: all ``B x n_steps`` at once)."""
    from captum.attr import LayerIntegratedGradients

    # The image features do not depend on the question: computed once, the IG steps run the
    # question side of the model only (exact, and n_steps backbone passes cheaper; on ResNet-152
    # at 448 the backbone is nearly all of a pass).
    with torch.no_grad():
        features = model.backbone(images.detach())

    def forward(tokens, visual, lengths):
        return model.net(visual, tokens, lengths)

    lig = LayerIntegratedGradients(forward, _embedding(model))
    raw, delta = lig.attribute(q, baselines=torch.zeros_like(q), target=targets,
                               additional_forward_args=(features, q_len), n_steps=n_steps,
                               return_convergence_delta=True, internal_batch_size=internal_batch_size)
    scores = raw.sum(dim=-1).detach()
    positions = torch.arange(q.shape[1], device=q.device)[None, :]
    scores = torch.where(positions < q_len.to(q.device)[:, None], scores, torch.zeros_like(scores))
    norm = scores.norm(dim=1, keepdim=True)
    return scores / torch.where(norm > 0, norm, torch.ones_like(norm)), delta.detach().abs()


@contextlib.contextmanager
def _embedding_replaced(model: nn.Module, embedded: list):
    """Inside the block, the word embedding returns ``embedded[0]`` instead of looking tokens up."""
    handle = _embedding(model).register_forward_hook(lambda module, inputs, output: embedded[0])
    try:
        yield
    finally:
        handle.remove()


def image_question_share(model: nn.Module, images: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor,
                         targets: torch.Tensor, n_steps: int = 32,
                         internal_batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The image's share of the attribution ``[B]`` in [0, 1] (the question's is ``1 - share``) and the
    joint pass's completeness error ``[B]``. The ``B x n_steps`` scaled inputs go through the model
    ``internal_batch_size`` at a time (Captum's; None: ``B``), each a full forward and backward."""
    from captum.attr import IntegratedGradients

    slot: list = [None]

    def forward(pixels, embedded, tokens, lengths):
        slot[0] = embedded
        with _embedding_replaced(model, slot):
            return model(pixels, tokens, lengths)

    with torch.no_grad():
        embedded = _embedding(model)(q)
    ig = IntegratedGradients(forward)
    (a_image, a_question), delta = ig.attribute(
        (images.detach(), embedded), baselines=(torch.zeros_like(images), torch.zeros_like(embedded)),
        target=targets, additional_forward_args=(q, q_len), n_steps=n_steps, return_convergence_delta=True,
        internal_batch_size=internal_batch_size or len(images))
    image_mass = a_image.detach().abs().flatten(1).sum(1)
    question_mass = a_question.detach().abs().flatten(1).sum(1)
    total = image_mass + question_mass
    return image_mass / torch.where(total > 0, total, torch.ones_like(total)), delta.detach().abs()
