"""Reading a method's scores against its floors and ceiling.

Inputs: the run's example rows (one per question: the map that stands for the example, see
:func:`vqa_interp.analysis.statistics.example_rows`) and the references table of the same questions
(:func:`vqa_interp.pipeline.score_references`: one row per question x reference).

Like with like: the human ceiling scores each annotator against the mean of the *other* annotators
(leave-one-out), so the method and the floors here are scored the same way (``protocol="loo"``:
their ``loo/<metric>`` columns, against every leave-one-out mean, averaged). Scored against the mean
of all annotators instead, one more human would beat the ceiling (that mean holds less noise).
Data with one annotator per question has no ceiling: the table then uses the headline reference
(``protocol="headline"``) and has no normalised score.

Paired: every number of a metric is a mean over the same questions, those where the method, the
random floor and the ceiling are all defined (the other floors: those of them where they are too,
``n`` says how many). A method equal to the ceiling on its questions normalises to exactly 1.

- ``tables/baselines.csv``: per metric, the mean with a bootstrap 95% CI (resampling images) and n
  for the method and every reference (``random``, ``centre``, ``image``, ``oracle``,
  ``human_ceiling``), and the protocol.
- ``tables/normalised.csv``: ``(method - random) / (human_ceiling - random)`` per metric on those
  questions, with its bootstrap 95% CI: 0 = chance, 1 = as close as one annotator is to the others
  (for a lower-is-better metric the ratio reads the same).
- paired tests: the mean per-question difference method - reference, its p from a sign-flip
  permutation test over images and its CI from a bootstrap over images (one procedure,
  :mod:`vqa_interp.analysis.verdicts`), for ``centre`` and ``image`` on the tested metrics, Holm over
  those tests; ``verdict`` says better / worse / no difference in the metric's own direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.analysis.group_tests import holm
from vqa_interp.analysis.resampling import bootstrap_mean_ci, percentile_ci, resampled_means
from vqa_interp.analysis.statistics import images_of, present_metrics
from vqa_interp.analysis.verdicts import PAIRED_FIELDS, paired_test, verdict_of
from vqa_interp.attribution.baselines import HUMAN_CEILING, REFERENCES
from vqa_interp.metrics.registry import LOO_PREFIX, REGISTRY, family_metrics

REFERENCE_ORDER = ("method", *REFERENCES)
PAIRED_AGAINST = ("centre", "image")
PROTOCOLS = {
    "loo": "each map against every leave-one-out mean of the annotators, as the ceiling",
    "headline": "each map against the headline reference (scoring.human)",
}


def protocol_of(references: pd.DataFrame) -> str:
    """``loo`` when the references hold a ceiling scored leave-one-out, else ``headline``."""
    ceiling = references[references["reference"] == HUMAN_CEILING] if len(references) else references
    return "loo" if len(ceiling) and any(c.startswith(LOO_PREFIX) for c in references.columns) else "headline"


def _column(frame: pd.DataFrame, metric: str, protocol: str) -> pd.Series:
    name = LOO_PREFIX + metric if protocol == "loo" else metric
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def _wide(examples: pd.DataFrame, references: pd.DataFrame, metric: str, protocol: str) -> pd.DataFrame:
    """One row per question of ``examples``: ``method``, each reference's value of ``metric`` and
    ``image_id`` (NaN where a reference has no row or is undefined)."""
    method = examples.drop_duplicates("question_id").set_index("question_id")
    out = pd.DataFrame({"method": _column(method, metric, protocol)})
    out["image_id"] = method["image_id"] if "image_id" in method else method.index
    refs = references.assign(value=_column(references, metric, protocol))
    wide = refs.pivot_table(index="question_id", columns="reference", values="value", aggfunc="first", dropna=False)
    return out.join(wide, how="left")


def _paired_rows(wide: pd.DataFrame) -> pd.Series:
    """The questions every part of the normalisation has: the method, the random floor and (where
    the table has one) the ceiling."""
    needed = ["method", *[r for r in ("random", HUMAN_CEILING) if r in wide]]
    return wide[needed].notna().all(axis=1)


def _per_metric(examples: pd.DataFrame, references: pd.DataFrame, metrics, protocol: str | None):
    """``(protocol, [(metric, wide, paired)])``: each metric's questions (:func:`_wide`) and those the
    normalisation reads (:func:`_paired_rows`)."""
    protocol = protocol or protocol_of(references)
    metrics = present_metrics(references if metrics is None else references[["reference", *metrics]], metrics)
    out = []
    for metric in metrics:
        wide = _wide(examples, references, metric, protocol)
        out.append((metric, wide, wide[_paired_rows(wide)]))
    return protocol, out


def baselines_table(
    examples: pd.DataFrame,
    references: pd.DataFrame,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    metrics=None,
    protocol: str | None = None,
) -> pd.DataFrame:
    """``reference, metric, mean, ci_low, ci_high, n, protocol`` for the method and every reference,
    paired on the method's questions (see the module docs)."""
    rng = np.random.default_rng(seed)
    protocol, frames = _per_metric(examples, references, metrics, protocol)
    rows = []
    for metric, wide, paired in frames:
        for reference in REFERENCE_ORDER:
            if reference not in wide:
                continue
            part = paired[paired[reference].notna()]
            values = part[reference].to_numpy(float)
            low, high = bootstrap_mean_ci(values, n_bootstrap, rng, clusters=part["image_id"].to_numpy())
            rows.append(
                {
                    "reference": reference,
                    "metric": metric,
                    "mean": float(values.mean()) if len(values) else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "n": len(values),
                    "protocol": protocol,
                }
            )
    return pd.DataFrame(rows, columns=["reference", "metric", "mean", "ci_low", "ci_high", "n", "protocol"])


