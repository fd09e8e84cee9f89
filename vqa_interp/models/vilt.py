"""ViLT (Kim et al. 2021) behind the model interface: Hugging Face ``ViltForQuestionAnswering`` loaded
from a ``save_pretrained`` folder (``model=vilt model.pretrained=DIR``; nothing is downloaded), or a
small one built from a ``ViltConfig`` and trained on the embedded benchmark (``model=embedded_vilt``).

What this file fixes about running ViLT for attribution (each checked in tests/test_vilt.py):

- **Deterministic patches.** ``ViltEmbeddings.visual_embed`` always calls ``torch.multinomial``: it
  keeps every patch in a random order (or drops some, with ``max_image_length >= 0``), consuming the
  global RNG and permuting the attention columns. :class:`ViltNet` builds the image embeddings itself
  (patch projection + position embeddings interpolated to the grid, the image [CLS] first), in
  row-major patch order, with the pixel mask all ones: the tool's input is the square crop every
  model gets (``model.input``), so there is no padding to sample.
- **Eager attention only.** The padding mask is additive and applied to eager attention; the model is
  loaded with ``attn_implementation="eager"`` and a checkpoint asking for another is refused.
- **Token layout.** ``L`` text tokens, then the image [CLS] at ``L``, then the ``h x w`` patches. The
  answer head reads text token 0 (``pooler(sequence[:, 0])``), so a transformer-native map is row 0
  of an attention or relevancy matrix over columns ``L + 1 ...``.
- **Grad-CAM on patches.** :attr:`ViltNet.cam` is an identity on the *input* of the last block with
  the patch tokens laid out as a grid ``[B, D, h, w]`` (the last block's output has no gradient on
  the patches: the head reads token 0), so Captum's ``LayerGradCam`` works on it as on a CNN layer.
- Pixels arrive normalised like every model's (ImageNet mean/std, :mod:`vqa_interp.data.images`);
  the net maps them to ViLT's own normalisation (mean = std = 0.5) as its first, linear step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from vqa_interp.data.answers import normalize_answer
from vqa_interp.data.images import InputGeometry
from vqa_interp.errors import CheckpointError, ConfigError
from vqa_interp.models.base import VqaModel
from vqa_interp.models.checkpoint import file_digest
from vqa_interp.models.registry import ModelKind, check_pretrained_folder, register_model
from vqa_interp.models.vilt_net import ViltNet
from vqa_interp.models.vocab import build_answer_vocab
from vqa_interp.util.options import option

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FOLDER_FILES = ("config.json",)
MAX_QUESTION_TOKENS = 40  # question tokens a ViLT folder without the option takes (conf/model/vilt.yaml sets it)


class ViltModel(VqaModel):
    """A ViLT VQA model: question encoding ``(input_ids [B, L], attention_mask [B, L], token_type_ids
    [B, L])`` from its BERT tokenizer (``L = model.max_question_tokens``); attention maps over the
    ``h x w`` patch grid; the CAM layer is the last block's input patches; the text embedding is the
    word embedding; blocks from the output down: the classifier, the encoder blocks from the top,
    the embeddings."""

    kind = "vilt"
    provides = frozenset({"pixels", "cam_layer", "text_embedding", "blocks", "attentions"})

    def __init__(
        self,
        module: ViltNet,
        tokenizer,
        answers: Sequence[str],
        geometry: InputGeometry,
        *,
        max_tokens: int = 40,
        checkpoint_digest: str = "",
        description: str = "",
    ):
        self.module = module
        self.tokenizer = tokenizer
        self.answers = list(answers)
        self.geometry = geometry
        self.max_tokens = min(int(max_tokens), int(module.config.max_position_embeddings))
        self.checkpoint_digest = checkpoint_digest
        self.description = description

    def encode(self, questions: Sequence[str], pad_to: int | None = None):
        """``(input_ids, attention_mask, token_type_ids)``, each ``[B, L]``: padded to the longest of
        ``questions`` (or to ``pad_to``), truncated at ``max_tokens``. The padding is masked out (the
        logits and maps do not depend on it, tested); padding every question to ``max_tokens`` cost
        ~20% more per pass on the embedded questions (24 text tokens where ~11 are used)."""
        padding = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": "longest"}
        encoded = self.tokenizer(
            list(questions), truncation=True, return_tensors="pt", **{"max_length": self.max_tokens, **padding}
        )
        return encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"]

    def tokens(self, question: str) -> list[str]:
        ids = self.tokenizer(question, truncation=True, max_length=self.max_tokens)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(ids)

    def token_mask(self, question) -> torch.Tensor:
        return question[1].bool()

    def question_baseline(self, question):
        input_ids, attention_mask, token_type_ids = question
        pad = self.tokenizer.pad_token_id or 0
        keep = (input_ids == self.tokenizer.cls_token_id) | (input_ids == self.tokenizer.sep_token_id)
        return torch.where(keep, input_ids, torch.full_like(input_ids, pad)), attention_mask, token_type_ids

    def attentions(self, pixels: torch.Tensor, question, target=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(target logits [B] (all logits [B, A] without ``target``), [A_l [B, H, T, T]])`` with every
        layer's attention probabilities in the graph."""
        logits, attentions = self.module.run(pixels, *question, output_attentions=True)
        if target is not None:
            logits = logits.gather(1, target[0][:, None].to(logits.device))[:, 0]
        return logits, attentions

    def token_layout(self, pixels: torch.Tensor, question, target=None) -> tuple[int, slice, tuple[int, int]]:
        """``(row the answer head reads, the patch columns, the grid (h, w))``."""
        length = question[0].shape[1]
        h, w = self.module.grid(pixels)
        return 0, slice(length + 1, length + 1 + h * w), (h, w)

    def cam_layer(self) -> nn.Module:
        return self.module.cam

    def text_embedding(self) -> nn.Module:
        return self.module.hf.vilt.embeddings.text_embeddings.word_embeddings

    def blocks(self) -> list[tuple[str, nn.Module]]:
        hf = self.module.hf
        layers = list(hf.vilt.encoder.layer)
        blocks = [("classifier", nn.ModuleList([hf.classifier, hf.vilt.pooler, hf.vilt.layernorm]))]
        blocks += [(f"encoder.layer{i}", layers[i]) for i in reversed(range(len(layers)))]
        blocks.append(("embeddings", hf.vilt.embeddings))
        return blocks

    def tags(self) -> dict[str, str]:
        c = self.module.config
        return {
            **super().tags(),
            "backbone": f"vilt hidden {c.hidden_size}, {c.num_hidden_layers} layers, "
            f"{c.num_attention_heads} heads, patch {c.patch_size}",
        }

    def save(self, path, *, config: dict, tracker: dict | None = None, name: str = "vqa-interp embedded") -> None:
        """A ``save_pretrained`` folder (the model with its ``id2label`` and the tokenizer) at ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.module.hf.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / "vqa_interp.json").write_text(
            json.dumps({"name": name, "config": config, "tracker": tracker or {}}, default=str)
        )


# ------------------------------------------------------------------ loading and building
def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as exc:  # a dependency: only a broken install lacks it
        raise ConfigError("model.kind=vilt needs the transformers package (pip install -e .).") from exc


def check_folder(folder) -> Path:
    """A ``save_pretrained`` folder with the model's config, weights and a tokenizer, or a
    :class:`CheckpointError` naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"model.pretrained: {folder} is not a folder. Expected a folder written by "
            "ViltForQuestionAnswering.save_pretrained (config.json, model.safetensors) with its "
            "tokenizer (vocab.txt), e.g. a download of dandelin/vilt-b32-finetuned-vqa."
        )
    missing = [f for f in FOLDER_FILES if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if not any((folder / t).is_file() for t in ("vocab.txt", "tokenizer.json")):
        missing.append("vocab.txt")  # or tokenizer.json: either holds the vocabulary
    if missing:
        raise CheckpointError(
            f"model.pretrained: {folder} lacks {missing}; expected a save_pretrained folder of "
            "ViltForQuestionAnswering and its tokenizer (processor.save_pretrained writes vocab.txt)."
        )
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "vilt":
        raise CheckpointError(
            f"model.pretrained: {folder}/config.json has model_type={config.get('model_type')!r}; "
            "expected 'vilt' (a ViltForQuestionAnswering checkpoint)."
        )
    if not config.get("id2label"):
        raise CheckpointError(
            f"model.pretrained: {folder}/config.json has no id2label; a VQA head needs its "
            "answer strings (ViltForQuestionAnswering's config)."
        )
    return folder


def weights_file(folder: Path) -> Path:
    return next(folder / w for w in ("model.safetensors", "pytorch_model.bin") if (folder / w).is_file())


def load_folder(folder, geometry: InputGeometry, max_tokens: int = 40) -> ViltModel:
    """A :class:`ViltModel` (eval mode, eager attention) from a ``save_pretrained`` folder, offline."""
    _require_transformers()
    from transformers import BertTokenizer, ViltForQuestionAnswering

    folder = check_folder(folder)
    hf = ViltForQuestionAnswering.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    implementation = getattr(hf.config, "_attn_implementation", "eager")
    if implementation != "eager":
        raise CheckpointError(
            f"model.pretrained: {folder} loads with attention {implementation!r}; the maps need "
            "eager attention (its padding mask and its probabilities)."
        )
    patch = hf.config.patch_size
    if geometry.size % patch:
        raise ConfigError(
            f"model.input.size={geometry.size} is not a multiple of the patch size {patch} of "
            f"{folder}; use a multiple (ViLT-B/32: 384)."
        )
    hf.config.max_image_length = -1
    tokenizer = BertTokenizer.from_pretrained(folder, local_files_only=True)
    labels = hf.config.id2label
    answers = [normalize_answer(str(labels[i] if i in labels else labels[str(i)])) for i in range(len(labels))]
    model = ViltModel(
        ViltNet(hf).eval(),
        tokenizer,
        answers,
        geometry,
        max_tokens=max_tokens,
        checkpoint_digest=file_digest(weights_file(folder)),
        description=f"ViLT from {folder.name}",
    )
    # a head trained here minimises cross-entropy over the answers (models/training.py); any other
    # (dandelin's VQA head) binary cross-entropy on soft scores: its probabilities are sigmoids
    model.confidence = "softmax" if (folder / "vqa_interp.json").exists() else "sigmoid"
    return model.eval()


def untrained(model_settings, questions: Sequence[str], answers: Sequence[Sequence[str]]) -> ViltModel:
    """A small ViLT from ``model.vilt`` (a ``ViltConfig``'s sizes), its word vocabulary and answer
    labels from the training questions (``model.max_answers``)."""
    _require_transformers()
    from transformers import BertTokenizer, ViltConfig, ViltForQuestionAnswering

    from vqa_interp.data.answers import tokenize_question

    options = model_settings.options
    words = sorted({w for q in questions for w in tokenize_question(q)} | set("?,.'"))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    a_vocab = build_answer_vocab(answers, int(options.get("max_answers", ViltOptions.max_answers)))
    labels = [""] * len(a_vocab)
    for answer, index in a_vocab.items():
        labels[index] = answer
    sizes = dict(options.get("vilt", {}))
    config = ViltConfig(
        vocab_size=len(vocab),
        image_size=int(model_settings.input_size),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={a: i for i, a in enumerate(labels)},
        max_image_length=-1,
        max_position_embeddings=int(options.get("max_question_tokens", MAX_QUESTION_TOKENS)),
        attn_implementation="eager",
        **sizes,
    )
    hf = ViltForQuestionAnswering(config)
    geometry = InputGeometry(model_settings.input_size, model_settings.central_fraction)
    return ViltModel(
        ViltNet(hf),
        tokenizer,
        labels,
        geometry,
        max_tokens=config.max_position_embeddings,
        description="embedded ViLT (untrained)",
    )


@dataclass(frozen=True)
class ViltOptions:
    """``model.*`` of ``model.kind=vilt`` (a save_pretrained folder, or the embedded ViLT)."""

    pretrained: str | None = option(None, "the save_pretrained folder (model=vilt: required)", kind=str)
    max_question_tokens: int = option(MAX_QUESTION_TOKENS, "question tokens the text embedding takes", minimum=1)
    max_answers: int = option(3000, "the answer list's size, at most (the most frequent training answers)", minimum=1)
    vilt: dict | None = option(None, "the embedded ViLT's ViltConfig sizes (trained here)", kind=dict)
    train: dict | None = option(
        None, "training on the embedded benchmark: epochs, batch_size, lr, seed, threads", kind=dict
    )


def _validate(model_settings) -> None:
    sizes = model_settings.options.get("vilt") or {}
    hidden, heads = sizes.get("hidden_size", 768), sizes.get("num_attention_heads", 12)
    if hidden % heads:
        raise ConfigError(
            f"model.vilt.hidden_size={hidden} is not a multiple of model.vilt.num_attention_heads={heads}."
        )
    patch = sizes.get("patch_size", 32)
    if model_settings.input_size % patch:
        raise ConfigError(
            f"model.input.size={model_settings.input_size} is not a multiple of model.vilt.patch_size={patch}."
        )


def _preflight(model_settings) -> None:
    """A named folder that is not a ViLT save_pretrained folder, or ``model=vilt`` without one, fails
    before any run or model work (a config without ``train`` is loaded, never trained)."""
    check_pretrained_folder(
        model_settings,
        check_folder,
        loads="ViltForQuestionAnswering",
        example="dandelin/vilt-b32-finetuned-vqa",
        embedded="embedded_vilt",
    )


def _load(model_settings, checkpoint: Path | None) -> ViltModel:
    folder = model_settings.options.get("pretrained") or checkpoint
    if not folder:
        raise ConfigError(
            "model.pretrained: model=vilt loads a save_pretrained folder; set model.pretrained=DIR "
            "(e.g. a download of dandelin/vilt-b32-finetuned-vqa)."
        )
    return load_folder(
        folder,
        InputGeometry(model_settings.input_size, model_settings.central_fraction),
        int(model_settings.options.get("max_question_tokens", MAX_QUESTION_TOKENS)),
    )


def _train_signature(model_settings) -> dict:
    options = model_settings.options
    return {
        "vilt": options.get("vilt", {}),
        "input": model_settings.input,
        "train": options.get("train", {}),
        "max_question_tokens": options.get("max_question_tokens", MAX_QUESTION_TOKENS),
    }


register_model(
    ModelKind(
        "vilt",
        _load,
        ViltModel.provides,
        validate=_validate,
        options=ViltOptions,
        preflight=_preflight,
        untrained=untrained,
        train_signature=_train_signature,
        checkpoint_suffix="",
        description="ViLT (Kim et al. 2021) from Hugging Face transformers",
    )
)
