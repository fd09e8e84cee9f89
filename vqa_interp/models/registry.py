"""The model registry: ``model.kind`` -> a :class:`ModelKind` (how to check its config, find its files,
load it, and, for a kind trained on the embedded benchmark, build it untrained).

To add a model: one file with a :class:`~vqa_interp.models.base.VqaModel` subclass and a
:func:`register_model` call, plus one ``conf/model/<name>.yaml`` whose ``kind`` names it
(``docs/design/extending.md``, "Adding a model").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vqa_interp.errors import ConfigError, NotApplicableError


@dataclass(frozen=True)
class ModelKind:
    """One kind of model.

    - ``load(model_settings, checkpoint: Path | None) -> VqaModel`` (eval mode, on the CPU);
    - ``provides``: its attachment points (:data:`vqa_interp.models.base.ATTACHMENTS`), known before
      loading so that a method it cannot serve is refused before any work;
    - ``options``: the kind's options class (:func:`~vqa_interp.util.options.option` fields): every
      key of ``model.*`` but ``name``, ``kind``, ``checkpoint`` and ``input`` is one of its fields,
      checked before any work (None: the kind checks its keys itself);
    - ``validate(model_settings)``: raise :class:`ConfigError` for what the fields cannot say alone;
    - ``preflight(model_settings)``: raise for a named file that is missing (before a run opens);
    - ``untrained(model_settings, questions, answers) -> VqaModel``: a fresh model sized for these
      training questions and answer lists (kinds that can be trained on the embedded benchmark when
      ``model.checkpoint`` is null); None for a kind that is only loaded;
    - ``train_signature(model_settings) -> dict``: what a trained model depends on besides the data
      (its cached checkpoint is named by it);
    - ``needs_checkpoint``: False for a kind built from its config alone (``load`` gets None).
    """

    name: str
    load: Callable
    provides: frozenset[str]
    validate: Callable = lambda model_settings: None
    options: type | None = None
    preflight: Callable = lambda model_settings: None
    untrained: Callable | None = None
    train_signature: Callable = lambda m: {"kind": m.kind, "options": m.options, "input": m.input}
    description: str = ""
    needs_checkpoint: bool = True
    checkpoint_suffix: str = ".pth"  # of a trained embedded model's file ("" for a folder)

    @property
    def trainable(self) -> bool:
        return self.untrained is not None


MODELS: dict[str, ModelKind] = {}


def register_model(kind: ModelKind) -> ModelKind:
    MODELS[kind.name] = kind
    return kind


def model_kind(name: str) -> ModelKind:
    if name not in MODELS:
        raise ConfigError(
            f"model.kind={name!r} is not allowed; expected one of {sorted(MODELS)} (or a kind "
            "registered by a module in plugins)."
        )
    return MODELS[name]


def check_model_settings(model_settings) -> ModelKind:
    """The kind of ``model.kind``, its options validated (raises :class:`ConfigError`)."""
    kind = model_kind(model_settings.kind)
    if kind.options is not None:
        from vqa_interp.util.options import read_options

        read_options(kind.options, model_settings.options, "model")
    kind.validate(model_settings)
    threads = (model_settings.options.get("train") or {}).get("threads", "auto")
    if threads != "auto" and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ConfigError(
            f"model.train.threads={threads!r} is not allowed; expected auto (the free cores, re-checked "
            "each epoch) or a whole number >= 1 (a fixed count: the same weights bit for bit)."
        )
    return kind


def check_method(kind: ModelKind, method: str, needs: tuple[str, ...]) -> None:
    """Refuse a method whose attachment points the model kind lacks, before any work."""
    from vqa_interp.models.base import ATTACHMENTS

    missing = [n for n in needs if not any(a in kind.provides for a in n.split("|"))]  # a|b: either
    if missing:
        described = "; ".join(" or ".join(ATTACHMENTS[a] for a in n.split("|")) for n in missing)
        raise NotApplicableError(
            f"method={method} needs the model's {', '.join(n.replace('|', ' or ') for n in missing)} "
            f"({described}), which model.kind={kind.name} does not "
            f"have; choose another method (model.kind={kind.name} provides {sorted(kind.provides)})."
        )


def load(model_settings, checkpoint: Path | None, device: str = "cpu"):
    """The :class:`~vqa_interp.models.base.VqaModel` of the settings, in eval mode on ``device``, its
    parameters frozen (:meth:`~vqa_interp.models.base.VqaModel.frozen`)."""
    kind = model_kind(model_settings.kind)
    return kind.load(model_settings, checkpoint).eval().frozen().to(device)


def check_pretrained_folder(model_settings, check_folder, *, loads: str, example: str, embedded: str) -> None:
    """The preflight of a kind that loads a ``save_pretrained`` folder: a named folder must pass
    ``check_folder``; without one, a config that cannot train (no ``train`` key) is one line naming
    ``model.pretrained``, what the folder holds (``loads``), an ``example`` download and the
    ``embedded`` model trained here."""
    folder = model_settings.options.get("pretrained") or model_settings.checkpoint
    if folder:
        check_folder(folder)
    elif "train" not in model_settings.options:
        from vqa_interp.errors import ConfigError

        raise ConfigError(
            f"model.pretrained: model={model_settings.name} loads a save_pretrained folder of {loads}; set "
            f"model.pretrained=DIR (e.g. a download of {example}), or use model={embedded} (trained here)."
        )
