"""Reading the explain tables: each number next to its floor. The unit is the question: every test
and mean is over one row per question (the map that stands for it, ``analysis.map_for_example``),
bootstrap CIs resample images.

- Token attributions against the decisive words (where the dataset knows them): mean ``token_auc``
  next to a random ranking's 0.5 (sign-flip test over images of the mean ``token_auc - 0.5``), top-1 hit rate next
  to its chance value.
- The image's share of the attribution by split (correct/wrong x confidence), with the paper's five
  comparisons applied to it (``analysis.test`` primary, Holm over those five).
- Faithfulness: mean deletion/insertion AUC of the method's maps next to random maps' on the same
  targets (the mean paired difference: sign-flip test and bootstrap 95% CI over images,
  :mod:`vqa_interp.analysis.verdicts`).
- Plausibility vs faithfulness: per example, Spearman correlation between agreeing with humans
  (``rank_corr``, ``iou``) and each faithfulness AUC. With deletion, a negative correlation means the
  maps that agree with humans are also the ones whose top pixels the model needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from vqa_interp.analysis.statistics import SCENARIOS, images_of, scenario_mask, significance_table
from vqa_interp.analysis.verdicts import paired_test
from vqa_interp.metrics.registry import headline_metrics

FAITHFULNESS = (("deletion_auc", "lower"), ("insertion_auc", "higher"))
# the explain metrics a sweep compares across its children: what each method's maps tell about the
# model, next to how human-like they are
COMPARED_METRICS = (
    "faithfulness/deletion_auc",
    "faithfulness/random_deletion_auc",
    "faithfulness/insertion_auc",
    "faithfulness/random_insertion_auc",
    "faithfulness/plausibility_rank_corr_vs_deletion",
    "tokens/decisive_auc",
    "share/image",
)


def faithfulness_table(examples: pd.DataFrame, *, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """One row per curve: the method's mean AUC, random maps' mean AUC on the same questions (one row
    per question), the paired difference (its sign-flip p and bootstrap 95% CI over images) and whether
    the method is more faithful than random."""
    rng = np.random.default_rng(seed)
    rows = []
    for column, better in FAITHFULNESS:
        if column not in examples or f"random_{column}" not in examples:
            continue
        frame = examples[[column, f"random_{column}", *(["image_id"] if "image_id" in examples else [])]].dropna()
        pair = frame[[column, f"random_{column}"]].to_numpy(float)
        diff = pair[:, 0] - pair[:, 1]
        test = paired_test(diff, images_of(frame), n_bootstrap=n_bootstrap, rng=rng)
        sign = -1 if better == "lower" else 1
        p = test["p_value"]
        rows.append(
            {
                "curve": column.removesuffix("_auc"),
                "better": better,
                "n": len(diff),
                "n_images": test["n_images"],
                "method": float(pair[:, 0].mean()) if len(pair) else np.nan,
                "random": float(pair[:, 1].mean()) if len(pair) else np.nan,
                "mean_diff": test["mean_diff"],
                "ci_low": test["ci_low"],
                "ci_high": test["ci_high"],
                "test": test["test"],
                "p_value": p,
                "more_faithful_than_random": bool(np.isfinite(p) and p < 0.05 and sign * diff.mean() > 0),
            }
        )
    return pd.DataFrame(rows)


def plausibility_faithfulness(examples: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation, per example, of each plausibility metric with each faithfulness AUC."""
    rows = []
    for metric in [m for m in headline_metrics(2) if m in examples]:
        for column, better in FAITHFULNESS:
            if column not in examples:
                continue
            pair = examples[[metric, column]].dropna().to_numpy(float)
            row = {"plausibility": metric, "faithfulness": column, "better": better, "n": len(pair)}
            if len(pair) < 3 or np.ptp(pair[:, 0]) == 0 or np.ptp(pair[:, 1]) == 0:
                row.update(spearman=np.nan, p_value=np.nan)
            else:
                result = scipy.stats.spearmanr(pair[:, 0], pair[:, 1])
                row.update(spearman=float(result.statistic), p_value=float(result.pvalue))
            rows.append(row)
    return pd.DataFrame(rows, columns=["plausibility", "faithfulness", "better", "n", "spearman", "p_value"])


def share_by_split(examples: pd.DataFrame) -> pd.DataFrame:
    """n, mean, median and quartiles of the image's share per scenario (the paper's splits)."""
    rows = []
    for scenario in SCENARIOS:
        values = examples.loc[scenario_mask(examples, scenario), "image_share"].dropna().to_numpy(float)
        quartiles = np.percentile(values, [25, 75]) if len(values) else (np.nan, np.nan)
        rows.append(
            {
                "scenario": scenario,
                "n": len(values),
                "mean": values.mean() if len(values) else np.nan,
                "median": np.median(values) if len(values) else np.nan,
                "q25": quartiles[0],
                "q75": quartiles[1],
            }
        )
    return pd.DataFrame(rows)


def token_table(examples: pd.DataFrame) -> pd.DataFrame:
    """Token scores against the decisive words next to a random ranking (one row; n questions)."""
    frame = examples[examples["token_auc"].notna()]
    auc = frame["token_auc"].to_numpy(float)
    top1 = examples[["token_top1", "token_top1_chance"]].dropna().to_numpy(float)
    test = paired_test(auc - 0.5, images_of(frame))
    return pd.DataFrame(
        [
            {
                "n": len(auc),
                "token_auc": auc.mean() if len(auc) else np.nan,
                "random_auc": 0.5,
                "test": test["test"],
                "p_value": test["p_value"],
                "top1_hit": top1[:, 0].mean() if len(top1) else np.nan,
                "top1_chance": top1[:, 1].mean() if len(top1) else np.nan,
            }
        ]
    )


