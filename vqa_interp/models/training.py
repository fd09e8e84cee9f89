"""Train a model of a trainable kind (the embedded model: small CNN backbone + Kazemi & Elqursh net)
on a VQA-format train split, through the model interface.

Plain functions over the model settings and a dataset; the entry points (``python -m
vqa_interp.train``, and ``vqa_interp.run`` before it opens its evaluation run) call
:func:`train_and_save` inside a training run of their own.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vqa_interp.data.answers import normalize_answer
from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD, InputGeometry, load_image
from vqa_interp.errors import ConfigError
from vqa_interp.models.base import VqaModel, take
from vqa_interp.models.packing import pack, packed_scores
from vqa_interp.models.registry import model_kind
from vqa_interp.util.cores import size_torch_threads
from vqa_interp.util.progress import tqdm
from vqa_interp.util.signature import short_signature

log = logging.getLogger(__name__)
_MEAN = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
_STD = torch.from_numpy(IMAGENET_STD)[:, None, None]


@dataclass
class TrainingSplit:
    """A VQA split in memory: images ``[N_img, 3, S, S]`` uint8, one entry per question."""

    images: torch.Tensor
    image_index: list[int]  # question -> row of ``images``
    questions: list[str]
    answers: list[list[str]]  # 10 raw answers per question


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
    return TrainingSplit(
        images, [row_of[r.image_id] for r in records], [r.question for r in records], [list(r.answers) for r in records]
    )


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


def soft_accuracy(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[N]`` soft accuracy ``min(1, #annotators who gave the answer / 3)`` of predicted answer
    indices ``[N]`` against answer counts ``[N, A]`` (the score the training history reports)."""
    return (targets.gather(1, predicted[:, None])[:, 0] / 3).clamp(max=1)


def question_prior_accuracy(train: TrainingSplit, other: TrainingSplit) -> float:
    """The accuracy on ``other`` of answering from the question alone: each (normalised) question
    string's most frequent answer among ``train``'s human answers, the most frequent answer overall
    for a question ``train`` lacks. A model that does not beat it does not use the image."""
    from collections import Counter

    by_question: dict[str, Counter] = {}
    overall: Counter = Counter()
    for question, answers in zip(train.questions, train.answers):
        counts = by_question.setdefault(question.strip().lower(), Counter())
        for a in answers:
            counts[normalize_answer(a)] += 1
            overall[normalize_answer(a)] += 1
    fallback = overall.most_common(1)[0][0] if overall else ""
    scores = []
    for question, answers in zip(other.questions, other.answers):
        counts = by_question.get(question.strip().lower())
        guess = counts.most_common(1)[0][0] if counts else fallback
        scores.append(min(1.0, sum(normalize_answer(a) == guess for a in answers) / 3))
    return float(np.mean(scores)) if scores else float("nan")


def split_accuracy(model: VqaModel, split: TrainingSplit, images_per_batch: int = 32) -> float:
    """Soft accuracy (:func:`soft_accuracy`) of ``model`` (put in eval mode) on every question of
    ``split``, ``images_per_batch`` images with all their questions at a time."""
    question = model.encode(split.questions)
    targets = answer_targets(split.answers, model.answer_vocab)
    rows = torch.tensor(split.image_index)
    model.module.eval()
    scores = []
    with torch.no_grad():
        for begin in range(0, len(split.images), images_per_batch):
            idx = torch.nonzero((rows >= begin) & (rows < begin + images_per_batch))[:, 0]
            logits = model.training_logits(
                _normalise_batch(split.images[begin : begin + images_per_batch]), rows[idx] - begin, take(question, idx)
            )
            scores.append(soft_accuracy(logits.argmax(1), targets[idx]))
    return float(torch.cat(scores).mean()) if scores else float("nan")


def questions_by_image(split: TrainingSplit) -> list[list[int]]:
    """For each row of ``split.images``, its questions' indices in ``split`` (ascending)."""
    questions_of = [[] for _ in range(len(split.images))]
    for q, row in enumerate(split.image_index):
        questions_of[row].append(q)
    return questions_of


def training_batches(split: TrainingSplit, batch_size: int, by_image: bool, generator: torch.Generator):
    """One epoch's batches in a random order from ``generator``, as ``(image rows [I], question
    indices [Q])``: ``batch_size`` images with all their questions (``by_image``), else
    ``batch_size`` questions drawn at random with the images they are about."""
    if by_image:
        questions_of = questions_by_image(split)
        order = torch.randperm(len(split.images), generator=generator)
        for begin in range(0, len(order), batch_size):
            images = order[begin : begin + batch_size]
            yield images, torch.tensor([q for r in images.tolist() for q in questions_of[r]])
    else:
        order = torch.randperm(len(split.questions), generator=generator)
        for begin in range(0, len(order), batch_size):
            idx = order[begin : begin + batch_size]
            yield torch.tensor(sorted({split.image_index[q] for q in idx.tolist()})), idx


