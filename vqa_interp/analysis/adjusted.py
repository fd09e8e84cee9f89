"""Correct vs wrong, read three ways: is a difference between the groups about the answers, or about
which questions fall in each group?

Wrong answers are not a random sample of questions: on the embedded benchmark every high-confidence
wrong answer is a yes/no question labelled "no", whose human maps are diffuse, so any map scores
lower on it. Each of the paper's comparisons is therefore read

- ``raw``: the metric as scored (the primary analysis);
- ``per_question``: each question against its own floor and ceiling,
  ``(method - random) / (human_ceiling - random)`` of that question (NaN where its ceiling does not
  exceed its floor in the metric's direction: no room to read; counted in ``n``);
- ``within_answer_type``: the group difference with one intercept per answer type (yes/no,
  number, other), i.e. compared only within a type.

Each with the same test: the wild cluster bootstrap-t over images of the group coefficient
(:func:`vqa_interp.analysis.verdicts.wild_cluster_p`), unadjusted p (robustness rows beside the
primary family, not in its Holm adjustment). :func:`disagreements` names the comparisons whose
raw and adjusted verdicts differ, for the summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.analysis.statistics import COMPARISONS, scenario_mask
from vqa_interp.analysis.verdicts import too_small, wild_cluster_p
from vqa_interp.attribution.baselines import HUMAN_CEILING
from vqa_interp.metrics.registry import LOO_PREFIX, REGISTRY, family_metrics

ADJUSTMENTS = ("raw", "per_question", "within_answer_type")
COLUMNS = [
    "comparison",
    "metric",
    "adjustment",
    "n1",
    "n2",
    "mean1",
    "mean2",
    "mean_diff",
    "p_value",
    "testable",
    "reason",
    "verdict",
]


def per_question_normalised(examples: pd.DataFrame, references: pd.DataFrame, metric: str) -> pd.Series:
    """``(method - random) / (human_ceiling - random)`` of each question of ``examples`` (one row per
    question), its references scored as the method is (leave-one-out columns when the references
    have them); NaN where the ceiling does not exceed the floor in the metric's direction."""
    column = LOO_PREFIX + metric if LOO_PREFIX + metric in references and LOO_PREFIX + metric in examples else metric
    if column not in references or column not in examples:
        return pd.Series(np.nan, index=examples.index)
    wide = references.pivot_table(index="question_id", columns="reference", values=column, aggfunc="first")
    if not {"random", HUMAN_CEILING} <= set(wide.columns):
        return pd.Series(np.nan, index=examples.index)
    floor = examples["question_id"].map(wide["random"])
    ceiling = examples["question_id"].map(wide[HUMAN_CEILING])
    span = ceiling - floor
    sign = 1.0 if REGISTRY[metric].higher_is_better else -1.0
    readable = sign * span > 0
    return ((examples[column] - floor) / span.where(readable)).astype(float)


def _test(
    values: np.ndarray,
    first: np.ndarray,
    images: np.ndarray,
    strata: np.ndarray | None,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    min_group: int,
    min_images: int,
) -> dict:
    keep = ~np.isnan(values)
    values, first, images = values[keep], first[keep], images[keep]
    strata = None if strata is None else strata[keep]
    n1, n2 = int(first.sum()), int((~first).sum())
    out = {
        "n1": n1,
        "n2": n2,
        "mean1": float(values[first].mean()) if n1 else np.nan,
        "mean2": float(values[~first].mean()) if n2 else np.nan,
        "p_value": np.nan,
        "testable": False,
    }
    out["mean_diff"] = out["mean1"] - out["mean2"]
    image_counts = [len(set(images[first])), len(set(images[~first]))]
    out["reason"] = too_small(min(n1, n2), min(image_counts), min_group, min_images)
    if out["reason"]:
        return out
    covariates = None
    if strata is not None:
        levels = sorted(set(strata))
        covariates = (
            np.column_stack([(strata == level).astype(float) for level in levels[1:]]) if len(levels) > 1 else None
        )
    codes = np.unique(images.astype(str), return_inverse=True)[1].reshape(-1)
    p = wild_cluster_p(values, first, codes, covariates, n_bootstrap=n_bootstrap, rng=rng)
    out.update(p_value=p, testable=bool(np.isfinite(p)), reason="" if np.isfinite(p) else "no variation")
    return out


def adjusted_comparisons(
    examples: pd.DataFrame,
    references: pd.DataFrame | None = None,
    *,
    metrics=None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    min_group: int = 10,
    min_images: int = 5,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per (comparison, metric, adjustment) on one row per question (``examples``, with
    ``confidence_level``); ``references``: the run's per-question floors and ceiling (without them no
    ``per_question`` rows). ``verdict``: ``group1 higher`` / ``group2 higher`` (the sign of the
    tested difference, p < alpha), ``no difference`` or ``not testable``."""
    rng = np.random.default_rng(seed)
    metrics = [m for m in (metrics or family_metrics()) if m in examples]
    images = (examples["image_id"] if "image_id" in examples else examples["question_id"]).to_numpy()
    strata = examples["answer_type"].astype(str).to_numpy() if "answer_type" in examples else None
    rows = []
    for metric in metrics:
        readings = {"raw": (examples[metric].to_numpy(float), None)}
        if references is not None and len(references):
            readings["per_question"] = (per_question_normalised(examples, references, metric).to_numpy(float), None)
        if strata is not None:
            readings["within_answer_type"] = (examples[metric].to_numpy(float), strata)
        for comparison, (one, two) in COMPARISONS.items():
            a, b = scenario_mask(examples, one).to_numpy(), scenario_mask(examples, two).to_numpy()
            rows_in = a | b
            for adjustment, (values, by) in readings.items():
                result = _test(
                    values[rows_in],
                    a[rows_in],
                    images[rows_in],
                    None if by is None else by[rows_in],
                    n_bootstrap=n_bootstrap,
                    rng=rng,
                    min_group=min_group,
                    min_images=min_images,
                )
                verdict = (
                    "not testable"
                    if not result["testable"]
                    else "no difference"
                    if result["p_value"] >= alpha
                    else f"{one} higher"
                    if result["mean_diff"] > 0
                    else f"{two} higher"
                )
                rows.append(
                    {"comparison": comparison, "metric": metric, "adjustment": adjustment, **result, "verdict": verdict}
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def disagreements(table: pd.DataFrame) -> list[str]:
    """Sentences for the comparisons whose verdict changes once each question is read against its own
    floor and ceiling, or within its answer type."""
    lines = []
    if table is None or table.empty:
        return lines
    for (comparison, metric), part in table.groupby(["comparison", "metric"], sort=False):
        verdicts = part.set_index("adjustment")["verdict"]
        raw = verdicts.get("raw")
        if raw is None or raw == "not testable":
            continue
        changed = [
            f"{adjustment.replace('_', ' ')}: {verdicts[adjustment]}"
            for adjustment in ADJUSTMENTS[1:]
            if adjustment in verdicts and verdicts[adjustment] not in (raw, "not testable")
        ]
        if changed:
            lines.append(
                f"{comparison.replace('_', ' ')} on {metric}: raw {raw}, but "
                + "; ".join(changed)
                + " (the raw difference reflects which questions fall in each group)."
            )
    return lines