@dataclass
class Found:
    """What the explain analysis found: tables by name, MLflow metrics, summary lines."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def explain_results(
    examples: pd.DataFrame,
    per_target: pd.DataFrame,
    *,
    alpha: float,
    n_bootstrap: int,
    seed: int,
    min_group: int,
    test: str = "cluster_bootstrap",
    min_images: int = 2,
) -> tuple[dict[str, pd.DataFrame], dict[str, float], list[str]]:
    """Tables, MLflow metrics and summary lines. ``examples``: the analysis' one row per question
    (with ``confidence_level``) joined with ``per_target``'s columns, the unit of every test;
    ``per_target``: every map (kept in ``per_example.csv``, not tested)."""
    found = Found()
    _tokens(examples, found)
    _share(
        examples,
        found,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
        min_group=min_group,
        test=test,
        min_images=min_images,
    )
    _faithfulness(examples, found, n_bootstrap=n_bootstrap, seed=seed)
    return found.tables, found.metrics, found.lines


def _tokens(examples: pd.DataFrame, found: Found) -> None:
    """The decisive words' AUC and top-1 hit rate, against 0.5 and chance."""
    if "token_auc" not in examples or not examples["token_auc"].notna().any():
        return
    tokens = token_table(examples)
    found.tables["token_scores"] = tokens
    t = tokens.iloc[0]
    # their references (random AUC 0.5, the top-1 chance) are in tables/token_scores.csv
    found.metrics.update({"tokens/decisive_auc": t.token_auc, "tokens/top1_hit": t.top1_hit})
    found.lines.append(
        f"Question words: the decisive words outrank the others with AUC {t.token_auc:.2f} (random 0.5, "
        f"sign-flip test over images p={t.p_value:.2g}, n={int(t.n)}); the top word is decisive in {t.top1_hit:.0%} of maps "
        f"(chance {t.top1_chance:.0%})."
    )


def _share(examples: pd.DataFrame, found: Found, *, alpha, n_bootstrap, seed, min_group, test, min_images) -> None:
    """The image's share of the attribution by split, and its correct/wrong tests."""
    if "image_share" not in examples or not examples["image_share"].notna().any():
        return
    by_split = share_by_split(examples)
    found.tables["image_share_by_split"] = by_split
    significance = significance_table(
        examples,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
        metrics=["image_share"],
        min_group=min_group,
        family=["image_share"],
        primary=test,
        min_images=min_images,
    )
    found.tables["image_share_significance"] = significance
    means = by_split.set_index("scenario")["mean"]
    found.metrics["share/image"] = float(means["all"])  # by split: tables/image_share_by_split.csv
    primary = significance[(significance["test"] == test)]
    significant = primary[primary["significant"].astype(bool)]
    verdicts = (
        "; ".join(
            f"{r.comparison} {r.mean1:.2f} vs {r.mean2:.2f} (Holm p={r.p_holm:.2g})" for r in significant.itertuples()
        )
        or "no comparison significant after Holm"
    )
    found.lines.append(
        f"Image vs question: the image holds {means['all']:.0%} of the attribution (correct "
        f"{means['correct']:.0%}, wrong {means['wrong']:.0%}); {verdicts}."
    )


def _faithfulness(examples: pd.DataFrame, found: Found, *, n_bootstrap: int, seed: int) -> None:
    """Deletion/insertion AUCs against random maps, and how plausibility relates to faithfulness."""
    faithful = faithfulness_table(examples, n_bootstrap=n_bootstrap, seed=seed)
    if len(faithful):
        found.tables["faithfulness"] = faithful
        for row in faithful.itertuples():
            found.metrics[f"faithfulness/{row.curve}_auc"] = row.method
            found.metrics[f"faithfulness/random_{row.curve}_auc"] = row.random
        parts = [
            f"{r.curve} AUC {r.method:.3f} vs random maps {r.random:.3f} ({r.better} is more faithful; "
            f"{'more faithful than random' if r.more_faithful_than_random else 'not more faithful than random'}, "
            f"sign-flip test over images p={r.p_value:.2g})"
            for r in faithful.itertuples()
        ]
        found.lines.append("Faithfulness: " + "; ".join(parts) + ".")
        correlation = plausibility_faithfulness(examples)
        found.tables["plausibility_faithfulness"] = correlation
        for row in correlation.itertuples():  # the measure as a metric; iou's stays in the table
            if np.isfinite(row.spearman) and row.plausibility == "rank_corr":
                found.metrics[
                    f"faithfulness/plausibility_{row.plausibility}_vs_{row.faithfulness.removesuffix('_auc')}"
                ] = row.spearman
        deletion = correlation[
            (correlation["plausibility"] == "rank_corr") & (correlation["faithfulness"] == "deletion_auc")
        ]
        if len(deletion) and np.isfinite(deletion.iloc[0]["spearman"]):
            d = deletion.iloc[0]
            if d.p_value < 0.05:
                reading = (
                    "the maps that agree more with humans are also the ones the model's answer depends on more"
                    if d.spearman < 0
                    else "the maps that agree more with humans are the ones the model's answer depends on less"
                )
            else:
                reading = "agreeing with humans tells nothing here about being faithful"
            found.lines.append(
                f"Plausible vs faithful: Spearman {d.spearman:+.2f} between rank correlation with humans and "
                f"deletion AUC (p={d.p_value:.2g}, n={int(d.n)}): {reading}."
            )
