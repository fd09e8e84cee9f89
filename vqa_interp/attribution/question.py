"""The question side of the model: which words an answer rests on, and how the attribution divides
between the image and the question (Captum's VQA tutorial attributes both halves of such a model).
Both take the model interface (:class:`~vqa_interp.models.base.VqaModel`): its text embedding layer,
its "no question" baseline and its question-side forward.

- :func:`token_attributions`: Layer Integrated Gradients on the question's token embedding
  (``model.text_embedding()``) through the question side (``model.question_side``: the Kazemi net
  computes its image features once), baseline ``model.question_baseline`` (padding tokens, whose
  embedding is zero in pytorch-vqa), the same target as the image map. A token's score is its
  attribution summed over the embedding dimension, divided by the L2 norm over the question's
  tokens (positions outside ``model.token_mask`` are 0).
- :func:`image_question_share`: one Integrated Gradients pass over the image *and* the embedded
  question together (baselines: a zero image in the normalised input space, the zero embedding);
  the image's share is ``|A_image|_1 / (|A_image|_1 + |A_question|_1)``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def in_chunks(call, n: int, size: int | None) -> tuple[torch.Tensor, ...]:
    """``call(rows)`` on consecutive lists of at most ``size`` of the ``n`` examples, its tensors
    concatenated: Captum warns, and raises its internal batch to the number of examples, when an
    ``internal_batch_size`` is below it, so that the memory budget would not hold."""
    if size is None or size >= n:
        return call(list(range(n)))
    parts = [call(list(range(begin, min(n, begin + size)))) for begin in range(0, n, size)]
    return tuple(torch.cat(part) for part in zip(*parts))


def _by_chunks(compute, model, images, question, targets, n_steps: int, internal_batch_size: int | None):
    """``compute`` (one of the IG passes below) on chunks of at most ``internal_batch_size`` examples."""
    from vqa_interp.models.base import as_target, take

    targets = as_target(targets)
    return in_chunks(
        lambda rows: compute(
            model, images[rows], take(question, rows), take(targets, rows), n_steps, internal_batch_size
        ),
        len(images),
        internal_batch_size,
    )


def token_attributions(
    model,
    images: torch.Tensor,
    question: tuple,
    targets: tuple,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`_token_attributions`; at most ``internal_batch_size`` examples a call."""
    return _by_chunks(_token_attributions, model, images, question, targets, n_steps, internal_batch_size)


def _token_attributions(
    model,
    images: torch.Tensor,
    question: tuple,
    targets: tuple,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token attributions ``[B, T]`` (normalised, 0 outside the question's tokens) and IG's
    completeness error ``[B]`` (``|sum of raw attributions - (f(x) - f(baseline))|``) for ``images
    [B, 3, S, S]`` and their question encoding. ``internal_batch_size``: scaled inputs per pass
    (None: all ``B x n_steps`` at once)."""
    from captum.attr import LayerIntegratedGradients

    from vqa_interp.models.base import as_target

    targets = as_target(targets)
    forward, fixed = model.question_side(images, tuple(targets))
    lig = LayerIntegratedGradients(forward, model.text_embedding())
    raw, delta = lig.attribute(
        tuple(question),
        baselines=tuple(model.question_baseline(question)),
        additional_forward_args=fixed,
        n_steps=n_steps,
        return_convergence_delta=True,
        internal_batch_size=internal_batch_size,
    )
    mask = model.token_mask(question)
    # a generative model's text embedding also reads the target answer's tokens (after the prompt)
    scores = raw.sum(dim=-1).detach()[:, : mask.shape[1]]
    scores = torch.where(mask.to(scores.device), scores, torch.zeros_like(scores))
    norm = scores.norm(dim=1, keepdim=True)
    return scores / torch.where(norm > 0, norm, torch.ones_like(norm)), delta.detach().abs()


@contextlib.contextmanager
def _embedding_replaced(embedding: nn.Module, embedded: list):
    """Inside the block, the token embedding returns ``embedded[0]`` instead of looking tokens up (a
    generative model's embedding also reads the target answer after the prompt: those stay looked up)."""

    def hook(module, inputs, output):
        given = embedded[0]
        if output.shape[1] > given.shape[1]:
            return torch.cat([given, output[:, given.shape[1] :]], dim=1)
        return given

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def image_question_share(
    model,
    images: torch.Tensor,
    question: tuple,
    targets: tuple,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`_image_question_share`; at most ``internal_batch_size`` examples a call."""
    return _by_chunks(_image_question_share, model, images, question, targets, n_steps, internal_batch_size)


def _image_question_share(
    model,
    images: torch.Tensor,
    question: tuple,
    targets: tuple,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image's share of the attribution ``[B]`` in [0, 1] (the question's is ``1 - share``) and the
    joint pass's completeness error ``[B]``. The ``B x n_steps`` scaled inputs go through the model
    ``internal_batch_size`` at a time (Captum's; None: ``B``), each a full forward and backward."""
    from captum.attr import IntegratedGradients

    from vqa_interp.models.base import as_target

    targets = as_target(targets)
    slot: list = [None]
    embedding = model.text_embedding()

    n = len(question)

    def forward(pixels, embedded, *encoded):
        slot[0] = embedded
        with _embedding_replaced(embedding, slot):
            return model.target_scores(pixels, encoded[:n], encoded[n:])

    with torch.no_grad():
        embedded = embedding(question[0])
    ig = IntegratedGradients(forward)
    (a_image, a_question), delta = ig.attribute(
        (images.detach(), embedded),
        baselines=(torch.zeros_like(images), torch.zeros_like(embedded)),
        additional_forward_args=(*question, *targets),
        n_steps=n_steps,
        return_convergence_delta=True,
        internal_batch_size=internal_batch_size or len(images),
    )
    image_mass = a_image.detach().abs().flatten(1).sum(1)
    question_mass = a_question.detach().abs().flatten(1).sum(1)
    total = image_mass + question_mass
    return image_mass / torch.where(total > 0, total, torch.ones_like(total)), delta.detach().abs()