def normalised_table(
    examples: pd.DataFrame,
    references: pd.DataFrame,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    metrics=None,
    protocol: str | None = None,
) -> pd.DataFrame:
    """``metric, normalised, ci_low, ci_high, n, protocol``: ``(method - random) / (ceiling - random)``
    of the means over the same questions, its CI from a bootstrap over images (the ratio of the
    resampled means); NaN without a ceiling or where the ceiling equals the floor."""
    rng = np.random.default_rng(seed)
    protocol, frames = _per_metric(examples, references, metrics, protocol)
    rows = []
    for metric, wide, paired in frames:
        row = {
            "metric": metric,
            "normalised": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "n": 0,
            "protocol": protocol,
        }
        if {"random", HUMAN_CEILING} <= set(wide.columns):
            values = paired[["method", "random", HUMAN_CEILING]].to_numpy(float)
            row["n"] = len(values)
            if len(values):
                row["normalised"] = float(normalised(*values.mean(axis=0)))
                means = resampled_means(values, paired["image_id"].to_numpy(), n_bootstrap, rng)
                row["ci_low"], row["ci_high"] = percentile_ci(normalised(*means.T))
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", "normalised", "ci_low", "ci_high", "n", "protocol"])


def normalised(method, floor, ceiling):
    """``(method - floor) / (ceiling - floor)``: 0 = the floor (say the random maps), 1 = the ceiling
    (one more human). Pass means over the *same* questions, each scored under the same protocol
    (:func:`vqa_interp.scoring.score_leave_one_out` for the method and the floor,
    :func:`vqa_interp.scoring.human_ceiling`); NaN where the ceiling equals the floor. Elementwise
    on arrays (bootstrap resamples)."""
    method, floor, ceiling = (np.asarray(x, float) for x in (method, floor, ceiling))
    span = ceiling - floor
    out = np.where(span != 0, (method - floor) / np.where(span != 0, span, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def normalised_scores(table: pd.DataFrame) -> dict[str, float]:
    """``(method - random) / (human_ceiling - random)`` per metric from a :func:`baselines_table`
    (means over the same questions; NaN where a part is missing or the ceiling equals the floor)."""
    means = table.pivot(index="metric", columns="reference", values="mean")
    return {
        metric: normalised(*(row.get(k, np.nan) for k in ("method", "random", HUMAN_CEILING)))
        for metric, row in means.iterrows()
    }


PAIRED_COLUMNS = ["reference", "metric", *PAIRED_FIELDS, "test", "testable", "reason", "protocol"]


def paired_baseline_tests(
    examples: pd.DataFrame,
    references: pd.DataFrame,
    *,
    against=PAIRED_AGAINST,
    metrics=None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    protocol: str | None = None,
    min_questions: int = 2,
    min_images: int = 2,
) -> pd.DataFrame:
    """Does the method beat ``centre`` / ``image`` on the same questions? The mean of method -
    reference per question, its sign-flip p over images and bootstrap 95% CI over images
    (:func:`vqa_interp.analysis.verdicts.paired_test`), Holm over all testable rows. ``better`` says
    whether the method is better in the metric's own direction and significant; ``verdict`` is
    better / worse / no difference / not testable."""
    rng = np.random.default_rng(seed)
    protocol = protocol or protocol_of(references)
    metrics = [m for m in (metrics or family_metrics()) if m in examples.columns]
    rows = []
    for reference in against:
        for metric in metrics:
            wide = _wide(examples, references, metric, protocol)
            if reference not in wide:
                continue
            joined = wide[["method", reference, "image_id"]].dropna()
            diff = (joined["method"] - joined[reference]).to_numpy(float)
            tested = paired_test(
                diff,
                images_of(joined),
                n_bootstrap=n_bootstrap,
                rng=rng,
                min_questions=min_questions,
                min_images=min_images,
            )
            rows.append({"reference": reference, "metric": metric, "protocol": protocol, **tested})
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    table["p_holm"] = np.nan
    testable = table["testable"].astype(bool)
    if testable.any():
        table.loc[testable, "p_holm"] = holm(table.loc[testable, "p_value"].to_numpy(float))
    table["verdict"] = [
        verdict_of(r.mean_diff, r.p_holm, bool(r.testable), REGISTRY[r.metric].higher_is_better)
        for r in table.itertuples()
    ]
    table["better"] = table["verdict"] == "better"
    return table


FLOOR_CEILING_MARKERS = {
    "method": ("o", "tab:red"),
    "random": ("|", "black"),
    "centre": ("s", "tab:blue"),
    "image": ("^", "tab:green"),
    "oracle": ("*", "tab:purple"),
    "human_ceiling": ("|", "black"),
}


def _floor_ceiling_row(ax, part: pd.DataFrame, metric: str, method: str) -> None:
    """One metric's row: the floor-to-ceiling span shaded, each reference's mean and 95% CI
    (``part``: the metric's rows indexed by reference)."""
    from matplotlib.ticker import MaxNLocator

    markers = FLOOR_CEILING_MARKERS
    if {"random", "human_ceiling"} <= set(part.index):
        ax.axvspan(
            min(part.loc["random", "mean"], part.loc["human_ceiling", "mean"]),
            max(part.loc["random", "mean"], part.loc["human_ceiling", "mean"]),
            color="#eeeeee",
        )
    lows, highs, colours = [], [], []
    for reference, (marker, colour) in markers.items():
        if reference not in part.index or not np.isfinite(part.loc[reference, "mean"]):
            continue
        mean, low, high = part.loc[reference, ["mean", "ci_low", "ci_high"]]
        label = method if reference == "method" else reference.replace("_", " ")
        ax.plot([mean], [0], marker, color=colour, ms=8, label=label, zorder=3)
        if np.isfinite(low) and np.isfinite(high):
            lows.append(low)
            highs.append(high)
            colours.append(colour)
    if lows:
        ax.hlines(np.zeros(len(lows)), lows, highs, colors=colours, zorder=2)
        ax.scatter([*lows, *highs], np.zeros(2 * len(lows)), marker="|", s=36, c=colours * 2, zorder=2)
    direction = "higher" if REGISTRY[metric].higher_is_better else "lower"
    ax.set_yticks([])
    ax.set_ylim(-1, 1)
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_ylabel(metric, rotation=0, ha="right", va="center", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{direction} = closer to humans", fontsize=6, loc="right")


def floor_ceiling_figure(table: pd.DataFrame, method: str):
    """Each metric on its own row: the span from the random floor to the human ceiling, with the
    method and the other references marked (means, bootstrap 95% CI as bars).

    Drawn with one line collection and one cap scatter per row and a fixed layout: the same picture
    as an ``errorbar`` per point and ``tight_layout``, at about half the drawing time (each
    errorbar is four artists, and the layout pass draws the figure once more)."""

    from vqa_interp.analysis.figures import new_figure

    metrics = list(dict.fromkeys(table["metric"]))
    height = 0.9 * len(metrics) + 0.9
    fig, axes = new_figure(len(metrics), 1, figsize=(7.5, height), squeeze=False)
    # fixed margins in inches: the metric names on the left, the title and legend on top
    fig.subplots_adjust(left=1.35 / 7.5, right=0.97, bottom=0.35 / height, top=1 - 1.15 / height, hspace=1.5)
    for ax, metric in zip(axes[:, 0], metrics):
        _floor_ceiling_row(ax, table[table["metric"] == metric].set_index("reference"), metric, method)
    axes[0, 0].legend(fontsize=6, ncol=6, loc="lower left", bbox_to_anchor=(0, 1.25))
    protocol = table["protocol"].iloc[0] if "protocol" in table and len(table) else "headline"
    against = "leave-one-out means, as the ceiling" if protocol == "loo" else "the headline reference"
    fig.suptitle(
        f"{method} between its floors and the human ceiling\n(means over the same questions, against "
        f"{against}; bootstrap 95% CI over images)",
        fontsize=9,
        y=1 - 0.1 / height,
        va="top",
    )
    return fig
