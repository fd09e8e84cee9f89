"""Training an embedded model end to end: where a model trained here lives (its training
signature in the name) and :func:`train_and_save`, which reads the dataset's train and val splits,
trains the kind's untrained model (a classifier with :func:`~vqa_interp.models.training.train_model`,
a generative model with :func:`~vqa_interp.models.training.train_generative`) and saves it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from vqa_interp.data.images import InputGeometry
from vqa_interp.models.checkpoint import record_digest
from vqa_interp.models.registry import model_kind
from vqa_interp.models.training import (
    question_prior_accuracy,
    read_training_split,
    train_generative,
    train_model,
    training_signature,
)

log = logging.getLogger("vqa_interp.models.training")


def embedded_checkpoint_path(model_settings, home: str | Path, dataset) -> Path:
    """Where a model trained here for this data/model/training config lives (signature in the name)."""
    kind = model_kind(model_settings.kind)
    signature, _ = training_signature(model_settings, dataset)
    return Path(home) / "models" / f"{embedded_prefix(kind.name)}-{signature}{kind.checkpoint_suffix}"


def embedded_prefix(kind: str) -> str:
    return {"kazemi": "embedded", "hf_vlm": "embedded_llava"}.get(kind, f"embedded_{kind}")


def train_and_save(model_settings, dataset, out_path: Path, on_epoch=None, announce=None) -> dict:
    """Train the model described by ``model_settings`` (a trainable kind) on ``dataset``'s train split.

    ``on_epoch(epoch, history)`` is called after each epoch (the entry point logs it);
    ``announce(expected_seconds, threads)`` once the pace is known (:func:`train_model`).
    """
    m = model_settings
    geometry = InputGeometry(m.input_size, m.central_fraction)
    paths, records = dataset.training_records("train")
    split = read_training_split(paths, records, geometry)
    validation = read_training_split(*dataset.training_records("val"), geometry)
    prior = question_prior_accuracy(split, validation)
    t = m.options["train"]
    start = time.perf_counter()
    torch.manual_seed(t["seed"])
    model = model_kind(m.kind).untrained(m, split.questions, split.answers)
    before = torch.get_num_threads()
    train = train_generative if model.generative else train_model  # a generative model learns to generate
    try:
        model, history = train(
            model,
            split,
            epochs=t["epochs"],
            batch_size=t["batch_size"],
            lr=t["lr"],
            seed=t["seed"],
            on_epoch=on_epoch,
            validation=validation,
            threads=t.get("threads", "auto"),
            announce=announce,
        )
    finally:
        torch.set_num_threads(before)
    seconds = time.perf_counter() - start
    model.save(
        out_path,
        config={"backbone": m.options.get("backbone"), "input": m.input, "train": t},
        tracker=history,
        name="vqa-interp embedded",
    )
    record_digest(out_path)
    log.info(
        "trained the embedded model in %.0f s (accuracy: train %.3f, val %.3f; answering from the question "
        "alone: %.3f) -> %s",
        seconds,
        history["train_accuracy"][-1],
        history["val_accuracy"][-1],
        prior,
        out_path,
    )
    return {
        "train_seconds": seconds,
        "epochs_run": len(history["loss"]),
        "train_threads_min": min(history["threads"]),
        "train_threads_max": max(history["threads"]),
        "final_train_accuracy": history["train_accuracy"][-1],
        "final_val_accuracy": history["val_accuracy"][-1],
        "val_question_prior_accuracy": prior,
    }
