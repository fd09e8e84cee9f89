"""Stage 2, model: the model kind checked against the run (its options, its files, the method's
attachment points, a training split for a model trained on first use) before any run opens, then
the model loaded through the registry (:mod:`vqa_interp.models.registry`)."""

from __future__ import annotations

from pathlib import Path

from vqa_interp.attribution import METHODS
from vqa_interp.errors import ConfigError
from vqa_interp.models import registry
from vqa_interp.models.base import VqaModel


def preflight(settings, dataset) -> registry.ModelKind:
    """Everything about the model that can fail without loading it: ``model.kind`` and its options,
    the named files, the method's needs, and (no ``model.checkpoint`` for a trainable kind) that
    the dataset has the train split to train on."""
    m = settings.model
    kind = registry.check_model_settings(m)
    method = settings.attribution.method
    if METHODS[method].kind != "baseline":
        registry.check_method(kind, method, METHODS[method].needs)
    kind.preflight(m)
    if not m.checkpoint and kind.needs_checkpoint:
        if not kind.trainable:
            raise ConfigError(
                f"model.checkpoint: model={m.name} (kind {kind.name}) is loaded from a checkpoint; set "
                "model.checkpoint=FILE."
            )
        if not dataset.has_training_split:
            raise ConfigError(
                f"model={m.name} is trained on the embedded benchmark's train split, which "
                f"data={dataset.name} does not have: with real data use model=kazemi "
                "model.checkpoint=FILE (the pytorch-vqa checkpoint), or give model.checkpoint=FILE of "
                "a trained embedded model."
            )
    return kind


def load(settings, checkpoint: Path | None) -> VqaModel:
    """The run's model, in eval mode on ``settings.device``."""
    return registry.load(settings.model, checkpoint, settings.device)
