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
from vqa_interp.analysis.group_tests import TEST_NAMES
from vqa_interp.analysis.resampling import bootstrap_mean_ci
from vqa_interp.analysis.statistics import images_of
from vqa_interp.metrics.registry import family_metrics

VS_NEXT = "vs next (sign-flip over images, Holm)"


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def headline_table(
    examples: pd.DataFrame, method: str, k: float, *, n_bootstrap: int = 1000, seed: int = 0
) -> list[dict]:
    """One row: the method, k, n questions and each tested metric's mean [95% CI] over the examples
    (one row per question; the CI resamples images)."""
    rng = np.random.default_rng(seed)
    row = {"method": method, "k": k, "n": 0}
    counts = set()
    for metric in family_metrics():
        if metric not in examples:
            continue
        frame = examples[examples[metric].notna()]
        values = frame[metric].to_numpy(float)
        low, high = bootstrap_mean_ci(values, n_bootstrap, rng, clusters=images_of(frame))
        row[metric] = f"{_fmt(values.mean())} [{_fmt(low)}, {_fmt(high)}]" if len(values) else ""
        counts.add(len(values))
        if len(values) and len(values) != int(examples["question_id"].nunique()):
            row[metric] += f" n={len(values)}"
    # n: the questions averaged (a metric undefined on some says its own n)
    row["n"] = max(counts) if counts else 0
    return [row]


def baselines_rows(
    baselines: pd.DataFrame, tests: pd.DataFrame | None, method: str, normalised: pd.DataFrame | None = None
) -> list[dict]:
    """The floor/ceiling table: per tested metric the method's and each reference's mean over the
    same questions, the normalised score [95% CI] and the paired verdicts against centre and image."""
    means = baselines.pivot(index="metric", columns="reference", values="mean")
    counts = baselines.pivot(index="metric", columns="reference", values="n")
    norm = normalised.set_index("metric") if normalised is not None and len(normalised) else None
    fallback = normalised_scores(baselines)
    rows = []
    for metric in [m for m in family_metrics() if m in means.index]:
        row = {
            "metric": metric,
            "n": _fmt(counts.loc[metric].get("method")),
            method: _fmt(means.loc[metric].get("method")),
        }
        for ref in ("random", "centre", "image", "oracle", "human_ceiling"):
            if ref in means.columns:
                row[ref.replace("human_ceiling", "ceiling")] = _fmt(means.loc[metric, ref])
        if norm is not None and metric in norm.index:
            n = norm.loc[metric]
            row["normalised [95% CI]"] = (
                f"{_fmt(n['normalised'])} [{_fmt(n['ci_low'])}, {_fmt(n['ci_high'])}]"
                if np.isfinite(n["normalised"])
                else ""
            )
        else:
            row["normalised [95% CI]"] = _fmt(fallback.get(metric))
        if tests is not None:
            for ref in ("centre", "image"):
                test = tests[(tests["reference"] == ref) & (tests["metric"] == metric)]
                if len(test):
                    t = test.iloc[0]
                    words = t["verdict"] if "verdict" in t else ("better" if t["better"] else "no difference")
                    row[f"vs {ref}"] = f"{words} (p={t['p_holm']:.2g})" if t["testable"] else "not testable"
        rows.append(row)
    return rows


def comparison_rows(significance: pd.DataFrame) -> list[dict]:
    """The paper's comparisons on the tested metrics (the primary test, ``analysis.test``): mean
    difference [95% CI], Cohen's d, Holm p, verdict (the direction of the mean difference when
    significant)."""
    primary = significance[(significance["role"] == "primary") & significance["metric"].isin(family_metrics())]
    rows = []
    for comparison, part in primary.groupby("comparison", sort=False):
        label = comparison.replace("_", " ")
        if not part["testable"].astype(bool).any():  # one line: why it was not tested
            first = part.iloc[0]
            reason = "underpowered" if str(first["reason"]).startswith("underpowered") else "not testable"
            rows.append(
                {
                    "comparison": label,
                    "metric": "(all)",
                    "n1/n2": f"{first['n1']}/{first['n2']}",
                    "mean diff": "",
                    "cohen d": "",
                    "p (Holm)": "",
                    "verdict": reason,
                }
            )
            continue
        for row in part.itertuples():
            higher = row.group1 if row.mean_diff > 0 else row.group2
            verdict = (f"{higher} higher" if row.significant else "no difference") if row.testable else "not testable"
            rows.append(
                {
                    "comparison": label,
                    "metric": row.metric,
                    "n1/n2": f"{row.n1}/{row.n2}",
                    "mean diff": _fmt(row.mean_diff),
                    "cohen d": _fmt(row.effect_size, 2),
                    "p (Holm)": _fmt(row.p_holm, 2),
                    "verdict": verdict,
                }
            )
    return rows