ANNOUNCE_AFTER = 5  # steps timed before the expected duration is announced


def train_model(
    model: VqaModel,
    split: TrainingSplit,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_epoch=None,
    validation: TrainingSplit | None = None,
    threads: int | str = "auto",
    announce=None,
) -> tuple[VqaModel, dict]:
    """Train ``model`` (freshly built, after ``torch.manual_seed(seed)``) end to end; returns it in eval
    mode and its history.

    For a model whose image encoder does not see the question
    (:attr:`~vqa_interp.models.base.VqaModel.encodes_image_alone`), batches are sets of
    ``batch_size`` images with all their questions, through
    :meth:`~vqa_interp.models.base.VqaModel.training_logits` (the Kazemi net runs its backbone once
    per image: 3-5x less CNN work per question than one image per question; the gradient is the
    same sum over questions). Otherwise (ViLT encodes each image with each question, so grouping
    saves nothing) a batch is ``batch_size`` questions drawn at random: more images per step.
    Loss as pytorch-vqa: ``mean_b sum_a -log_softmax(logits)[b, a] * count[b, a] / 10``.
    Training is decided by the epoch count alone (no wall-clock budget). torch's threads are sized
    before each epoch from the free cores (``threads="auto"``, :mod:`vqa_interp.util.cores`) or fixed
    (``threads=N``: the same weights bit for bit on one machine, whatever its load; with ``auto`` a
    change of thread count changes float32 sums in the last bits). The counts used are in
    ``history["threads"]``. With ``validation``, the history also holds the soft accuracy on it after
    each epoch (``val_accuracy``; it does not steer training). ``announce(expected_seconds, threads)``
    is called once, after the first few steps, with the whole training's expected duration.
    """
    question = model.encode(split.questions)
    targets = answer_targets(split.answers, model.answer_vocab)
    by_image = model.encodes_image_alone
    steps_per_epoch = -(-(len(split.images) if by_image else len(split.questions)) // batch_size)
    generator = torch.Generator().manual_seed(seed)
    image_rows = torch.tensor(split.image_index)

    def loss_of(batch):
        images, idx = batch
        position = {int(r): i for i, r in enumerate(images)}
        image_of = torch.tensor([position[int(r)] for r in image_rows[idx]])
        logits = model.training_logits(_normalise_batch(split.images[images]), image_of, take(question, idx))
        loss = (-torch.log_softmax(logits, dim=1) * targets[idx] / 10).sum(dim=1).mean()
        return loss, lambda: soft_accuracy(logits.argmax(1), targets[idx]).mean().item()

    return _fit(
        model,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
        batches=lambda: list(training_batches(split, batch_size, by_image, generator)),
        loss_of=loss_of,
        validate=(lambda: split_accuracy(model, validation)) if validation is not None else None,
        threads=threads,
        announce=announce,
        on_epoch=on_epoch,
    )


def _fit(
    model: VqaModel,
    *,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    batches,
    loss_of,
    validate,
    threads,
    announce,
    on_epoch,
) -> tuple[VqaModel, dict]:
    """The loop every kind trains with: Adam with a one-cycle rate (warm-up then cosine decay: a usable
    model in fewer epochs than a flat rate), torch's threads sized before each epoch (a program that
    took a core meanwhile costs its core, not more), one progress bar over every step, the expected
    duration announced after the first steps. ``batches() -> list`` is one epoch's batches (drawn at
    the epoch's start); ``loss_of(batch) -> (loss, accuracy())``, ``accuracy()`` read after the step."""
    optimiser = torch.optim.Adam(model.module.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    history = {"loss": [], "train_accuracy": [], "threads": [], **({"val_accuracy": []} if validate else {})}
    total = epochs * steps_per_epoch
    progress = tqdm(total=total, desc="training", unit="step", leave=False)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            if threads == "auto":
                history["threads"].append(size_torch_threads())
            else:
                torch.set_num_threads(int(threads))
                history["threads"].append(int(threads))
            model.module.train()
            losses, hits = [], []
            for step, batch in enumerate(batches()):
                loss, accuracy = loss_of(batch)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
                hits.append(accuracy())
                progress.update()
                if announce is not None and epoch == 0 and step + 1 == min(ANNOUNCE_AFTER, steps_per_epoch):
                    announce(total * (time.perf_counter() - start) / (step + 1), history["threads"][-1])
                    announce = None
            history["loss"].append(float(np.mean(losses)))
            history["train_accuracy"].append(float(np.mean(hits)))
            if validate:
                history["val_accuracy"].append(validate())
            if on_epoch is not None:
                on_epoch(epoch, history)
    finally:
        progress.close()
    return model.eval(), history


# execution details that do not name a model: how many threads trained it
NOT_IN_SIGNATURE = ("threads",)


def training_signature(model_settings, dataset) -> tuple[str, dict]:
    """``(short signature, the fields it covers)`` of a trained model: the training data (the train
    split's generator and size; the size of the val split is not part of it), the kind's own
    training options (:attr:`~vqa_interp.models.registry.ModelKind.train_signature`) less
    :data:`NOT_IN_SIGNATURE`."""
    kind = model_kind(model_settings.kind)
    own = dict(kind.train_signature(model_settings))
    if isinstance(own.get("train"), dict):
        own["train"] = {k: v for k, v in own["train"].items() if k not in NOT_IN_SIGNATURE}
    fields = {
        "data": {k: v for k, v in dataset.signature().items() if k not in ("generator", "n_val_images")},
        "generator": dataset.signature().get("generator"),
        **own,
    }
    return short_signature(fields), fields


# ------------------------------------------------------------------ generative models
def answer_label(answers: Sequence[str]) -> str:
    """The answer a question is trained on: its most frequent normalised human answer (ties: the first
    given)."""
    counts = Counter(normalize_answer(a) for a in answers)
    return counts.most_common(1)[0][0] if counts else ""


def generative_accuracy(model, split, batch_size: int = 64) -> float:
    """Soft VQA accuracy of greedy decoding on every question of ``split``."""
    from vqa_interp.data.answers import vqa_accuracy

    model.module.eval()
    scores = []
    for begin in range(0, len(split.questions), batch_size):
        rows = list(range(begin, min(begin + batch_size, len(split.questions))))
        pixels = _normalise_batch(split.images[[split.image_index[r] for r in rows]])
        question = model.encode([split.questions[r] for r in rows])
        for r, answer in zip(rows, model.generate_answers(pixels, question)):
            scores.append(vqa_accuracy(answer, split.answers[r]))
    return float(np.mean(scores)) if scores else float("nan")


def train_generative(
    model,
    split,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_epoch=None,
    validation=None,
    threads="auto",
    announce=None,
):
    """Train a generative model (:mod:`vqa_interp.models.embedded_llava`, freshly built after
    ``torch.manual_seed(seed)``) on ``split``: batches of ``batch_size`` images with all their
    questions, in a random order from a generator seeded with ``seed``, each image's questions packed
    into one sequence (:mod:`vqa_interp.models.packing`: the same log-probabilities as one sequence
    per question, the image read once), Adam with a one-cycle rate, the loss the mean negative
    log-probability of each question's answer (:func:`answer_label`) and the end-of-sequence token.
    Threads as :func:`train_model`. Returns the model in eval mode and its history: ``loss``,
    ``train_accuracy`` (the mean probability of the trained answers: generation has no argmax to
    score during training), ``val_accuracy`` (greedy decoding, the VQA soft score)."""
    if not model.family.packs:
        raise ConfigError(
            f"model: training is implemented for LLaVA-layout models; a {model.family.name} model's positions "
            "cover the whole sequence, so its questions cannot share one packed sequence."
        )
    prompts = [model.prompt_ids(q) for q in split.questions]
    answer_ids, answer_mask = model.encode_targets([answer_label(a) for a in split.answers])
    answers = [ids[mask.bool()].tolist() for ids, mask in zip(answer_ids, answer_mask)]
    for parameter in model.module.parameters():
        parameter.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    questions_of = questions_by_image(split)

    def loss_of(batch):
        rows = batch[0].tolist()  # the images; each with all its questions
        packed = pack(
            [[(prompts[q], answers[q]) for q in questions_of[r]] for r in rows], model.image_token_id, model.pad_id
        )
        scores = packed_scores(model, _normalise_batch(split.images[rows]), packed)
        return -scores.mean(), lambda: scores.detach().exp().mean().item()

    return _fit(
        model,
        epochs=epochs,
        steps_per_epoch=-(-len(split.images) // batch_size),
        lr=lr,
        batches=lambda: list(training_batches(split, batch_size, True, generator)),
        loss_of=loss_of,
        validate=(lambda: generative_accuracy(model, validation)) if validation is not None else None,
        threads=threads,
        announce=announce,
        on_epoch=on_epoch,
    )
