"""Stage 4, targets: which maps a run computes, one row per (question, target answer), each with its
map-cache key."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import pandas as pd

COLUMNS = ["question_id", "row", "target", "target_index", "on_prediction", "map_key"]


def plan_targets(predictions: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, Counter]:
    """The maps to compute: one row per (question, target) with ``target`` in {label, prediction}.

    ``paper``: the labelled answer always; the predicted answer too when the model is wrong.
    ``label`` / ``prediction``: only that one. Questions whose labelled answer is not in the
    answer vocabulary are skipped (and counted) under every policy, as in the paper.
    """
    skipped: Counter = Counter()
    rows = []
    for p in predictions.itertuples(index=False):
        if p.label_index < 0:
            skipped["label_not_in_answer_vocab"] += 1
            continue
        wanted = {"paper": ["label"] + ([] if p.correct else ["prediction"]),
                  "label": ["label"], "prediction": ["prediction"]}[policy]
        for target in wanted:
            index = p.label_index if target == "label" else p.prediction_index
            rows.append({"question_id": p.question_id, "row": p.row, "target": target,
                         "target_index": int(index), "on_prediction": index == p.prediction_index,
                         "map_key": f"{p.question_id}_{index}"})
    return pd.DataFrame(rows, columns=COLUMNS), skipped


def map_keys(targets: pd.DataFrame, digests: Sequence[str]) -> pd.DataFrame:
    """Each target's cache key: ``{question_id}_{target_index}_{example digest[:16]}`` (``digests``
    per example row, :func:`vqa_interp.data.vqa.example_digest`)."""
    targets = targets.copy()
    targets["map_key"] = [f"{t.question_id}_{t.target_index}_{digests[t.row][:16]}" for t in targets.itertuples()]
    return targets