def run_summary(
    results,
    method: str,
    k: float,
    *,
    markdown: bool = False,
    sanity_line: str = "",
    n_bootstrap: int = 1000,
    seed: int = 0,
    explain_lines=(),
) -> str:
    """The summary of one run (see the module docs); ``markdown`` for MLflow's description."""
    fmt = "github" if markdown else "simple"
    parts = []
    if results.examples is not None and not results.examples.empty:
        title = (
            "Headline (mean [95% CI, bootstrap over images] over questions, one map per question; "
            "against scoring.human: by default the mean of all annotators)"
        )
        parts.append(
            _section(
                title, headline_table(results.examples, method, k, n_bootstrap=n_bootstrap, seed=seed), fmt, markdown
            )
        )
    parts.append(_baselines_section(results, method, fmt, markdown))
    parts += _comparisons_sections(results, fmt, markdown)
    if explain_lines:
        title = "What the model used (question words, image vs question, faithfulness of the maps)"
        heading = f"**{title}**\n" if markdown else f"{title}:"
        parts.append(heading + "\n" + "\n".join(f"- {line}" for line in explain_lines))
    if sanity_line:
        parts.append(sanity_line)
    from vqa_interp.analysis.answers import answer_lines

    answers = answer_lines(results.tables, method)
    if answers:  # the terminal ends with the answer; the run's description (Markdown) opens with it
        if markdown:
            parts.insert(0, "**The answer**\n\n" + "\n\n".join(answers))
        else:
            parts.append("The answer:\n" + "\n".join(f"- {line}" for line in answers))
    return "\n\n".join(p for p in parts if p)


def _baselines_section(results, method: str, fmt: str, markdown: bool) -> str:
    """The method's means between the floors and the ceiling ("" without them)."""
    if "baselines" not in results.tables:
        return ""
    table = results.tables["baselines"]
    loo = "protocol" in table and (table["protocol"] == "loo").any()
    against = (
        "every map against the leave-one-out means, as the ceiling"
        if loo
        else "every map against the headline reference"
    )
    title = (
        f"Between floors and ceiling (means over the same questions, {against}; "
        f"normalised = (method - random) / (ceiling - random); vs centre/image: mean paired difference, "
        f"sign-flip test over images, Holm)"
    )
    rows = baselines_rows(table, results.tables.get("baseline_tests"), method, results.tables.get("normalised"))
    return _section(title, rows, fmt, markdown)


def _comparisons_sections(results, fmt: str, markdown: bool) -> list[str]:
    """The correct vs wrong comparisons and the verdicts that change when read per question or
    within answer types."""
    if "significance" not in results.tables or results.tables["significance"].empty:
        return []
    parts = []
    significance = results.tables["significance"]
    primary = significance.loc[significance["role"] == "primary", "test"]
    name = TEST_NAMES.get(primary.iloc[0], primary.iloc[0]) if len(primary) else "primary test"
    title = (
        f"Correct vs wrong, by confidence (one row per question; {name}: the difference of the group "
        "means, its direction and p from one procedure; Holm over the primary family)"
    )
    parts.append(_section(title, comparison_rows(results.tables["significance"]), fmt, markdown))
    adjusted = results.tables.get("adjusted_comparisons")
    if adjusted is not None and len(adjusted):
        from vqa_interp.analysis.adjusted import disagreements

        lines = disagreements(adjusted[adjusted["metric"].isin(family_metrics())])
        readings = {
            "per_question": "against its own floor and ceiling",
            "within_answer_type": "within its answer type",
        }
        said = " and ".join(readings[a] for a in readings if a in set(adjusted["adjustment"]))
        text = (
            "\n".join(f"- {line}" for line in lines)
            if lines
            else f"- Every raw verdict holds with each question read {said}."
        )
        heading = (
            "**Read per question and within answer types**"
            if markdown
            else "Read per question and within answer types:"
        )
        parts.append(f"{heading}\n{text}")
    return parts


def _section(title: str, rows: list[dict], fmt: str, markdown: bool) -> str:
    if not rows:
        return ""
    heading = f"**{title}**" if markdown else f"{title}:"
    return heading + "\n\n" * markdown + ("\n" if not markdown else "") + tabulate(rows, headers="keys", tablefmt=fmt)


