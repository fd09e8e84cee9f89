"""Train the embedded model (small CNN backbone + Kazemi & Elqursh net) on a VQA-format train split.

Plain functions over :class:`vqa_interp.settings.Settings` and a dataset; the entry points
(``python -m vqa_interp.train``, and ``vqa_interp.run`` before it opens its evaluation run) call
:func:`train_and_save` inside a training run of their own.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vqa_interp.data.answers import normalize_answer
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD, InputGeometry, load_image
from vqa_interp.data.text import build_answer_vocab, build_question_vocab, encode_questions
from vqa_interp.models.backbones import build_backbone
from vqa_interp.models.checkpoint import save_checkpoint
from vqa_interp.models.kazemi import Net, VQAModel
from vqa_interp.settings import Settings
from vqa_interp.util.signature import short_signature

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


def read_training_split(paths, records, geometry: InputGeometry) -> TrainingSplit:
    """Load a training split's images (as uint8, once per image) for ``records``
    (:class:`vqa_interp.data.QARecord`, read by the dataset's one VQA JSON reader)."""
    from vqa_interp.data.vqa import image_path_of

    image_ids = sorted({r.image_id for r in records})
    row_of = {image_id: i for i, image_id in enumerate(image_ids)}
    images = torch.empty(len(image_ids), 3, geometry.size, geometry.size, dtype=torch.uint8)
    for image_id in tqdm(image_ids, desc="read training images", leave=False):
        normalised = torch.from_numpy(load_image(image_path_of(paths, image_id), geometry))
        images[row_of[image_id]] = ((normalised * _STD + _MEAN) * 255).round().clamp(0, 255).to(torch.uint8)
    return TrainingSplit(images, [row_of[r.image_id] for r in records], [r.question for r in records],
                         [list(r.answers) for r in records])


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


def embedded_checkpoint_path(settings: Settings, dataset: Dataset) -> Path:
    """Where the embedded model for this data/model/training config lives (signature in the name)."""
    # the model is trained on the train split only: the size of the val split is not part of its name
    signature = short_signature({"data": {k: v for k, v in dataset.signature().items()
                                          if k not in ("generator", "n_val_images")},
                                 "generator": dataset.signature().get("generator"),
                                 "backbone": settings.model.backbone, "dims": settings.model.dims,
                                 "input": settings.model.input, "train": settings.model.train})
    return Path(settings.home) / "models" / f"embedded-{signature}.pth"


def train_and_save(settings: Settings, dataset: Dataset, out_path: Path, on_epoch=None) -> dict:
    """Train the embedded model described by ``settings.model`` on ``dataset``'s train split.

    ``on_epoch(epoch, history)`` is called after each epoch (the entry point logs it).
    """
    m = settings.model
    geometry = InputGeometry(m.input_size, m.central_fraction)
    paths, records = dataset.training_records("train")
    split = read_training_split(paths, records, geometry)
    t = m.train
    start = time.perf_counter()
    model, q_vocab, a_vocab, history = train_model(
        split, backbone_spec=m.backbone, dims=m.dims, epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
        max_seconds=t["max_seconds"], seed=t["seed"], max_answers=m.max_answers, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    save_checkpoint(out_path, model, question_vocab=q_vocab, answer_vocab=a_vocab,
                    config={"backbone": m.backbone, "input": m.input, "train": t},
                    tracker=history, name="vqa-interp embedded")
    log.info("trained the embedded model in %.0f s (train VQA accuracy %.3f) -> %s",
             seconds, history["train_accuracy"][-1], out_path)
    return {"train_seconds": seconds, "epochs_run": len(history["loss"]),
            "final_train_accuracy": history["train_accuracy"][-1]}
