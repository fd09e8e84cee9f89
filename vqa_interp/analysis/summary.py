"""What a researcher reads first: the run's answer as compact tables, for the terminal (plain text)
and for MLflow's run description and the report (Markdown), built from the analysis tables.

- :func:`run_summary`: headline metrics with 95% CIs, the method between its floors and ceiling,
  the paper's comparisons (effect size, Holm p, underpowered flags) and the sanity verdict.
- :func:`sweep_summary`: the ranking of methods across a sweep's runs with the paired tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tabulate import tabulate

from vqa_interp.analysis.baselines import normalised_scores
from vqa_interp.analysis.statistics import bootstrap_mean_ci
from vqa_interp.metrics.registry import REGISTRY, family_metrics


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def headline_table(examples: pd.DataFrame, method: str, k: float, *, n_bootstrap: int = 1000,
                   seed: int = 0) -> list[dict]:
    """One row: the method, k, n questions and each tested metric's mean [95% CI] over the examples."""
    rng = np.random.default_rng(seed)
    row = {"method": method, "k": k, "n": int(examples["question_id"].nunique())}
    for metric in family_metrics():
        if metric not in examples:
            continue
        values = examples[metric].dropna().to_numpy(float)
        low, high = bootstrap_mean_ci(values, n_bootstrap, rng)
        row[metric] = f"{_fmt(values.mean())} [{_fmt(low)}, {_fmt(high)}]" if len(values) else ""
    return [row]


def baselines_rows(baselines: pd.DataFrame, tests: pd.DataFrame | None, method: str) -> list[dict]:
    means = baselines.pivot(index="metric", columns="reference", values="mean")
    norm = normalised_scores(baselines)
    rows = []
    for metric in [m for m in family_metrics() if m in means.index]:
        row = {"metric": metric, method: _fmt(means.loc[metric].get("method"))}
        for ref in ("random", "centre", "image", "oracle", "human_ceiling"):
            if ref in means.columns:
                row[ref.replace("human_ceiling", "ceiling")] = _fmt(means.loc[metric, ref])
        row["normalised"] = _fmt(norm.get(metric))
        if tests is not None:
            for ref in ("centre", "image"):
                test = tests[(tests["reference"] == ref) & (tests["metric"] == metric)]
                if len(test):
                    t = test.iloc[0]
                    verdict = ("yes" if t["better"] else "no") + (f" (p={t['p_holm']:.2g})" if t["testable"] else "")
                    row[f"beats {ref}"] = verdict if t["testable"] else "n/a"
        rows.append(row)
    return rows


def comparison_rows(significance: pd.DataFrame) -> list[dict]:
    """The paper's comparisons on the tested metrics: mean difference, Cohen's d, Holm p, flags."""
    primary = significance[(significance["test"] == "student") & significance["metric"].isin(family_metrics())]
    rows = []
    for comparison, part in primary.groupby("comparison", sort=False):
        label = comparison.replace("_", " ")
        if not part["testable"].astype(bool).any():   # one line: why it was not tested
            first = part.iloc[0]
            reason = "underpowered" if str(first["reason"]).startswith("underpowered") else "not testable"
            rows.append({"comparison": label, "metric": "(all)", "n1/n2": f"{first['n1']}/{first['n2']}",
                         "mean diff": "", "cohen d": "", "p (Holm)": "", "": reason})
            continue
        for row in part.itertuples():
            verdict = ("significant" if row.significant else "n.s.") if row.testable else "not testable"
            rows.append({"comparison": label, "metric": row.metric, "n1/n2": f"{row.n1}/{row.n2}",
                         "mean diff": _fmt(row.mean_diff), "cohen d": _fmt(row.effect_size, 2),
                         "p (Holm)": _fmt(row.p_holm, 2), "": verdict})
    return rows


def run_summary(results, method: str, k: float, *, markdown: bool = False, sanity_line: str = "",
                n_bootstrap: int = 1000, seed: int = 0, explain_lines=()) -> str:
    """The summary of one run (see the module docs); ``markdown`` for MLflow's description."""
    fmt = "github" if markdown else "simple"
    parts = []
    if results.examples is not None and not results.examples.empty:
        title = "Headline (mean [bootstrap 95% CI] per question, the map of the predicted answer)"
        parts.append(_section(title, headline_table(results.examples, method, k, n_bootstrap=n_bootstrap,
                                                    seed=seed), fmt, markdown))
    if "baselines" in results.tables:
        title = "Between floors and ceiling (normalised = (method - random) / (ceiling - random))"
        parts.append(_section(title, baselines_rows(results.tables["baselines"], results.tables.get("baseline_tests"),
                                                    method), fmt, markdown))
    if "significance" in results.tables and not results.tables["significance"].empty:
        title = "Correct vs wrong, by confidence (Student's t, Holm over the primary family)"
        parts.append(_section(title, comparison_rows(results.tables["significance"]), fmt, markdown))
    if explain_lines:
        title = "What the model used (question words, image vs question, faithfulness of the maps)"
        heading = f"**{title}**\n" if markdown else f"{title}:"
        parts.append(heading + "\n" + "\n".join(f"- {line}" for line in explain_lines))
    if sanity_line:
        parts.append(sanity_line)
    return "\n\n".join(p for p in parts if p)


def _section(title: str, rows: list[dict], fmt: str, markdown: bool) -> str:
    if not rows:
        return ""
    heading = f"**{title}**" if markdown else f"{title}:"
    return heading + "\n\n" * markdown + ("\n" if not markdown else "") + tabulate(rows, headers="keys", tablefmt=fmt)


def sweep_summary(ranking: pd.DataFrame | None, pairs: pd.DataFrame | None, comparison: pd.DataFrame,
                  *, markdown: bool = False) -> str:
    """The methods of a sweep, best first per (k, metric), with the paired test against the next."""
    fmt = "github" if markdown else "simple"
    if ranking is None or ranking.empty:
        rows = [{"run": r.get("run_name"), "status": r.get("status"),
                 **{m: _fmt(r.get(f"score/{m}")) for m in family_metrics()}} for r in comparison.to_dict("records")]
        return _section("Runs of this sweep", rows, fmt, markdown)
    rows = []
    for (k, metric), part in ranking.groupby(["k", "metric"], sort=False):
        part = part.sort_values("rank")
        order = list(part["method"])
        for i, entry in enumerate(part.itertuples()):
            versus = ""
            if i + 1 < len(order) and pairs is not None:
                a, b = sorted([entry.method, order[i + 1]])
                test = pairs[(pairs["k"] == k) & (pairs["metric"] == metric) & (pairs["test"] == "wilcoxon")
                             & (pairs["method_a"] == a) & (pairs["method_b"] == b)]
                if len(test) and np.isfinite(test["p_holm"].iloc[0]):
                    p = test["p_holm"].iloc[0]
                    versus = f"{'>' if p < 0.05 else '~'} {order[i + 1]} (p={p:.2g})"
            direction = "" if REGISTRY.get(metric) is None or REGISTRY[metric].higher_is_better else " (lower better)"
            rows.append({"k": k, "metric": metric + direction, "rank": entry.rank, "method": entry.method,
                         "mean [95% CI]": f"{_fmt(entry.mean)} [{_fmt(entry.ci_low)}, {_fmt(entry.ci_high)}]",
                         "vs next (Wilcoxon, Holm)": versus})
    return _section("Method ranking (mean over the rows every method scored)", rows, fmt, markdown)