def ranked_rows(ranking: pd.DataFrame, pairs: pd.DataFrame | None, item: str = "method") -> list[dict]:
    """Rows of a ranking (``item``: the ranked column, ``method`` or ``model``), best first per
    (k, metric), each with its mean [CI], n and the paired test against the next one: ``>`` / ``<``
    when Holm p < 0.05, following the sign of the paired difference, ``~`` otherwise."""
    from vqa_interp.analysis.comparisons import direction, pair_test

    rows = []
    for (k, metric), part in ranking.groupby(["k", "metric"], sort=False):
        part = part.sort_values("rank")
        order = list(part[item])
        for i, entry in enumerate(part.to_dict("records")):
            versus = ""
            test = pair_test(pairs, k, metric, entry[item], order[i + 1]) if i + 1 < len(order) else None
            if test is not None and np.isfinite(test["p_holm"]):
                better = test["better"] if isinstance(test["better"], str) else ""
                sign = ">" if better == entry[item] else "<" if better == order[i + 1] else "~"
                versus = f"{sign} {order[i + 1]} (p={test['p_holm']:.2g})"
            towards = "" if direction(metric) > 0 else " (lower better)"
            rows.append(
                {
                    "k": k,
                    "metric": metric + towards,
                    "rank": entry["rank"],
                    item: entry[item],
                    "mean [95% CI]": f"{_fmt(entry['mean'])} [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]",
                    "n": entry["n"],
                    "entry": entry,
                    VS_NEXT: versus,
                }
            )
    return rows


def model_summary(ranking: pd.DataFrame, pairs: pd.DataFrame, *, markdown: bool = False) -> str:
    """The models of a sweep compared on the same questions and the same target, for each method: best
    first per (method, k, metric), with the paired test against the next model; the comparison on
    the labelled answer (which every model explains) first, the one on each model's own prediction
    (confounded by accuracy) beside it, labelled as such."""
    fmt = "github" if markdown else "simple"
    sections = []
    targets = ranking["target"] if "target" in ranking else pd.Series("label", index=ranking.index)
    for target in [t for t in ("label", "prediction") if (targets == t).any()]:
        rows = []
        part_ranking = ranking[targets == target]
        part_pairs = pairs[pairs["target"] == target] if "target" in pairs else pairs
        for method, part in part_ranking.groupby("method", sort=False):
            tests = part_pairs[part_pairs["method"] == method].rename(
                columns={"model_a": "method_a", "model_b": "method_b"}
            )
            for row in ranked_rows(part, tests, item="model"):
                row.pop("entry")
                rows.append({"method": method, **row})
        what = (
            "the labelled answer's map for every model"
            if target == "label"
            else "each model's map of its own prediction: a model that answers better explains easier answers, "
            "so read it beside the label comparison, never alone"
        )
        title = (
            f"Models compared on the same questions, target = {target} ({what}; one value per question, the "
            "questions every model scored; mean paired difference, sign-flip test over images, 95% CI "
            "resampling images)"
        )
        sections.append(_section(title, rows, fmt, markdown))
    return "\n\n".join(sections)


def sweep_summary(
    ranking: pd.DataFrame | None,
    pairs: pd.DataFrame | None,
    comparison: pd.DataFrame,
    *,
    markdown: bool = False,
    robustness: dict | None = None,
    setting: str = "",
) -> str:
    """The methods of a sweep (of one ``setting``, when the sweep has several), best first per
    (k, metric), with the paired test against the next, and how robust that ranking is
    (:mod:`vqa_interp.analysis.robustness`)."""
    fmt = "github" if markdown else "simple"
    if ranking is None or ranking.empty:
        rows = [
            {
                "run": r.get("run_name"),
                "status": r.get("status"),
                **{m: _fmt(r.get(f"score/{m}")) for m in family_metrics()},
            }
            for r in comparison.to_dict("records")
        ]
        return _section("Runs of this sweep", rows, fmt, markdown)
    rows = []
    for row in ranked_rows(ranking, pairs):
        entry, versus = row.pop("entry"), row.pop(VS_NEXT)
        coverage = f"{entry['coverage']:.0%}" + (" LOW" if entry["low_coverage"] else "")
        rows.append({**row, "coverage": coverage, "P(first)": _fmt(entry["p_first"], 2), VS_NEXT: versus})
    title = (
        f"Method ranking{', ' + setting if setting else ''} (one value per question; mean over the questions "
        "every method scored, 95% CI resampling images; coverage = questions the method scored, LOW below 90%)"
    )
    text = _section(title, rows, fmt, markdown)
    if robustness:
        from vqa_interp.analysis.robustness import robustness_lines

        lines = robustness_lines(ranking, robustness.get("ranking_by_type"))
        agreement = robustness.get("metric_agreement")
        if agreement is not None and len(agreement):
            worst = agreement.sort_values("kendall_tau").iloc[0]
            lines.append(
                f"Least agreeing metrics: {worst['metric_a']} vs {worst['metric_b']} (k={worst['k']}, "
                f"Kendall's tau {worst['kendall_tau']:.2f}"
                + (f"; they disagree on {worst['disagreeing_pairs']}" if worst["disagreeing_pairs"] else "")
                + ")."
            )
        if lines:
            name = f"Robustness of the ranking{', ' + setting if setting else ''}"
            heading = f"**{name}**" if markdown else f"{name}:"
            text += "\n\n" + heading + "\n" + "\n".join(f"- {line}" for line in lines)
    return text
