"""How robust is a sweep's ranking of methods? Three readings of the same per-question rows.

- **Metric agreement**: Kendall's tau between the method rankings of every pair of metrics at one
  k (each metric in its own direction: 1 = the same order, -1 = reversed), with the pairs of methods
  the two metrics order differently named.
- **Ranking stability**: from the ranking's bootstrap over images
  (:func:`vqa_interp.analysis.comparisons.rank_rows`), the probability that each method ranks
  first, its rank's 95% interval and the probability that it stays above the next method.
- **By question type**: the ranking redone within each VQA ``answer_type`` (yes/no, number, other)
  and each frequent ``question_type`` (the most common ones with at least ``min_questions``
  questions every method scored).

The unit is the question throughout (one row per question, the map that stands for it).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import scipy.stats

from vqa_interp.analysis.comparisons import direction, per_metric, shared
from vqa_interp.metrics.registry import headline_metrics

AGREEMENT_COLUMNS = ["k", "metric_a", "metric_b", "n_methods", "kendall_tau", "disagreeing_pairs"]
STABILITY_COLUMNS = ["k", "metric", "rank", "method", "mean", "p_first", "rank_low", "rank_high", "p_above_next"]
BY_TYPE_COLUMNS = ["k", "metric", "group_kind", "group", "n", "rank", "method", "mean"]


def _scores(part: pd.DataFrame) -> dict[str, float]:
    """method -> its mean in the metric's own direction (higher = closer to humans)."""
    metric = part["metric"].iloc[0]
    return {m: direction(metric) * v for m, v in zip(part["method"], part["mean"])}


