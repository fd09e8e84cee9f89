"""``model.kind=hf_vlm``: a generative VLM's ``save_pretrained`` folder checked, loaded (local files
only, eager attention) and registered; the embedded LLaVA is the same kind, built and trained here
(:mod:`vqa_interp.models.embedded_llava`). The model itself is :class:`~vqa_interp.models.generative.GenerativeVlm`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vqa_interp.data.images import InputGeometry
from vqa_interp.errors import CheckpointError, ConfigError
from vqa_interp.models.generative import ANSWER_MODES, GenerativeVlm
from vqa_interp.models.registry import ModelKind, check_pretrained_folder, register_model
from vqa_interp.models.shipped import content_digest
from vqa_interp.models.vlm_families import FAMILIES, UNSUPPORTED
from vqa_interp.util.options import option, read_options

# ------------------------------------------------------------------ loading
FOLDER_FILES = ("config.json",)


def check_folder(folder) -> tuple[Path, str]:
    """``(folder, model_type)`` of a ``save_pretrained`` folder of a supported family, or a
    :class:`CheckpointError` naming what is missing or unsupported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"model.pretrained: {folder} is not a folder. Expected a folder written by "
            "AutoModelForImageTextToText.save_pretrained and its processor's save_pretrained "
            "(config.json, model.safetensors, tokenizer and processor files)."
        )
    missing = [f for f in FOLDER_FILES if not (folder / f).is_file()]
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        missing.append("model.safetensors")
    if not any((folder / t).is_file() for t in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        missing.append("tokenizer.json")
    if not any((folder / t).is_file() for t in ("processor_config.json", "preprocessor_config.json")):
        missing.append("processor_config.json")
    if missing:
        raise CheckpointError(
            f"model.pretrained: {folder} lacks {missing}; expected the save_pretrained folder of an "
            "image-text-to-text model and its processor (model.save_pretrained(DIR); "
            "processor.save_pretrained(DIR))."
        )
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type in UNSUPPORTED:
        raise CheckpointError(
            f"model.pretrained: {folder} is a {model_type} model; {UNSUPPORTED[model_type]}. "
            f"Supported families: {sorted(FAMILIES)}."
        )
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"model.pretrained: {folder} has model_type={model_type!r}; the tool cannot build its "
            f"pixel input from the square image every model gets. Supported families: "
            f"{sorted(FAMILIES)}."
        )
    return folder, model_type


def load_folder(
    folder,
    geometry: InputGeometry,
    *,
    prompt: str | None = None,
    answer_mode: str = "open",
    max_new_tokens: int = 4,
    description: str | None = None,
) -> GenerativeVlm:
    """A :class:`GenerativeVlm` (eval mode, eager attention) from a ``save_pretrained`` folder, offline."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, model_type = check_folder(folder)
    hf = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    digest = content_digest(weights[0]) if len(weights) == 1 else content_digest(folder)
    return GenerativeVlm(
        hf.eval(),
        processor,
        FAMILIES[model_type],
        geometry,
        prompt=prompt,
        answer_mode=answer_mode,
        max_new_tokens=max_new_tokens,
        checkpoint_digest=digest,
        description=description or f"{model_type} from {folder.name}",
    ).eval()


@dataclass(frozen=True)
class HfVlmOptions:
    """``model.*`` of ``model.kind=hf_vlm`` (a save_pretrained folder, or the embedded LLaVA)."""

    pretrained: str | None = option(None, "the save_pretrained folder (model=hf_vlm: required)", kind=str)
    prompt: str | None = option(
        None, "null: the processor's chat template; or a format string with {question}", kind=str
    )
    answer_mode: str = option(
        "open", "open (greedy decoding) | multiple_choice (argmax over the question's candidates)", choices=ANSWER_MODES
    )
    max_new_tokens: int = option(
        4, "at most this many generated tokens (VQA answers are one to three words)", minimum=1
    )
    llava: dict | None = option(None, "the embedded LLaVA's sizes: patch_size, vision, text (trained here)", kind=dict)
    train: dict | None = option(
        None, "training on the embedded benchmark: epochs, batch_size, lr, seed, threads", kind=dict
    )


def _options(model_settings) -> dict:
    o = read_options(HfVlmOptions, model_settings.options, "model")
    return {"prompt": o.prompt, "answer_mode": o.answer_mode, "max_new_tokens": o.max_new_tokens}


def _validate(model_settings) -> None:
    """What :class:`HfVlmOptions` cannot say alone: a prompt must hold ``{question}``."""
    prompt = model_settings.options.get("prompt")  # its type is checked by HfVlmOptions before this
    if prompt is not None and "{question}" not in str(prompt):
        raise ConfigError(
            f"model.prompt={prompt!r} has no {{question}}; write the prompt with "
            "{question} where the question goes (the image tokens come from the processor)."
        )


def _preflight(model_settings) -> None:
    check_pretrained_folder(
        model_settings,
        check_folder,
        loads="an image-text-to-text model",
        example="llava-hf/llava-1.5-7b-hf",
        embedded="embedded_llava",
    )


def _load(model_settings, checkpoint: Path | None) -> GenerativeVlm:
    folder = model_settings.options.get("pretrained") or checkpoint
    if not folder:
        _preflight(model_settings)
    return load_folder(
        folder, InputGeometry(model_settings.input_size, model_settings.central_fraction), **_options(model_settings)
    )


def _untrained(model_settings, questions, answers) -> GenerativeVlm:
    """The embedded LLaVA before training (:mod:`vqa_interp.models.embedded_llava`)."""
    from vqa_interp.models.embedded_llava import untrained_parts

    hf, processor = untrained_parts(model_settings, questions, answers)
    return GenerativeVlm(
        hf,
        processor,
        FAMILIES["llava"],
        InputGeometry(model_settings.input_size, model_settings.central_fraction),
        **_options(model_settings),
        description="embedded LLaVA (untrained)",
    )


# how train_generative batches: a model trained another way (one sequence per question) is another model
BATCHES = "images, each image's questions packed into one sequence"


def _train_signature(model_settings) -> dict:
    options = model_settings.options
    return {
        "llava": options.get("llava", {}),
        "input": model_settings.input,
        "train": options.get("train", {}),
        "batches": BATCHES,
    }


register_model(
    ModelKind(
        "hf_vlm",
        _load,
        GenerativeVlm.provides,
        validate=_validate,
        options=HfVlmOptions,
        preflight=_preflight,
        untrained=_untrained,
        train_signature=_train_signature,
        checkpoint_suffix="",
        description="generative VLMs (LLaVA, Qwen2-VL, PaliGemma) from Hugging Face AutoModelForImageTextToText",
    )
)
