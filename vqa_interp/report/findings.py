"""The report's findings: sentences generated from the runs' own tables (nothing here is typed by
hand), one function per kind of table: a sweep's ranking, a run's floors and ceiling, its
correct-vs-wrong tests, its confidence correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vqa_interp.analysis.baselines import normalised
from vqa_interp.analysis.comparisons import pair_test


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _g(value) -> str:
    return f"{value:.3g}" if isinstance(value, (float, int)) and np.isfinite(value) else "n/a"


def findings(
    evaluations, tables: dict[str, dict[str, pd.DataFrame]], parent_tables: dict[str, pd.DataFrame]
) -> list[str]:
    """The findings of ``evaluations`` (runs) from their ``tables`` (run ID -> name -> table) and the
    sweep parent's ``parent_tables`` (``method_ranking``, ``method_pairs``)."""
    lines = ranking_lines(parent_tables.get("method_ranking"), parent_tables.get("method_pairs"))
    for run in evaluations:
        t = tables.get(run.info.run_id, {})
        name = run.info.run_name
        lines += floor_lines(name, t.get("baselines"), t.get("baseline_tests"))
        lines += significance_lines(name, t.get("significance"))
        lines += correlation_lines(name, t.get("confidence_correlations"))
    return lines


def ranking_lines(ranking: pd.DataFrame | None, pairs: pd.DataFrame | None) -> list[str]:
    """One sentence per setting, k and metric: the method closest to humans and how it compares."""
    if ranking is None or ranking.empty:
        return []
    lines = []
    ranking = ranking.assign(setting=ranking["setting"].fillna("") if "setting" in ranking else "")
    for (setting, k, metric), part in ranking.groupby(["setting", "k", "metric"], sort=False):
        part = part.sort_values("rank")
        best, rest = part.iloc[0], part.iloc[1:]
        beaten, tied = [], []
        for other in rest.itertuples():
            test = pair_test(pairs, k, metric, best["method"], other.method, setting)
            p = float(test["p_holm"]) if test is not None else float("nan")
            won = test is not None and test["better"] == best["method"]  # the sign of the paired difference
            (beaten if won else tied).append(f"{other.method} (p={_g(p)})")
        where = f"{setting}, " if setting else ""
        sentence = (
            f"Closest to humans on {metric} ({where}k={k:g}): **{best['method']}**, mean {_g(best['mean'])} "
            f"[{_g(best['ci_low'])}, {_g(best['ci_high'])}]"
        )
        if beaten:
            sentence += f"; significantly better than {', '.join(beaten)}"
        if tied:
            sentence += f"; not distinguishable from {', '.join(tied)}"
        lines.append(
            sentence + f" (the mean paired difference on the {int(best['n'])} questions every method "
            "scored, sign-flip test over images, Holm)."
        )
    return lines


VERDICT_WORDS = {"better": "beats", "worse": "is significantly worse than", "no difference": "does not differ from"}


def floor_lines(name: str, baselines: pd.DataFrame | None, tests: pd.DataFrame | None) -> list[str]:
    """Where the run's rank correlation and IoU sit between the random floor and the human ceiling,
    and what the paired tests against the centre and image baselines say."""
    if baselines is None or baselines.empty:
        return []
    lines = []
    means = baselines.pivot(index="metric", columns="reference", values="mean")
    for metric in [m for m in ("rank_corr", "iou") if m in means.index]:
        row = means.loc[metric]
        floor, ceiling, value = row.get("random"), row.get("human_ceiling"), row.get("method")
        share = normalised(value, floor, ceiling)
        where = (
            f"{_pct(share)} of the way from the random floor ({_g(floor)}) to the human ceiling ({_g(ceiling)})"
            if np.isfinite(share)
            else "with no floor/ceiling"
        )
        verdicts = [_baseline_verdict(tests, ref, metric, row.get(ref)) for ref in ("centre", "image")]
        verdicts = [v for v in verdicts if v]
        lines.append(f"{name}: {metric} {_g(value)} sits {where}; " + ("; ".join(verdicts) or "no paired test") + ".")
    return lines


def _baseline_verdict(tests: pd.DataFrame | None, reference: str, metric: str, value) -> str:
    if tests is None:
        return ""
    test = tests[(tests["reference"] == reference) & (tests["metric"] == metric)]
    if not len(test) or not test["testable"].iloc[0]:
        return ""
    said = VERDICT_WORDS.get(
        str(test["verdict"].iloc[0]) if "verdict" in test else "",
        "beats" if bool(test["better"].iloc[0]) else "does not beat",
    )
    return f"{said} the {reference} baseline ({_g(value)}, p={_g(float(test['p_holm'].iloc[0]))})"


def significance_lines(name: str, significance: pd.DataFrame | None) -> list[str]:
    """Correct vs wrong answers (and the other primary comparisons) from the run's significance table."""
    if significance is None or significance.empty:
        return []
    lines = []
    primary = significance[(significance["role"] == "primary") & significance["in_family"].astype(bool)]
    cvw = primary[primary["comparison"] == "correct_vs_wrong"]
    significant = cvw[cvw["significant"].astype(bool)]
    if len(significant):
        parts = [
            f"{r.metric} ({'higher' if r.mean_diff > 0 else 'lower'} for correct answers by "
            f"{_g(abs(r.mean_diff))}, d={_g(r.effect_size)}, Holm p={_g(r.p_holm)})"
            for r in significant.itertuples()
        ]
        lines.append(f"{name}: correct and wrong answers differ on " + "; ".join(parts) + ".")
    elif len(cvw):
        lines.append(
            f"{name}: no significant difference between correct and wrong answers on {', '.join(cvw['metric'])} (Holm)."
        )
    others = primary[(primary["comparison"] != "correct_vs_wrong") & primary["significant"].astype(bool)]
    for r in others.itertuples():
        lines.append(
            f"{name}: {r.comparison.replace('_', ' ')} differs on {r.metric} "
            f"(diff {_g(r.mean_diff)}, d={_g(r.effect_size)}, Holm p={_g(r.p_holm)})."
        )
    under = significance[
        (significance["role"] == "primary") & significance["reason"].astype(str).str.startswith("underpowered")
    ]
    if len(under):
        groups = sorted({f"{r.comparison.replace('_', ' ')} ({r.n1} vs {r.n2})" for r in under.itertuples()})
        lines.append(f"{name}: underpowered, not tested (a group below analysis.min_group): " + "; ".join(groups) + ".")
    return lines


def correlation_lines(name: str, correlations: pd.DataFrame | None) -> list[str]:
    """How confidence correlates with the scores among correct predictions (Pearson, testable rows)."""
    if correlations is None or correlations.empty:
        return []
    pearson = correlations[
        (correlations["correlation"] == "pearson")
        & correlations["testable"].astype(bool)
        & correlations["metric"].isin(["rank_corr", "iou"])
    ]
    if not len(pearson):
        return []
    return [
        f"{name}: among correct predictions, confidence correlates with "
        + ", ".join(f"{r.metric} at r={_g(r.r)} (p={_g(r.p_value)}, n={r.n})" for r in pearson.itertuples())
        + "."
    ]
