"""The model interface: one object per loaded VQA model that owns everything the stages need to know
about it, so that methods, sanity checks, token attributions, faithfulness and training never name
a model's inputs or module paths.

What a method explains is one differentiable number per example for a *target answer string*:
:meth:`VqaModel.target_scores` ``(pixels [B, 3, S, S], question, target) -> [B]``, where ``question``
is the model's own question encoding (a tuple of tensors with the batch first: ``(q [B, T], q_len
[B])`` for the Kazemi & Elqursh net; ``(input_ids, attention_mask, token_type_ids)`` for a
BERT-style transformer; the prompt for a generative model) and ``target`` the model's encoding of
the answers (:meth:`VqaModel.encode_targets`: a classifier's answer indices ``[B]``, a generative
model's answer tokens). A classifier's score is the target's logit, a generative model's the
teacher-forced log-probability of the answer's tokens after the prompt. :attr:`VqaModel.scorer` is
that function as an ``nn.Module`` (``forward(pixels, *question, *target) -> [B]``) for attribution
libraries. A prediction is an answer string with a confidence (:meth:`VqaModel.predict_answers`).
:func:`take` selects rows of an encoding, and :meth:`VqaModel.to_device` places one on a device
(some models keep lengths on the CPU).

Attachment points (:data:`ATTACHMENTS`) are what a method may ask a model for; a model lists the ones
it has in :attr:`VqaModel.provides`, and a method names the ones it needs, so that an impossible
model x method pair is refused before any work (:func:`vqa_interp.models.registry.check_method`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD, InputGeometry, load_image
from vqa_interp.errors import ConfigError

Question = tuple  # tuple[torch.Tensor, ...], batch first

ATTACHMENTS = {
    "pixels": "the pixel input [B, 3, S, S] (every model has it)",
    "cam_layer": "a layer whose output is a spatial grid [B, C, h, w] (Grad-CAM, Guided Grad-CAM)",
    "text_embedding": "the question's token embedding layer, output [B, T, D] (token attributions, share)",
    "blocks": "the ordered blocks that sanity checks re-initialise, from the output down",
    "attentions": "attention maps over the image patches and the token layout (transformer-native methods)",
    "token_states": "named transformer layers whose outputs [B, T, D] hold the image tokens (Grad-CAM over tokens)",
    "relu_units": "an nn.ReLU module at every non-linearity (Guided Backprop and DeconvNet modify their backward)",
}


def as_target(target) -> tuple:
    """A target encoding as a tuple of tensors (a classifier's answer indices ``[B]`` may come bare)."""
    return tuple(target) if isinstance(target, (tuple, list)) else (target,)


def take(question: Question, rows) -> Question:
    """Rows ``rows`` of every tensor of an encoding (each indexed on its own device)."""
    rows = torch.as_tensor(rows)
    return tuple(t[rows.to(t.device)] for t in question)


class ClassifierScore(nn.Module):
    """``forward(pixels, *question, answer_index [B]) -> [B]``: a classifier's logit of each target."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, pixels, *args):
        *question, index = args
        return self.module(pixels, *question).gather(1, index[:, None].to(torch.long))[:, 0]


class VqaModel(abc.ABC):
    """One loaded VQA model (eval mode): inputs, forward, vocabularies, attachment points, identity.

    Subclasses set :attr:`module` (an ``nn.Module`` whose ``forward(pixels, *question)`` gives the
    logits), :attr:`answers`, :attr:`geometry`, :attr:`checkpoint_digest` and :attr:`description`,
    and implement the abstract methods; the optional attachment points raise unless listed in
    :attr:`provides`.
    """

    kind: ClassVar[str] = ""
    provides: ClassVar[frozenset[str]] = frozenset({"pixels"})
    # whether the image encoder runs without the question (training then batches whole images,
    # each encoded once for all its questions; see vqa_interp.models.training.train_model)
    encodes_image_alone: ClassVar[bool] = False
    # whether answers are generated text (any string is a target) rather than classes of ``answers``
    generative: ClassVar[bool] = False

    module: nn.Module
    answers: list[str]  # answer strings by logit index
    geometry: InputGeometry  # how an image becomes the pixel input (and the maps' size)
    checkpoint_digest: str = ""
    description: str = ""

    # ------------------------------------------------------------ inputs and forward
    @abc.abstractmethod
    def encode(self, questions: Sequence[str]) -> Question:
        """The question encoding of ``N`` questions: a tuple of tensors ``[N, ...]``."""

    @abc.abstractmethod
    def tokens(self, question: str) -> list[str]:
        """The tokens of one question, position ``i`` being position ``i`` of the text embedding."""

    @abc.abstractmethod
    def token_mask(self, question: Question) -> torch.Tensor:
        """``[B, T]`` bool: the positions of the text embedding that hold a real token."""

    @abc.abstractmethod
    def question_baseline(self, question: Question) -> Question:
        """The "no question" encoding of the same shape (padding tokens): token attributions' baseline."""

    def load_pixels(self, paths: Sequence[Path]) -> torch.Tensor:
        """The pixel input of image files: ``[B, 3, S, S]`` float32."""
        return torch.from_numpy(np.stack([load_image(p, self.geometry) for p in paths]))

    def black(self, pixels: torch.Tensor) -> torch.Tensor:
        """The black image in the model's (normalised) input space, shaped like ``pixels``."""
        value = torch.as_tensor(-IMAGENET_MEAN / IMAGENET_STD, dtype=pixels.dtype, device=pixels.device)
        return value[None, :, None, None].expand_as(pixels).contiguous()

    def to_device(self, question: Question, device: str) -> Question:
        """An encoding placed where :meth:`forward` wants it on ``device``."""
        return tuple(t.to(device) for t in question)

    def forward(self, pixels: torch.Tensor, question: Question) -> torch.Tensor:
        """``logits [B, n_answers]`` (a classifier)."""
        return self.module(pixels, *question)

    # ------------------------------------------------------------ targets: answer strings
    def answer_index(self, answer: str) -> int:
        """The class of an (official-normalised) answer string, -1 where the model cannot answer it."""
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            from vqa_interp.models.vocab import answer_lookup

            lookup = self.__dict__["_lookup"] = answer_lookup(self.answers)
        return lookup.get(answer, -1)

    def can_answer(self, answer: str) -> bool:
        """Whether ``answer`` can be a target (a classifier: in its vocabulary; generative: any)."""
        return self.generative or self.answer_index(answer) >= 0

    def answer_key(self, answer: str) -> str:
        """A file-name-safe name of a target answer in map-cache keys: a classifier's class index, a
        generative model's short hash of the string."""
        if self.generative:
            import hashlib

            return "a" + hashlib.sha256(answer.encode()).hexdigest()[:10]
        return str(self.answer_index(answer))

    def encode_targets(self, answers: Sequence[str]) -> tuple:
        """The model's encoding of ``B`` target answers (normalised strings): a tuple of tensors
        ``[B, ...]`` (a classifier: ``(index [B],)``)."""
        indices = [self.answer_index(a) for a in answers]
        missing = [a for a, i in zip(answers, indices) if i < 0]
        if missing:
            raise ValueError(f"answers {missing[:3]} are not in the {self.kind} model's answer vocabulary")
        return (torch.tensor(indices, dtype=torch.long),)

    @property
    def scorer(self) -> nn.Module:
        """``forward(pixels, *question, *target) -> [B]``: the number a method explains, as a module."""
        scorer = self.__dict__.get("_scorer")
        if scorer is None:
            scorer = self.__dict__["_scorer"] = ClassifierScore(self.module)
        return scorer

    def target_scores(self, pixels: torch.Tensor, question: Question, target: tuple) -> torch.Tensor:
        """``[B]``: the differentiable score of each example's target (:attr:`scorer`)."""
        return self.scorer(pixels, *question, *target)

    def answer_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, n_answers]``: the model's own probability of each answer from its logits: a softmax
        for a head trained with cross-entropy over the answers (:attr:`confidence`), each logit's
        sigmoid for one trained with binary cross-entropy on soft scores (dandelin's ViLT)."""
        return torch.sigmoid(logits) if self.confidence == "sigmoid" else torch.softmax(logits, dim=1)

    confidence: str = "softmax"
    CONFIDENCE = {
        "softmax": "the softmax probability of the predicted answer over the answer list (a head trained "
        "with cross-entropy)",
        "sigmoid": "the sigmoid of the predicted answer's logit (a head trained with binary cross-entropy "
        "on soft scores)",
        "candidates": "the answer's probability normalised over the question's multiple-choice candidates",
    }

    def target_probabilities(self, pixels: torch.Tensor, question: Question, target: tuple) -> torch.Tensor:
        """``[B]``: each target's probability (a classifier: :meth:`answer_probabilities`; generative:
        the probability of the answer's tokens)."""
        probs = self.answer_probabilities(self.forward(pixels, question).float())
        return probs.gather(1, target[0][:, None].to(probs.device))[:, 0]

    def predict_answers(
        self, pixels: torch.Tensor, question: Question, candidates: Sequence[Sequence[str]] | None = None
    ) -> tuple[list[str], torch.Tensor]:
        """``(answers, confidence [B])``: a classifier's argmax class and its probability
        (:meth:`answer_probabilities`; ``candidates`` unused; a generative model normalises over them)."""
        from vqa_interp.data.answers import normalize_answer

        probs = self.answer_probabilities(self.forward(pixels, question).float()).cpu()
        confidence, predicted = probs.max(dim=1)
        return [normalize_answer(self.answers[int(i)]) for i in predicted], confidence

    def attentions(
        self, pixels: torch.Tensor, question: Question, target: tuple | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(scores [B] of the target (or logits when ``target`` is None), [A_l [B, H, T, T]] per
        layer)``, the attention probabilities in the graph."""
        raise self._lacks("attentions")

    def token_layout(
        self, pixels: torch.Tensor, question: Question, target: tuple | None = None
    ) -> tuple[list[int] | int, slice, tuple[int, int]]:
        """``(the rows that read out the answer, the image-token columns, their grid (h, w))`` of the
        matrices :meth:`attentions` returns."""
        raise self._lacks("attentions")

    def question_side(self, pixels: torch.Tensor, target: tuple) -> tuple[Callable, tuple]:
        """``(f, fixed)``: ``f(*question, *fixed) -> [B]`` the target's score with the image fixed to
        ``pixels`` (``fixed`` are tensors ``[B, ...]`` that an attribution library repeats with the
        question: the pixels, then the target encoding). A model whose image encoder does not see
        the question overrides this to encode the image once."""
        n = len(target)

        def f(*args):
            return self.scorer(args[-1 - n], *args[: -1 - n], *args[len(args) - n :])

        return f, (pixels.detach(), *target)

    def predicted_targets(self, pixels: torch.Tensor, question: Question) -> tuple:
        """The target encoding of the model's own answers (sanity checks explain them)."""
        return (self.forward(pixels, question).argmax(dim=1),)

    def probe(self, pixels: torch.Tensor, question: Question) -> torch.Tensor:
        """One pass of the model as the stages run it (the memory plan measures it)."""
        return self.forward(pixels, question)

    def training_logits(self, pixels: torch.Tensor, image_of: torch.Tensor, question: Question) -> torch.Tensor:
        """Logits ``[Q, A]`` of ``Q`` questions about ``I`` images ``pixels [I, 3, S, S]`` (question ``j`` is
        about image ``image_of[j]``): a model whose image encoder does not see the question runs it
        once per image."""
        return self.forward(pixels[image_of], question)

    # ------------------------------------------------------------ attachment points
    def cam_layer(self) -> nn.Module:
        """The layer whose output ``[B, C, h, w]`` a CAM method reads."""
        raise self._lacks("cam_layer")

    def text_embedding(self) -> nn.Module:
        """The question's token embedding layer (output ``[B, T, D]``)."""
        raise self._lacks("text_embedding")

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """``(name, block)`` from the output down, the order sanity checks re-initialise them in."""
        raise self._lacks("blocks")

    def token_layer(self, name: str) -> nn.Module:
        """The transformer layer ``name`` (``cam``: the model's default) whose output ``[B, T, D]``
        holds the image tokens at :meth:`token_layout`'s columns."""
        raise self._lacks("token_states")

    def layer(self, name: str) -> nn.Module:
        """A named attachment point (``cam``) or, for users who need another one, a dotted module path."""
        if name == "cam":
            return self.cam_layer()
        module = self.module
        for part in name.split("."):
            if not hasattr(module, part):
                names = [n for n, _ in self.module.named_modules() if n.count(".") <= 1 and n]
                raise ConfigError(
                    f"method.layer: {name!r} is neither 'cam' (the model's CAM layer) nor a module "
                    f"of the {self.kind} model; try one of {names[:12]}"
                )
            module = getattr(module, part)
        return module

    def _lacks(self, attachment: str) -> Exception:
        return ConfigError(
            f"model.kind={self.kind!r} has no {attachment} ({ATTACHMENTS[attachment]}); "
            f"it provides {sorted(self.provides)}."
        )

    # ------------------------------------------------------------ identity and placement
    def identity(self) -> dict:
        """What the model's outputs depend on (cache keys): kind, checkpoint digest, input geometry."""
        return {
            "kind": self.kind,
            "checkpoint": self.checkpoint_digest,
            "input": {"size": self.geometry.size, "central_fraction": self.geometry.central_fraction},
        }

    def tags(self) -> dict[str, str]:
        """Tags a run records about its model (``confidence``: what a prediction's confidence is)."""
        return {
            "model_kind": self.kind,
            "model_description": self.description,
            "confidence": self.CONFIDENCE[self.confidence],
        }

    @property
    def answer_vocab(self) -> dict[str, int]:
        return {answer: i for i, answer in enumerate(self.answers)}

    def to(self, device: str) -> "VqaModel":
        self.module.to(device)
        return self

    def eval(self) -> "VqaModel":
        self.module.eval()
        return self

    def frozen(self) -> "VqaModel":
        """The model with no parameter requiring a gradient: every stage differentiates with respect
        to inputs and activations only. Captum's methods take ``torch.autograd.grad`` of their
        inputs, which skips the weights' gradients anyway (the benchmark's pass costs did not move);
        what this adds is that a method calling ``loss.backward()`` (a plugin's, say) does not
        accumulate a gradient the size of the model on the shared weights batch after batch, and
        costs a third less per pass (1.32x on the embedded ViLT, batch 128, one thread). A method
        that differentiates an activation puts it in the graph through its input
        (``pixels.requires_grad_()``). Training builds its own model and is not affected."""
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        return self

    def save(self, path: Path, **provenance) -> None:
        """Write a checkpoint this model's kind loads (trainable kinds only)."""
        raise NotImplementedError(f"model.kind={self.kind!r} cannot be saved")