def metric_agreement(ranking: pd.DataFrame) -> pd.DataFrame:
    """One row per (k, pair of metrics): Kendall's tau between their orders of the methods and the
    method pairs they order differently (``a>b`` by the first metric, reversed by the second)."""
    rows = []
    for k, at_k in ranking.groupby("k", sort=False):
        scores = {metric: _scores(part) for metric, part in at_k.groupby("metric", sort=False)}
        for first, second in combinations(list(scores), 2):
            methods = sorted(set(scores[first]) & set(scores[second]))
            x = np.array([scores[first][m] for m in methods])
            y = np.array([scores[second][m] for m in methods])
            tau = float(scipy.stats.kendalltau(x, y).statistic) if len(methods) >= 2 else np.nan
            disagree = [
                f"{a}>{b}" if scores[first][a] > scores[first][b] else f"{b}>{a}"
                for a, b in combinations(methods, 2)
                if np.sign(scores[first][a] - scores[first][b]) * np.sign(scores[second][a] - scores[second][b]) < 0
            ]
            rows.append(
                {
                    "k": k,
                    "metric_a": first,
                    "metric_b": second,
                    "n_methods": len(methods),
                    "kendall_tau": tau,
                    "disagreeing_pairs": ", ".join(disagree),
                }
            )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def ranking_stability(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking's bootstrap columns, one row per (k, metric, method), best first."""
    return ranking[STABILITY_COLUMNS].sort_values(["k", "metric", "rank"], kind="stable").reset_index(drop=True)


def ranking_by_type(runs: list[dict], *, metrics=None, min_questions: int = 10, n_types: int = 5) -> pd.DataFrame:
    """The methods ranked within each ``answer_type`` and each frequent ``question_type`` (on the
    questions of that group every method scored; groups with fewer than ``min_questions`` left out)."""
    rows = []
    for k, metric, wide, _, methods in per_metric(runs, metrics):
        if len(methods) < 2:
            continue
        common = shared(wide, methods)
        for kind in ("answer_type", "question_type"):
            if kind not in common or common[kind].isna().all():
                continue
            counts = common[kind].value_counts()
            counts = counts[counts >= min_questions]
            if kind == "question_type":
                counts = counts.head(n_types)
            for group in counts.index:
                part = common[common[kind] == group]
                means = part[methods].mean()
                order = sorted(methods, key=lambda m: (-direction(metric) * means[m], m))
                for rank, method in enumerate(order, 1):
                    rows.append(
                        {
                            "k": k,
                            "metric": metric,
                            "group_kind": kind,
                            "group": group,
                            "n": len(part),
                            "rank": rank,
                            "method": method,
                            "mean": float(means[method]),
                        }
                    )
    return pd.DataFrame(rows, columns=BY_TYPE_COLUMNS)


def leading_pair(ranking: pd.DataFrame, k) -> tuple[str, str, str] | None:
    """(headline metric, first method, second method) at ``k`` (None with fewer than two methods)."""
    at_k = ranking[ranking["k"] == k]
    metric = next((m for m in headline_metrics() if m in set(at_k["metric"])), None)
    if metric is None:
        metric = at_k["metric"].iloc[0] if len(at_k) else None
    part = at_k[at_k["metric"] == metric].sort_values("rank") if metric else at_k.iloc[:0]
    if len(part) < 2:
        return None
    return metric, part["method"].iloc[0], part["method"].iloc[1]


def robustness_lines(ranking: pd.DataFrame, by_type: pd.DataFrame | None = None) -> list[str]:
    """One line per k: does the headline metric's first method stay above its second on the other
    metrics, in the bootstrap resamples and within the question types?"""
    lines = []
    for k in dict.fromkeys(ranking["k"]):
        found = leading_pair(ranking, k)
        if found is None:
            continue
        metric, first, second = found
        at_k = ranking[ranking["k"] == k]
        holds = total = 0
        for _, part in at_k.groupby("metric", sort=False):
            scores = _scores(part)
            if first in scores and second in scores:
                total += 1
                holds += scores[first] > scores[second]
        head = at_k[(at_k["metric"] == metric) & (at_k["method"] == first)].iloc[0]
        line = (
            f"k={k}: the ranking of {first} over {second} ({metric}) holds on {holds}/{total} metrics and in "
            f"{head['p_above_next']:.0%} of resamples of the images; {first} ranks first in "
            f"{head['p_first']:.0%} of them"
        )
        if by_type is not None and len(by_type):
            groups = by_type[(by_type["k"] == k) & (by_type["metric"] == metric)]
            kept = [
                g
                for (_, g), part in groups.groupby(["group_kind", "group"], sort=False)
                if _order_of(part, first, second)
            ]
            n_groups = groups.groupby(["group_kind", "group"]).ngroups
            if n_groups:
                line += f", and within {len(kept)}/{n_groups} answer and question types"
        lines.append(line + ".")
    return lines


def _order_of(part: pd.DataFrame, first: str, second: str) -> bool:
    ranks = dict(zip(part["method"], part["rank"]))
    return first in ranks and second in ranks and ranks[first] < ranks[second]


def robustness_figure(ranking: pd.DataFrame, agreement: pd.DataFrame):
    """Per k: the metrics' agreement (Kendall's tau, a heatmap) and each method's probability of
    ranking first on each metric (bootstrap over images)."""
    from vqa_interp.analysis.figures import new_figure

    ks = list(dict.fromkeys(ranking["k"]))
    fig, axes = new_figure(len(ks), 2, figsize=(11, 4.2 * len(ks)), squeeze=False)
    for row, k in zip(axes, ks):
        at_k = ranking[ranking["k"] == k]
        metrics = list(dict.fromkeys(at_k["metric"]))
        tau = np.eye(len(metrics))
        for r in agreement[agreement["k"] == k].itertuples():
            i, j = metrics.index(r.metric_a), metrics.index(r.metric_b)
            tau[i, j] = tau[j, i] = r.kendall_tau
        image = row[0].imshow(tau, vmin=-1, vmax=1, cmap="RdBu")
        row[0].set_xticks(range(len(metrics)), metrics, rotation=60, fontsize=7, ha="right")
        row[0].set_yticks(range(len(metrics)), metrics, fontsize=7)
        for i in range(len(metrics)):
            for j in range(len(metrics)):
                if np.isfinite(tau[i, j]):
                    row[0].text(
                        j,
                        i,
                        f"{tau[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if abs(tau[i, j]) > 0.5 else "black",
                    )
        row[0].set_title(f"k={k}: agreement of the metrics' rankings (Kendall's tau)", fontsize=8)
        fig.colorbar(image, ax=row[0], shrink=0.7)
        first = at_k.pivot_table(index="metric", columns="method", values="p_first", sort=False).reindex(metrics)
        bottom = np.zeros(len(metrics))
        for method in first.columns:
            values = first[method].fillna(0).to_numpy(float)
            row[1].barh(range(len(metrics)), values, left=bottom, label=method)
            bottom += values
        row[1].set_yticks(range(len(metrics)), metrics, fontsize=7)
        row[1].invert_yaxis()
        row[1].set_xlim(0, 1)
        row[1].set_xlabel("P(ranks first), bootstrap over images", fontsize=7)
        row[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        row[1].set_title(f"k={k}: which method ranks first, per metric", fontsize=8)
    fig.suptitle(
        "How robust the ranking is: across metrics and across resamples of the images (one value per question)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
