"""``python -m vqa_interp.train``: (re)train the embedded model (a trainable ``model.kind``) explicitly.

A Hydra app over the same config as ``vqa_interp.run``; it logs the training run to MLflow and
writes the kind's checkpoint. :func:`ensure_model` is what ``vqa_interp.run`` calls *before* it
opens its evaluation run, so an evaluation run never trains inside itself.
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vqa_interp.util.locking import file_lock

log = logging.getLogger("vqa_interp.train")


def _train_logged(settings, dataset, path: Path) -> str:
    """Train into ``path`` inside a training run of its own; returns that run's ID."""
    from vqa_interp.models.training import train_and_save
    from vqa_interp.tracking.store import training_run

    with training_run(settings) as tracker:
        def on_epoch(epoch, history):
            tracker.log_metrics({"train_loss": history["loss"][-1], "train_accuracy": history["train_accuracy"][-1],
                                 **({"val_accuracy": history["val_accuracy"][-1]} if "val_accuracy" in history
                                    else {})}, step=epoch)

        result = train_and_save(settings.model, dataset, path, on_epoch=on_epoch)
        tracker.log_metrics(result)
        tracker.set_tags({"checkpoint_path": str(path.resolve())})
    return tracker.run_id


def ensure_model(settings, dataset) -> Path | None:
    """The checkpoint to evaluate: ``model.checkpoint`` if given, else the trained model of a
    trainable kind for these settings, trained (once, under a lock, in its own training run) when
    missing; None for a kind built from its config alone."""
    from vqa_interp.models.registry import model_kind
    from vqa_interp.models.training import embedded_checkpoint_path

    if settings.model.checkpoint:
        return Path(settings.model.checkpoint)
    if not model_kind(settings.model.kind).trainable:
        return None
    path = embedded_checkpoint_path(settings.model, settings.home, dataset)
    with file_lock(path.parent / f".{path.name}.lock"):
        if not path.exists():
            log.info("no embedded model at %s yet: training it (once; later runs reuse it)", path)
            _train_logged(settings, dataset, path)
    return path


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.models.registry import model_kind
    from vqa_interp.models.training import embedded_checkpoint_path
    from vqa_interp.settings import from_config

    settings = from_config(cfg)
    if not model_kind(settings.model.kind).trainable or settings.model.checkpoint:
        raise SystemExit("python -m vqa_interp.train trains a model on the embedded benchmark (model=embedded); "
                         f"model={settings.model.name} is loaded from model.checkpoint.")
    dataset = dataset_for(settings.data, settings.home)
    path = embedded_checkpoint_path(settings.model, settings.home, dataset)
    with file_lock(path.parent / f".{path.name}.lock"):
        run_id = _train_logged(settings, dataset, path)
    print(f"checkpoint: {path}\nMLflow run: {run_id}")


if __name__ == "__main__":
    main()
