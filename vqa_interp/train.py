"""Train the embedded model (small CNN backbone + Kazemi & Elqursh net) on a VQA-format train split.

``python -m vqa_interp.train`` is a Hydra app over the same config as ``vqa_interp.run``; it logs
the training run to MLflow and writes a pytorch-vqa style checkpoint. ``run`` calls
:func:`ensure_embedded_model` so the model is trained on first use and reused afterwards.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from vqa_interp.checkpoint import save_checkpoint
from vqa_interp.data import IMAGENET_MEAN, IMAGENET_STD, InputGeometry, load_image, normalize_answer
from vqa_interp.locking import file_lock
from vqa_interp.model import Net, VQAModel, build_backbone
from vqa_interp.text import build_answer_vocab, build_question_vocab, encode_questions

log = logging.getLogger(__name__)
_MEAN = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
_STD = torch.from_numpy(IMAGENET_STD)[:, None, None]


@dataclass
class TrainingSplit:
    """A VQA split in memory: images ``[N_img, 3, S, S]`` uint8, one entry per question."""
    images: torch.Tensor
    image_index: list[int]          # question -> row of ``images``
    questions: list[str]
    answers: list[list[str]]        # 10 raw answers per question


def read_training_split(root: Path, split: str, geometry: InputGeometry) -> TrainingSplit:
    """Read ``OpenEnded_mscoco_{split}2014_questions.json``, annotations and images under ``root``."""
    questions = json.loads((root / f"OpenEnded_mscoco_{split}2014_questions.json").read_text())["questions"]
    annotations = {a["question_id"]: a for a in
                   json.loads((root / f"mscoco_{split}2014_annotations.json").read_text())["annotations"]}
    image_ids = sorted({q["image_id"] for q in questions})
    row_of = {image_id: i for i, image_id in enumerate(image_ids)}
    mean, std = _MEAN, _STD
    images = torch.empty(len(image_ids), 3, geometry.size, geometry.size, dtype=torch.uint8)
    for image_id in tqdm(image_ids, desc=f"read {split} images", leave=False):
        normalised = torch.from_numpy(load_image(root / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg", geometry))
        images[row_of[image_id]] = ((normalised * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return TrainingSplit(images, [row_of[q["image_id"]] for q in questions], [q["question"] for q in questions],
                         [[a["answer"] for a in annotations[q["question_id"]]["answers"]] for q in questions])


def _normalise_batch(images_uint8: torch.Tensor) -> torch.Tensor:
    """``[B, 3, S, S]`` uint8 -> ImageNet-normalised float32 (as :func:`data.load_image`)."""
    return (images_uint8.float() / 255.0 - _MEAN) / _STD


def answer_targets(answers: list[list[str]], vocab: dict[str, int]) -> torch.Tensor:
    """pytorch-vqa's soft targets: ``[N, A]`` counts of each answer among the 10 human answers."""
    targets = torch.zeros(len(answers), len(vocab))
    for i, answer_list in enumerate(answers):
        for a in answer_list:
            j = vocab.get(normalize_answer(a))
            if j is not None:
                targets[i, j] += 1
    return targets


