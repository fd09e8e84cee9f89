"""The tool's two questions answered in two sentences, each with its number, unit, CI and verdict,
from a run's tables (nothing typed by hand):

1. *Does the method explain the model the way humans look?* The method's rank correlation with the
   human maps (the paper's primary metric), where it sits between chance (random maps) and a human
   (the ceiling), and whether it beats a centre Gaussian that never looks at the image.
2. *When does the model look where humans look?* Correct against wrong answers on each tested
   metric, with the verdict of the run's primary test, saying where the metrics disagree and where
   the verdict changes once each question is read against its own floor and ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.metrics.registry import family_metrics

PRIMARY = "rank_corr"
NAMES = {"rank_corr": "rank correlation", "intersect": "intersection", "iou": "IoU", "dice": "Dice"}


def _g(value, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if value is not None and np.isfinite(value) else "n/a"


def where_it_looks(tables: dict[str, pd.DataFrame], method: str) -> str:
    """Sentence 1 (empty when the run has no floors)."""
    baselines, normalised, tests = (tables.get(n) for n in ("baselines", "normalised", "baseline_tests"))
    if baselines is None or baselines.empty or PRIMARY not in set(baselines["metric"]):
        return ""
    row = baselines[(baselines["metric"] == PRIMARY) & (baselines["reference"] == "method")].iloc[0]
    text = (
        f"Does {method} look where humans look? Its rank correlation with the human maps is {_g(row['mean'])} "
        f"[{_g(row['ci_low'])}, {_g(row['ci_high'])}] over {int(row['n'])} questions"
    )
    if normalised is not None and PRIMARY in set(normalised["metric"]):
        n = normalised[normalised["metric"] == PRIMARY].iloc[0]
        if np.isfinite(n["normalised"]):
            text += (
                f", {n['normalised']:.0%} [{n['ci_low']:.0%}, {n['ci_high']:.0%}] of the way from chance (random "
                f"maps) to a human (the ceiling)"
            )
    if tests is not None and not tests.empty:
        centre = tests[(tests["reference"] == "centre") & (tests["metric"] == PRIMARY)]
        if len(centre):
            t = centre.iloc[0]
            said = {"better": "better than", "worse": "worse than", "no difference": "no different from"}.get(
                t["verdict"], "not testable against"
            )
            text += f"; it is {said} a centre Gaussian that never looks at the image"
            if np.isfinite(t["p_holm"]):
                text += f" (mean difference {_g(t['mean_diff'])}, p={_g(t['p_holm'], 2)})"
    return text + "."


def when_it_looks(tables: dict[str, pd.DataFrame]) -> str:
    """Sentence 2 (empty when the comparison was not testable)."""
    significance = tables.get("significance")
    if significance is None or significance.empty:
        return ""
    rows = significance[
        (significance["comparison"] == "correct_vs_wrong")
        & (significance["role"] == "primary")
        & significance["metric"].isin(family_metrics())
    ]
    if rows.empty or not rows["testable"].astype(bool).any():
        return (
            "Does the model look where humans look when it answers right? Not testable here: "
            f"{rows['reason'].iloc[0] if len(rows) else 'no correct/wrong split'}."
        )
    parts, verdicts = [], set()
    for r in rows.itertuples():
        name = NAMES.get(r.metric, r.metric)
        if not r.testable:
            parts.append(f"{name}: not testable")
            continue
        verdict = (
            ("higher for correct answers" if r.mean_diff > 0 else "higher for wrong answers")
            if r.significant
            else "no difference"
        )
        verdicts.add(verdict)
        parts.append(f"{name} {verdict} ({_g(r.mean_diff)} [{_g(r.ci_low)}, {_g(r.ci_high)}], p={_g(r.p_holm, 2)})")
    text = "Does the model look where humans look when it answers right? " + "; ".join(parts)
    if len(verdicts) > 1:
        text += "; the metrics disagree"
    adjusted = tables.get("adjusted_comparisons")
    if adjusted is not None and len(adjusted):
        part = adjusted[(adjusted["comparison"] == "correct_vs_wrong") & adjusted["metric"].isin(family_metrics())]
        raw = part[part["adjustment"] == "raw"].set_index("metric")["verdict"]
        per_question = part[part["adjustment"] == "per_question"].set_index("metric")["verdict"]
        changed = [
            NAMES.get(m, m)
            for m in per_question.index
            if m in raw and per_question[m] != raw[m] and per_question[m] != "not testable"
        ]
        if changed:
            text += f"; read against each question's own floor and ceiling the verdict changes on {', '.join(changed)}"
    return text + " (one value per question; CIs and tests resample images)."


def answer_lines(tables: dict[str, pd.DataFrame], method: str) -> list[str]:
    """The two sentences (those the run's tables allow)."""
    return [line for line in (where_it_looks(tables, method), when_it_looks(tables)) if line]


def which_method(ranking: pd.DataFrame, pairs: pd.DataFrame, setting: str = "") -> tuple[str, float] | None:
    """``(sentence, k)``: the method closest to humans on rank correlation at the first k of a sweep's
    ranking, and how it stands against the next one; None without a rank-correlation ranking."""
    from vqa_interp.analysis.comparisons import pair_test

    part = ranking[ranking["metric"] == PRIMARY]
    if part.empty:
        return None
    k = part["k"].iloc[0]
    part = part[part["k"] == k].sort_values("rank")
    best = part.iloc[0]
    where = f" ({setting}, k={k:g})" if setting else f" (k={k:g})"
    text = (
        f"Which method looks most like humans{where}? {best['method']}: rank correlation {_g(best['mean'])} "
        f"[{_g(best['ci_low'])}, {_g(best['ci_high'])}] over {int(best['n'])} questions"
    )
    if len(part) > 1:
        following = part.iloc[1]
        test = pair_test(pairs, k, PRIMARY, best["method"], following["method"], setting or None)
        if test is not None and test["better"] == best["method"]:
            text += f", significantly above {following['method']} ({_g(following['mean'])}, p={_g(test['p_holm'], 2)})"
        elif test is not None and np.isfinite(test["p_holm"]):
            text += (
                f", not distinguishable from {following['method']} ({_g(following['mean'])}, p={_g(test['p_holm'], 2)})"
            )
    return text + ".", k


def sweep_answer_lines(per_setting, tables_of) -> list[str]:
    """A sweep's sentences: for each setting ``(label, pairs, ranking, entries)``, the method closest
    to humans against the next, and when its model looks where humans look, from that method's own
    run (``tables_of(run_id) -> {name: table}``)."""
    lines = []
    for label, pairs, ranking, entries in per_setting:
        found = which_method(ranking, pairs, label)
        if found is None:
            continue
        sentence, k = found
        lines.append(sentence)
        best = ranking[(ranking["metric"] == PRIMARY) & (ranking["k"] == k)].sort_values("rank").iloc[0]["method"]
        run_id = next((e["run_id"] for e in entries if e["method"] == best and e["k"] == k and "run_id" in e), None)
        second = when_it_looks(tables_of(run_id)) if run_id is not None else ""
        if second:
            lines.append(f"{best}: {second}")
    return lines
