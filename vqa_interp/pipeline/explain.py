"""Stage 8 (``explain.*``), what the model used: token attributions, the image's share and the
faithfulness of every map (:mod:`vqa_interp.explain.compute`), joined to the per-example table.

It needs the run's targets and maps, not its scores, so :func:`vqa_interp.pipeline.execute` runs it
while the maps are scored (in a forked process) and joins the two afterwards; its batches are
shared work (:func:`explain_work_of`), so that process takes the ones the run has not claimed once
its scoring is done (:func:`two_can_explain` says when it may)."""

from __future__ import annotations

import pandas as pd

from vqa_interp.explain.compute import ExplainTables, explain_work
from vqa_interp.util.memory import batching_of
from vqa_interp.util.shared_work import SharedWork


def explain_needed(settings) -> bool:
    """Whether any part of the explain stage is on (``explain.tokens``, ``share``, ``faithfulness``)."""
    e = settings.explain
    return bool(e.tokens or e.share or e.faithfulness)


def explain_work_of(
    model, settings, dataset, examples, targets: pd.DataFrame, cache, load_images, question: tuple, data_digest: str
) -> SharedWork | None:
    """The explain tables of the run's ``targets`` as shared work, one item per batch
    (:func:`vqa_interp.explain.compute.explain_work`; None when every part is off)."""
    return explain_work(
        model,
        settings,
        examples,
        targets,
        cache,
        load_images,
        question,
        data_digest=data_digest,
        evidence=dataset.question_evidence(),
    )


def two_can_explain(settings) -> bool:
    """Whether a forked process may run explain batches beside the run's: the stage's configured
    batch sizes fit half the run's memory budget (two processes at once stay within it), and no
    sanity check runs beside them (``analysis.sanity``: its batches have the budget to themselves)."""
    e, sizes = settings.explain, batching_of(settings)
    half = sizes.budget // 2
    return (
        not settings.analysis.sanity
        and sizes.backward * e.ig_batch_size <= half
        and sizes.forward * e.batch_size <= half
    )


def with_explain_columns(
    explain: ExplainTables | None, table: pd.DataFrame
) -> tuple[ExplainTables | None, pd.DataFrame]:
    """``(explain, the per-example table with the explain columns joined)`` (the table as it is
    when ``explain`` is None)."""
    if explain is None:
        return None, table
    extra = [c for c in explain.per_target.columns if c not in ("question_id", "target")]
    table = table.drop(columns=[c for c in extra if c in table]).merge(
        explain.per_target, on=["question_id", "target"], how="left"
    )
    return explain, table
