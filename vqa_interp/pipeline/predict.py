"""Stage 3, predictions: one row per example (prediction, confidence, correct, VQA accuracy, label
index), through the model interface, cached on disk by what they depend on."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch

from vqa_interp.data.answers import normalize_answer, vqa_accuracy
from vqa_interp.data.vqa import Example
from vqa_interp.models.base import VqaModel, take
from vqa_interp.models.vocab import answer_lookup
from vqa_interp.util.disk_cache import DiskCache
from vqa_interp.util.memory import batching_of
from vqa_interp.util.progress import tqdm

CACHE_VERSION = 5  # raise when predict()'s table changes: cached predictions are then ignored
COLUMNS = (
    "question_id",
    "image_id",
    "question",
    "answer",
    "answer_type",
    "question_type",
    "prediction",
    "confidence",
    "correct",
    "vqa_accuracy",
    "label_index",
    "prediction_index",
    "label_answerable",
    "row",
)


def image_loader(model: VqaModel, examples: Sequence[Example]) -> Callable[[list[int]], torch.Tensor]:
    """``rows -> [len(rows), 3, S, S]`` pixel inputs of those examples' images; read when needed, never
    all held."""

    def load(rows: list[int]) -> torch.Tensor:
        return model.load_pixels([examples[r].image_path for r in rows])

    return load


def predict(
    model: VqaModel, examples: Sequence[Example], load_images, question: tuple, *, batch_size: int, device: str = "cpu"
) -> pd.DataFrame:
    """One row per example: prediction, confidence, correct, VQA accuracy, label index.

    A classifier's prediction is its argmax class and its confidence the model's own probability of it
    (:meth:`~vqa_interp.models.base.VqaModel.answer_probabilities`: softmax, or sigmoid for a head
    trained with binary cross-entropy); a
    generative model's is its (normalised) generated or chosen answer with the answer's probability
    normalised over the question's multiple-choice candidates
    (:meth:`~vqa_interp.models.base.VqaModel.predict_answers`), so the paper's confidence bands keep
    their meaning. ``correct`` means the prediction equals the labelled answer
    (``multiple_choice_answer``), both normalised as the official evaluation; ``vqa_accuracy`` is the
    official soft score against the 10 human answers; ``label_index`` / ``prediction_index`` are a
    classifier's classes (-1: not in its vocabulary, or a generative model); ``label_answerable``
    whether the label can be a target.
    """
    vocab = answer_lookup(model.answers) if not model.generative else {}
    rows = []
    with torch.no_grad():
        for begin in tqdm(range(0, len(examples), batch_size), desc="predict", leave=False):
            idx = list(range(begin, min(begin + batch_size, len(examples))))
            pixels, encoded = load_images(idx).to(device), model.to_device(take(question, idx), device)
            if model.generative:
                answers, confidence = model.predict_answers(
                    pixels, encoded, [examples[i].multiple_choices for i in idx]
                )
                predicted = [-1] * len(idx)
            else:
                probs = model.answer_probabilities(model.forward(pixels, encoded).float()).cpu()
                confidence, predicted = probs.max(dim=1)
                answers = [normalize_answer(model.answers[int(p)]) for p in predicted]
            for j, i in enumerate(idx):
                ex = examples[i]
                label = normalize_answer(ex.multiple_choice_answer)
                prediction = answers[j]
                rows.append(
                    {
                        "question_id": ex.question_id,
                        "image_id": ex.image_id,
                        "question": ex.question,
                        "answer": label,
                        "answer_type": ex.answer_type,
                        "question_type": ex.question_type,
                        "prediction": prediction,
                        "confidence": float(confidence[j]),
                        "correct": prediction == label,
                        "vqa_accuracy": vqa_accuracy(prediction, ex.answers),
                        "label_index": vocab.get(label, -1),
                        "prediction_index": int(predicted[j]),
                        "label_answerable": bool(model.generative or vocab.get(label, -1) >= 0),
                        "row": i,
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def cached_predictions(
    settings, model: VqaModel, examples: Sequence[Example], load_images, question: tuple, data_digest: str
) -> tuple[pd.DataFrame, bool]:
    """:func:`predict`'s table, cached on disk (``<cache>/predictions``) by what it depends on: the
    model's identity (checkpoint, backbone and its weights, input geometry), the device, the batch
    size and the data (questions, images, answers). A k sweep's later jobs, and a rerun, read it back
    (equal to the computed one, dtypes included). Returns ``(table, whether it was cached)``."""
    store = DiskCache(settings.cache, "predictions", CACHE_VERSION)
    key = {
        "model": model.identity(),
        "device": settings.device,
        "batch_size": settings.attribution.batch_size,
        "data": data_digest,
        **({"choices": [list(e.multiple_choices) for e in examples]} if model.generative else {}),
    }
    table = store.read_table(key, columns=COLUMNS)
    if table is not None and len(table) == len(examples):
        return table[list(COLUMNS)], True
    table = predict(
        model,
        examples,
        load_images,
        question,
        batch_size=batching_of(settings).predict(settings.attribution.batch_size),
        device=settings.device,
    )
    store.write_table(key, table)
    return table, False
