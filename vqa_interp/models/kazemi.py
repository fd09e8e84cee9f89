"""The Kazemi & Elqursh (2017) "Show, Ask, Attend, and Answer" VQA model, with an image backbone.

Module and parameter names follow Cyanogenoid/pytorch-vqa (``text``, ``attention``,
``classifier.lin1`` ...), so that its released checkpoint loads into :class:`Net` unchanged.
:class:`KazemiNetwork` puts an image backbone in front of it so that attributions can be taken with
respect to the image pixels.

Guided Backprop and DeconvNet (Captum) override ``nn.ReLU`` *modules*; so every ReLU call site
here is its own non-inplace ``nn.ReLU`` (never ``F.relu``), backbones included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from vqa_interp.data.answers import tokenize_question
from vqa_interp.data.images import InputGeometry
from vqa_interp.errors import CheckpointError, ConfigError
from vqa_interp.models.backbones import RESNET_VARIANTS, build_backbone
from vqa_interp.models.base import VqaModel
from vqa_interp.models.checkpoint import (
    BACKBONE_FILES,
    BACKBONE_PREFIX,
    BACKBONE_SOURCES,
    file_digest,
    load_backbone_weights,
    read_checkpoint,
    save_checkpoint,
    strip_module,
)
from vqa_interp.models.kazemi_net import KazemiNetwork, Net, net_dims_from_weights
from vqa_interp.models.registry import ModelKind, register_model
from vqa_interp.models.vocab import build_answer_vocab, build_question_vocab, encode_questions
from vqa_interp.util.options import option


class KazemiModel(VqaModel):
    """The Kazemi & Elqursh net behind its image backbone, as the stages see it.

    Question encoding ``(q [B, T] int64, q_len [B] int64)`` with pytorch-vqa's vocabulary (0 =
    padding/unknown; ``q_len`` stays on the CPU, where ``pack_padded_sequence`` wants it). CAM
    layer ``backbone.layer4``; text embedding ``net.text.embedding``; blocks from the output down:
    the classifier, the attention, the question encoder, the backbone's ``layer4`` .. ``layer1``
    and its stem, where it has one.
    """

    kind = "kazemi"
    provides = frozenset({"pixels", "cam_layer", "text_embedding", "blocks", "relu_units"})
    encodes_image_alone = True

    def __init__(
        self,
        module: KazemiNetwork,
        question_vocab: dict[str, int],
        answer_vocab: dict[str, int],
        geometry: InputGeometry,
        *,
        checkpoint_digest: str = "",
        description: str = "",
        backbone_spec: dict | None = None,
        backbone_weights: str | None = None,
    ):
        self.module = module
        self.question_vocab = dict(question_vocab)
        ordered = [""] * len(answer_vocab)
        for answer, index in answer_vocab.items():
            ordered[index] = answer
        self.answers = ordered
        self.geometry = geometry
        self.checkpoint_digest = checkpoint_digest
        self.description = description
        self.backbone_spec = dict(backbone_spec or {})
        self.backbone_weights = backbone_weights

    def encode(self, questions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_questions(questions, self.question_vocab)

    def tokens(self, question: str) -> list[str]:
        return tokenize_question(question)

    def token_mask(self, question) -> torch.Tensor:
        q, q_len = question
        return torch.arange(q.shape[1], device=q.device)[None, :] < q_len.to(q.device)[:, None]

    def question_baseline(self, question):
        q, q_len = question
        return torch.zeros_like(q), q_len

    def to_device(self, question, device: str):
        q, q_len = question
        return q.to(device), q_len

    def question_side(self, pixels: torch.Tensor, target: tuple):
        # The image features do not depend on the question: computed once, a question-side pass
        # runs the net only (exact, and on ResNet-152 at 448 the backbone is nearly all of a pass).
        with torch.no_grad():
            features = self.module.backbone(pixels.detach())
        return (lambda q, q_len, v, index: self.module.net(v, q, q_len).gather(1, index[:, None])[:, 0]), (
            features,
            target[0],
        )

    def training_logits(self, pixels, image_of, question):
        # the backbone runs once per image and its features serve every question about it
        return self.module.net(self.module.backbone(pixels)[image_of], *question)

    def cam_layer(self) -> nn.Module:
        return self.module.backbone.layer4

    def text_embedding(self) -> nn.Module:
        return self.module.net.text.embedding

    def blocks(self) -> list[tuple[str, nn.Module]]:
        net, backbone = self.module.net, self.module.backbone
        blocks = [("classifier", net.classifier), ("attention", net.attention), ("text", net.text)]
        for name in ("layer4", "layer3", "layer2", "layer1"):
            if hasattr(backbone, name):
                blocks.append((f"backbone.{name}", getattr(backbone, name)))
        if hasattr(backbone, "conv1"):
            blocks.append(("backbone.stem", nn.ModuleList([backbone.conv1, backbone.bn1])))
        return blocks

    def identity(self) -> dict:
        return {**super().identity(), "backbone": self.backbone_spec, "backbone_weights": str(self.backbone_weights)}

    def tags(self) -> dict[str, str]:
        spec = self.backbone_spec
        return {
            **super().tags(),
            "backbone": self.description,
            "backbone_variant": str(spec.get("variant", spec.get("type"))),
        }

    def save(self, path, *, config: dict, tracker: dict | None = None, name: str = "vqa-interp embedded") -> None:
        weights = {f"module.{k}": v.detach().cpu() for k, v in self.module.net.state_dict().items()}
        weights.update(
            {f"module.{BACKBONE_PREFIX}{k}": v.detach().cpu() for k, v in self.module.backbone.state_dict().items()}
        )
        save_checkpoint(
            path,
            weights,
            question_vocab=self.question_vocab,
            answer_vocab=self.answer_vocab,
            config=config,
            tracker=tracker,
            name=name,
        )


def load_model(
    checkpoint: str | Path,
    backbone_spec: dict,
    backbone_weights: str | Path | None = None,
    geometry: InputGeometry | None = None,
) -> KazemiModel:
    """A :class:`KazemiModel` in eval mode from a pytorch-vqa checkpoint.

    Net sizes (vocabulary, LSTM, attention, answers) come from the weights themselves; the
    backbone from ``module.backbone.*`` in the checkpoint or else from ``backbone_weights``.
    """
    payload = read_checkpoint(checkpoint)
    weights = strip_module(payload["weights"])
    backbone_state = {k[len(BACKBONE_PREFIX) :]: v for k, v in weights.items() if k.startswith(BACKBONE_PREFIX)}
    net_state = {k: v for k, v in weights.items() if not k.startswith(BACKBONE_PREFIX)}
    try:
        dims = net_dims_from_weights(net_state)
    except KeyError as exc:
        raise CheckpointError(
            f"model.checkpoint: {checkpoint} lacks the weight {exc}; expected pytorch-vqa's "
            "Net keys (module.text.*, module.attention.*, module.classifier.*)."
        ) from exc
    net = Net(**dims, drop=0.0)
    net.load_state_dict(net_state, strict=True)
    backbone = build_backbone(backbone_spec)
    if backbone_state:
        backbone.load_state_dict(backbone_state, strict=True)
        description = f"{backbone_spec.get('type')} (weights from the checkpoint)"
    elif backbone_weights is not None:
        variant = str(backbone_spec.get("variant", "caffe"))
        backbone.load_torchvision_state_dict(load_backbone_weights(backbone_weights, variant))
        description = f"{variant} resnet{backbone_spec.get('depth', 152)} from {Path(backbone_weights).name}"
    else:
        raise CheckpointError(
            f"model.backbone_weights: the checkpoint {checkpoint} holds no backbone weights, so the image "
            "backbone needs its own file. Set model.backbone_weights=FILE (the Caffe ResNet-152 resnet152-95e0e999.pth)."
        )
    vocab = payload["vocab"]
    if len(vocab["answer"]) != dims["max_answers"]:
        raise CheckpointError(
            f"model.checkpoint: {checkpoint} has {len(vocab['answer'])} answers in its vocab but "
            f"{dims['max_answers']} classifier outputs; the file is inconsistent."
        )
    return KazemiModel(
        KazemiNetwork(backbone, net).eval(),
        vocab["question"],
        vocab["answer"],
        geometry or InputGeometry(),
        checkpoint_digest=file_digest(checkpoint),
        description=description,
        backbone_spec=backbone_spec,
        backbone_weights=None if backbone_state else backbone_weights,
    )


# ------------------------------------------------------------------ the registered kind
def resolve_backbone_weights(model_settings) -> Path | None:
    """``model.backbone_weights``, else the variant's file in torch's hub cache (None for the small CNN)."""
    options = model_settings.options
    if options.get("backbone_weights"):
        return Path(options["backbone_weights"])
    spec = options.get("backbone") or {}
    if spec.get("type") != "resnet":
        return None
    variant = str(spec.get("variant", "caffe"))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    wanted = BACKBONE_FILES[variant].format(depth=int(spec.get("depth", 152)))
    if (hub / wanted).is_file():
        return hub / wanted
    raise CheckpointError(
        f"model.backbone_weights is not set and {wanted} is not in {hub}. Expected {BACKBONE_SOURCES[variant]}. "
        "Place it there or set model.backbone_weights=FILE; nothing is downloaded at run time."
    )


BACKBONE_TYPES = ("small_cnn", "resnet")


@dataclass(frozen=True)
class KazemiOptions:
    """``model.*`` of ``model.kind=kazemi`` (a pytorch-vqa checkpoint, or the embedded CNN+LSTM)."""

    backbone: dict = option({}, "the image backbone: type (small_cnn | resnet), depth, variant, channels", kind=dict)
    backbone_weights: str | None = option(None, "the ResNet's weights file (null: torch's hub cache)", kind=str)
    max_answers: int = option(3000, "the answer list's size, at most (the most frequent training answers)", minimum=1)
    dims: dict | None = option(
        None, "the network's sizes (embedding, LSTM, attention, classifier; trained here)", kind=dict
    )
    train: dict | None = option(
        None, "training on the embedded benchmark: epochs, batch_size, lr, seed, threads", kind=dict
    )


def _validate(model_settings) -> None:
    spec = model_settings.options.get("backbone") or {}
    if spec.get("type") not in BACKBONE_TYPES:
        raise ConfigError(
            f"model.backbone.type={spec.get('type')!r} is not allowed; expected one of {list(BACKBONE_TYPES)}."
        )
    if spec["type"] == "resnet" and spec.get("variant", "caffe") not in RESNET_VARIANTS:
        raise ConfigError(
            f"model.backbone.variant={spec.get('variant')!r} is not allowed; expected one of {list(RESNET_VARIANTS)}."
        )


def _preflight(model_settings) -> None:
    """A named checkpoint or backbone file that is missing fails before any run or model work."""
    if model_settings.checkpoint and not Path(model_settings.checkpoint).is_file():
        read_checkpoint(model_settings.checkpoint)  # raises the explanatory CheckpointError
    weights = resolve_backbone_weights(model_settings)
    if weights is not None and not Path(weights).is_file():
        load_backbone_weights(weights, str(model_settings.options["backbone"].get("variant", "caffe")))


def _load(model_settings, checkpoint: Path) -> KazemiModel:
    return load_model(
        checkpoint,
        model_settings.options["backbone"],
        resolve_backbone_weights(model_settings),
        InputGeometry(model_settings.input_size, model_settings.central_fraction),
    )


def _untrained(model_settings, questions: Sequence[str], answers: Sequence[Sequence[str]]) -> KazemiModel:
    """The embedded model before training: the small CNN backbone and a net sized by ``model.dims``,
    the vocabularies from the training questions and their answers (``model.max_answers``)."""
    options = model_settings.options
    q_vocab = build_question_vocab(questions)
    a_vocab = build_answer_vocab(answers, int(options.get("max_answers", KazemiOptions.max_answers)))
    backbone = build_backbone(options["backbone"])
    net = Net(len(q_vocab) + 1, v_features=backbone.out_channels, max_answers=len(a_vocab), **options.get("dims", {}))
    return KazemiModel(
        KazemiNetwork(backbone, net),
        q_vocab,
        a_vocab,
        InputGeometry(model_settings.input_size, model_settings.central_fraction),
        description=f"{options['backbone'].get('type')} (untrained)",
        backbone_spec=options["backbone"],
    )


def _train_signature(model_settings) -> dict:
    options = model_settings.options
    return {
        "backbone": options.get("backbone"),
        "dims": options.get("dims", {}),
        "input": model_settings.input,
        "train": options.get("train", {}),
    }


register_model(
    ModelKind(
        "kazemi",
        _load,
        KazemiModel.provides,
        validate=_validate,
        options=KazemiOptions,
        preflight=_preflight,
        untrained=_untrained,
        train_signature=_train_signature,
        description="Kazemi & Elqursh (2017) CNN+LSTM with two attention glimpses (pytorch-vqa)",
    )
)
