"""Stage 4, targets: which maps a run computes, one row per (question, target answer), each with its
map-cache key."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import pandas as pd

COLUMNS = ["question_id", "row", "target", "target_answer", "target_index", "on_prediction", "answer_key", "map_key"]


def plan_targets(predictions: pd.DataFrame, policy: str, answer_key=None) -> tuple[pd.DataFrame, Counter]:
    """The maps to compute: one row per (question, target) with ``target`` in {label, prediction},
    ``target_answer`` the answer string whose score is explained, ``target_index`` its class for a
    classifier (-1 for a generative model, whose targets are strings).

    ``paper``: the labelled answer always; the predicted answer too when the model is wrong.
    ``label`` / ``prediction``: only that one. Questions whose labelled answer the model cannot
    answer (a classifier: not in its vocabulary) are skipped (and counted) under every policy, as
    in the paper. ``answer_key(answer, index) -> str`` names a target in map keys (default: the
    class index; :meth:`~vqa_interp.models.base.VqaModel.answer_key`).
    """
    skipped: Counter = Counter()
    rows = []
    for p in predictions.itertuples(index=False):
        if not getattr(p, "label_answerable", p.label_index >= 0):
            skipped["label_not_in_answer_vocab"] += 1
            continue
        wanted = {
            "paper": ["label"] + ([] if p.correct else ["prediction"]),
            "label": ["label"],
            "prediction": ["prediction"],
        }[policy]
        for target in wanted:
            index = p.label_index if target == "label" else p.prediction_index
            answer = str(getattr(p, "answer" if target == "label" else "prediction", ""))
            # the same answer under another spelling of the vocabulary ("2" and "two") is the prediction too
            predicted = str(getattr(p, "prediction", ""))
            on_prediction = (index >= 0 and index == p.prediction_index) or (answer != "" and answer == predicted)
            key = answer_key(answer, int(index)) if answer_key else str(int(index))
            rows.append(
                {
                    "question_id": p.question_id,
                    "row": p.row,
                    "target": target,
                    "target_answer": answer,
                    "target_index": int(index),
                    "on_prediction": bool(on_prediction),
                    "answer_key": key,
                    "map_key": f"{p.question_id}_{key}",
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS), skipped


def map_keys(targets: pd.DataFrame, digests: Sequence[str]) -> pd.DataFrame:
    """Each target's cache key: ``{question_id}_{answer_key}_{example digest[:16]}`` (``answer_key``:
    a classifier's class index, a generative model's hash of the answer; ``digests`` per example
    row, :func:`vqa_interp.data.vqa.example_digest`)."""
    targets = targets.copy()
    targets["map_key"] = [f"{t.question_id}_{t.answer_key}_{digests[t.row][:16]}" for t in targets.itertuples()]
    return targets
