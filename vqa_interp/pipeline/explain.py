"""Stage 8 (``explain.*``), what the model used: token attributions, the image's share and the
faithfulness of every map (:mod:`vqa_interp.explain.compute`), joined to the per-example table."""
from __future__ import annotations

import pandas as pd

from vqa_interp.explain.compute import ExplainTables, explain_targets


def explain_stage(model, settings, dataset, examples, targets: pd.DataFrame, cache, load_images, question: tuple,
                  data_digest: str, table: pd.DataFrame) -> tuple[ExplainTables | None, pd.DataFrame]:
    """``(explain tables or None, the per-example table with the explain columns joined)``."""
    explain = explain_targets(model, settings, examples, targets, cache, load_images, question,
                              data_digest=data_digest, evidence=dataset.question_evidence())
    if explain is None:
        return None, table
    extra = [c for c in explain.per_target.columns if c not in ("question_id", "target")]
    table = table.drop(columns=[c for c in extra if c in table]).merge(
        explain.per_target, on=["question_id", "target"], how="left")
    return explain, table
