"""``python -m vqa_interp.train``: (re)train an embedded model (a trainable ``model.kind``) explicitly.

A Hydra app over the same config as ``vqa_interp.run``; it logs the training run to MLflow and
writes the kind's checkpoint under ``paths.home``; ``+ship=true`` also puts it in the package's
shipped models (:mod:`vqa_interp.models.shipped`). :func:`ensure_model` is what ``vqa_interp.run``
calls *before* it opens its evaluation run, so an evaluation run never trains inside itself.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch loads: OpenMP threads that wait sleep soon (vqa_interp.util.cores)
    from vqa_interp.util.cores import quiet_waiting

    quiet_waiting()

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vqa_interp.util.locking import file_lock

log = logging.getLogger("vqa_interp.train")


def _announce(name: str, first_use: bool):
    def announce(seconds: float, threads: int) -> None:
        when = "on first use, once: later runs reuse it" if first_use else "explicitly"
        print(
            f"training model={name} {when}; expected ~{_duration(seconds)} at the pace of its first steps "
            f"({threads} torch thread{'s' if threads > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )

    return announce


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _train_logged(settings, dataset, path: Path, first_use: bool = False) -> tuple[str, dict]:
    """Train into ``path`` inside a training run of its own; returns that run's ID and what training
    measured."""
    from vqa_interp.models.train_embedded import train_and_save
    from vqa_interp.tracking.store import training_run

    with training_run(settings) as tracker:

        def on_epoch(epoch, history):
            tracker.log_metrics(
                {
                    "train_loss": history["loss"][-1],
                    "train_accuracy": history["train_accuracy"][-1],
                    **({"val_accuracy": history["val_accuracy"][-1]} if "val_accuracy" in history else {}),
                },
                step=epoch,
            )

        result = train_and_save(
            settings.model, dataset, path, on_epoch=on_epoch, announce=_announce(settings.model.name, first_use)
        )
        tracker.log_metrics(result)
        tracker.set_tags({"checkpoint_path": str(path.resolve())})
    return tracker.run_id, result


def ensure_model(settings, dataset) -> Path | None:
    """The checkpoint to evaluate: ``model.checkpoint`` if given; else, for a trainable kind, the
    shipped model trained from the same training signature (checked against its digest; one line
    says so), else the model trained here for these settings, trained (once, under a lock, in its
    own training run) when missing; None for a kind built from its config alone."""
    from vqa_interp.models.checkpoint import read_checkpoint, verify_digest
    from vqa_interp.models.registry import model_kind
    from vqa_interp.models.shipped import shipped_for
    from vqa_interp.models.train_embedded import embedded_checkpoint_path
    from vqa_interp.models.training import training_signature

    if settings.model.checkpoint:
        path = Path(settings.model.checkpoint)
        if path.is_file() and path.suffix == ".pth":
            read_checkpoint(path, keep=True)  # damaged or unsafe: one line now, before any run opens
        return path
    if not model_kind(settings.model.kind).trainable:
        return None
    shipped = shipped_for(training_signature(settings.model, dataset)[0])
    if shipped is not None:
        accuracy = shipped.facts.get("final_val_accuracy")
        print(
            f"model={settings.model.name}: the shipped model {shipped.path.name} (sha256 {shipped.short_digest}"
            + (f", val accuracy {accuracy:.3f}" if accuracy is not None else "")
            + ")",
            flush=True,
        )
        return shipped.path
    path = embedded_checkpoint_path(settings.model, settings.home, dataset)
    with file_lock(path.parent / f".{path.name}.lock"):
        if not path.exists():
            log.info(
                "model=%s: its training config differs from the shipped model's, so it is trained here into %s",
                settings.model.name,
                path,
            )
            _train_logged(settings, dataset, path, first_use=True)
    verify_digest(path, f"model={settings.model.name}: the model trained here,")
    return path


def model_source_tags(checkpoint: Path | None) -> dict[str, str]:
    """Tags saying where the evaluated model came from: ``shipped`` (with its name and digest),
    ``trained here`` (a model trained on first use), ``given`` (``model.checkpoint`` /
    ``model.pretrained``) or ``built`` (a kind built from its config alone)."""
    from vqa_interp.models.shipped import SHIPPED_DIR, shipped_models

    if checkpoint is None:
        return {"model_source": "built"}
    resolved = Path(checkpoint).resolve()
    for model in shipped_models():
        if model.path.resolve() == resolved:
            return {"model_source": "shipped", "shipped_model": model.path.name, "shipped_digest": model.digest}
    if resolved.parent.name == "models" and SHIPPED_DIR not in resolved.parents:
        return {"model_source": "trained here"}
    return {"model_source": "given"}


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.models.registry import model_kind
    from vqa_interp.models.shipped import content_digest, ship, shipped_models
    from vqa_interp.models.train_embedded import embedded_checkpoint_path
    from vqa_interp.models.training import training_signature
    from vqa_interp.settings import from_config

    settings = from_config(cfg)
    if not model_kind(settings.model.kind).trainable or settings.model.checkpoint:
        raise SystemExit(
            "python -m vqa_interp.train trains a model on the embedded benchmark (model=embedded); "
            f"model={settings.model.name} is loaded from model.checkpoint."
        )
    dataset = dataset_for(settings.data, settings.home)
    path = embedded_checkpoint_path(settings.model, settings.home, dataset)
    with file_lock(path.parent / f".{path.name}.lock"):
        run_id, result = _train_logged(settings, dataset, path)
    print(f"checkpoint: {path} (sha256 {content_digest(path)[:12]})\nMLflow run: {run_id}")
    signature, fields = training_signature(settings.model, dataset)
    before = next((m for m in shipped_models() if m.name == settings.model.name), None)
    if before is not None and before.signature == signature:
        same = content_digest(path) == before.digest
        print(
            f"the shipped model {before.path.name}: {'the same bits' if same else 'different bits'} "
            f"(sha256 {before.short_digest})"
        )
    if cfg.get("ship", False):
        import torch

        from vqa_interp.util.cores import machine_facts

        threads = result["train_threads_max"]
        if threads != result["train_threads_min"]:
            raise SystemExit(
                f"not shipped: the thread count changed during training ({result['train_threads_min']}-"
                f"{threads}), so no command retrains these bits; ship with model.train.threads=N"
            )
        retrain = f"python -m vqa_interp.train model={settings.model.name} model.train.threads={threads} +ship=true"
        entry = ship(
            path,
            name=settings.model.name,
            kind=settings.model.kind,
            signature=signature,
            signature_fields=fields,
            retrain=retrain,
            facts={
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()},
                "torch": torch.__version__,
                **machine_facts(),
            },
        )
        print(f"shipped as {entry.path} (sha256 {entry.short_digest})")


if __name__ == "__main__":
    from vqa_interp.cli_help import register_help_resolver
    from vqa_interp.util.arguments import choice_problem

    problem = choice_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
    register_help_resolver()  # conf/config.yaml's --help lists the groups through it (vqa_interp.cli_help)
    main()