def train_model(split: TrainingSplit, *, backbone_spec: dict, dims: dict, epochs: int, batch_size: int,
                lr: float, max_seconds: float, seed: int, max_answers: int,
                on_epoch=None) -> tuple[VQAModel, dict, dict, dict]:
    """Train end to end (backbone included); returns model, question vocab, answer vocab, history.

    Batches are sets of ``batch_size`` images with all their questions: the backbone runs once
    per image and its features serve every question about it (3-5x less CNN work per question
    than one image per question; the gradient is the same sum over questions).
    Loss as pytorch-vqa: ``mean_b sum_a -log_softmax(logits)[b, a] * count[b, a] / 10``.
    """
    torch.manual_seed(seed)
    q_vocab = build_question_vocab(split.questions)
    a_vocab = build_answer_vocab(split.answers, max_answers)
    q_all, q_len_all = encode_questions(split.questions, q_vocab)
    targets = answer_targets(split.answers, a_vocab)
    backbone = build_backbone(backbone_spec)
    net = Net(len(q_vocab) + 1, v_features=backbone.out_channels, max_answers=len(a_vocab), **dims)
    model = VQAModel(backbone, net)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    n_images = len(split.images)
    steps_per_epoch = -(-n_images // batch_size)
    # one-cycle (warm-up then cosine decay) reaches a usable model in fewer epochs than a flat rate
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    image_rows = torch.tensor(split.image_index)
    questions_of = [[] for _ in range(n_images)]
    for question, row in enumerate(split.image_index):
        questions_of[row].append(question)
    history = {"loss": [], "train_accuracy": []}
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_images, generator=generator)
        losses, hits = [], []
        for begin in tqdm(range(0, n_images, batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False):
            images = order[begin:begin + batch_size]
            idx = torch.tensor([qi for r in images.tolist() for qi in questions_of[r]])
            features = model.backbone(_normalise_batch(split.images[images]))
            position = {int(r): i for i, r in enumerate(images)}
            v = features[torch.tensor([position[int(r)] for r in image_rows[idx]])]
            logits = model.net(v, q_all[idx], q_len_all[idx])
            loss = (-torch.log_softmax(logits, dim=1) * targets[idx] / 10).sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            hits.append((targets[idx].gather(1, logits.argmax(1, keepdim=True)) / 3).clamp(max=1).mean().item())
        history["loss"].append(float(np.mean(losses)))
        history["train_accuracy"].append(float(np.mean(hits)))
        if on_epoch is not None:
            on_epoch(epoch, history)
        if time.perf_counter() - start > max_seconds:
            log.info("training stopped after epoch %d: time budget of %.0f s spent", epoch + 1, max_seconds)
            break
    return model.eval(), q_vocab, a_vocab, history


def embedded_checkpoint_path(cfg: DictConfig) -> Path:
    """Where the embedded model for this data/model/training config lives (signature in the name)."""
    from vqa_interp.signature import short_signature

    from vqa_interp.embedded import GENERATOR_VERSION

    signature = short_signature({"data": {k: cfg.data[k] for k in ("seed", "n_train_images", "n_val_images")},
                                 "generator": GENERATOR_VERSION,
                                 "backbone": OmegaConf.to_container(cfg.model.backbone),
                                 "dims": OmegaConf.to_container(cfg.model.dims),
                                 "input": OmegaConf.to_container(cfg.model.input),
                                 "train": OmegaConf.to_container(cfg.model.train)})
    return Path(cfg.paths.home) / "models" / f"embedded-{signature}.pth"


def train_and_save(cfg: DictConfig, data_root: Path, out_path: Path, tracker=None) -> dict:
    """Train the embedded model described by ``cfg.model`` on ``data_root``'s train split."""
    geometry = InputGeometry(cfg.model.input.size, cfg.model.input.central_fraction)
    split = read_training_split(data_root, "train", geometry)
    t = cfg.model.train

    def on_epoch(epoch, history):
        if tracker is not None:
            tracker.log_metrics({"train_loss": history["loss"][-1], "train_accuracy": history["train_accuracy"][-1]},
                                step=epoch)

    start = time.perf_counter()
    model, q_vocab, a_vocab, history = train_model(
        split, backbone_spec=OmegaConf.to_container(cfg.model.backbone), dims=OmegaConf.to_container(cfg.model.dims),
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, max_seconds=t.max_seconds, seed=t.seed,
        max_answers=cfg.model.max_answers, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    save_checkpoint(out_path, model, question_vocab=q_vocab, answer_vocab=a_vocab,
                    config={"backbone": OmegaConf.to_container(cfg.model.backbone),
                            "input": OmegaConf.to_container(cfg.model.input),
                            "train": OmegaConf.to_container(t)},
                    tracker=history, name="vqa-interp embedded")
    log.info("trained the embedded model in %.0f s (train VQA accuracy %.3f) -> %s",
             seconds, history["train_accuracy"][-1], out_path)
    return {"train_seconds": seconds, "epochs_run": len(history["loss"]),
            "final_train_accuracy": history["train_accuracy"][-1]}


def ensure_embedded_model(cfg: DictConfig, data_root: Path, *, log_training_run: bool = True) -> Path:
    """The embedded checkpoint for ``cfg``: trained (once, under a lock) when missing."""
    path = embedded_checkpoint_path(cfg)
    with file_lock(path.parent / f".{path.name}.lock"):
        if not path.exists():
            log.info("no embedded model at %s yet: training it (once; later runs reuse it)", path)
            if log_training_run:
                from vqa_interp.tracking import training_run

                with training_run(cfg) as tracker:
                    result = train_and_save(cfg, data_root, path, tracker)
                    tracker.log_metrics(result)
                    tracker.set_tags({"checkpoint_path": str(path.resolve())})
            else:
                train_and_save(cfg, data_root, path)
    return path


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from vqa_interp.config import validate
    from vqa_interp.pipeline import prepare_data_root
    from vqa_interp.tracking import training_run

    validate(cfg)
    if cfg.model.name != "embedded":
        raise SystemExit("python -m vqa_interp.train trains the embedded model only (model=embedded); "
                         f"model={cfg.model.name} is loaded from model.checkpoint.")
    data_root = prepare_data_root(cfg)
    path = embedded_checkpoint_path(cfg)
    with file_lock(path.parent / f".{path.name}.lock"), training_run(cfg) as tracker:
        result = train_and_save(cfg, data_root, path, tracker)
        tracker.log_metrics(result)
        tracker.set_tags({"checkpoint_path": str(path.resolve())})
        print(f"checkpoint: {path}\nMLflow run: {tracker.run_id}")


if __name__ == "__main__":
    main()
