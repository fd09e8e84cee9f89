"""One run's per-example table analysed (:func:`analyse_tables`): the splits, tests and
correlations of :func:`~vqa_interp.analysis.statistics.analyse`, the floors and ceiling read on the
same questions, and every correct/wrong comparison read per question and within answer types. The
analyse stage (:mod:`vqa_interp.pipeline.analyse`) and a merged shard run read their tables this way.

``options`` below is the run's :class:`~vqa_interp.settings.AnalysisSettings` (``low``, ``high``,
``map_for_example``, ``alpha``, ``bootstrap``, ``seed``, ``min_group``, ``min_images``, ``test``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.analysis.statistics import AnalysisResults, analyse


def analyse_tables(table: pd.DataFrame, references: pd.DataFrame | None, options, metrics=None) -> AnalysisResults:
    """The per-example ``table`` (one row per question x method x target) analysed; ``references``:
    the floors and ceiling, one row per question x reference, or None."""
    o = options
    results = analyse(
        table,
        low=o.low,
        high=o.high,
        map_for_example=o.map_for_example,
        alpha=o.alpha,
        n_bootstrap=o.bootstrap,
        seed=o.seed,
        min_group=o.min_group,
        metrics=metrics,
        test=o.test,
        min_images=o.min_images,
    )
    if references is not None and results.examples is not None:
        reference_results(
            results,
            references,
            n_bootstrap=o.bootstrap,
            seed=o.seed,
            min_questions=o.min_group,
            min_images=o.min_images,
        )
    adjusted_results(
        results,
        references,
        n_bootstrap=o.bootstrap,
        seed=o.seed,
        min_group=o.min_group,
        min_images=o.min_images,
        alpha=o.alpha,
    )
    return results


def adjusted_results(results: AnalysisResults, references, **options) -> None:
    """Add the correct/wrong comparisons read per question and within answer types to ``results``
    (:mod:`vqa_interp.analysis.adjusted`)."""
    from vqa_interp.analysis.adjusted import adjusted_comparisons

    if results.examples is not None and not results.examples.empty and "correct" in results.examples:
        results.tables["adjusted_comparisons"] = adjusted_comparisons(results.examples, references, **options)


def reference_results(
    results: AnalysisResults,
    references: pd.DataFrame,
    *,
    n_bootstrap: int,
    seed: int,
    min_questions: int = 10,
    min_images: int = 5,
) -> None:
    """Add the floors/ceiling tables and metrics to ``results`` (see :mod:`vqa_interp.analysis.baselines`:
    paired on the method's questions, scored leave-one-out like the ceiling)."""
    from vqa_interp.analysis.baselines import baselines_table, normalised_table, paired_baseline_tests, protocol_of
    from vqa_interp.attribution.baselines import REFERENCES
    from vqa_interp.metrics.registry import family_metrics, headline_metrics

    # logged as metrics: the headline metrics of the floors and the ceiling (the oracle, which only
    # the embedded data has, stays in the table)
    logged = {r for r in REFERENCES if r != "oracle"}
    options = {"n_bootstrap": n_bootstrap, "seed": seed, "protocol": protocol_of(references)}
    table = baselines_table(results.examples, references, **options)
    normalised = normalised_table(results.examples, references, **options)
    tests = paired_baseline_tests(
        results.examples, references, **options, min_questions=min_questions, min_images=min_images
    )
    results.tables.update(
        {"baselines": table, "normalised": normalised, "baseline_tests": tests, "references_per_question": references}
    )
    family = set(family_metrics())
    for row in table.itertuples():
        if row.metric in headline_metrics() and row.reference in logged and np.isfinite(row.mean):
            results.metrics[f"baseline/{row.reference}/{row.metric}"] = row.mean
    for row in normalised.itertuples():
        if row.metric in family and np.isfinite(row.normalised):
            results.metrics[f"norm/{row.metric}"] = row.normalised
