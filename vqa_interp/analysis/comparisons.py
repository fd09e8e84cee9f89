"""Which method is closest to humans? Paired tests between the methods of a sweep, and their ranking.

Two runs are compared when they differ only in the method (same k, data, model and scoring setup).
The unit is the question: each run's table is reduced to one row per question (the map that stands
for the example, ``analysis.map_for_example``), and a metric is compared on the questions that
*every* method of the setting scored (defined, not NaN), so the ranking and the paired tests read
the same rows and cannot disagree: the ranking orders the means over those rows, and a pair's mean
difference is the difference of those means.

- One procedure gives a pair's direction and significance (:mod:`vqa_interp.analysis.verdicts`):
  the mean paired difference, its p from a sign-flip permutation test over images, its CI from a
  bootstrap over images; Holm adjusts the p over the pairs of methods, separately for each
  (k, metric). ``better`` names the better method (the sign of that mean, in the metric's own
  direction) when Holm p < 0.05, "" otherwise; a pair below ``min_questions`` questions or
  ``min_images`` images is not tested.
- Each method's coverage (questions it scored / its questions) is shown; a method defined on fewer
  than 90% of its questions is flagged: the shared rows then exclude exactly the questions it
  cannot score (a constant Grad-CAM map on the hard ones, say).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import scipy.stats

from vqa_interp.analysis.group_tests import holm
from vqa_interp.analysis.resampling import percentile_ci, resampled_means
from vqa_interp.analysis.statistics import example_rows
from vqa_interp.analysis.verdicts import PAIRED_FIELDS, PAIRED_TEST, paired_test
from vqa_interp.metrics.registry import REGISTRY, family_metrics

PAIR_COLUMNS = ["method_a", "method_b", "k", "metric", *PAIRED_FIELDS, "p_holm", "test", "testable", "reason", "better"]
RANKING_COLUMNS = [
    "k",
    "metric",
    "rank",
    "method",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "coverage",
    "low_coverage",
    "p_first",
    "rank_low",
    "rank_high",
    "p_above_next",
]
KEY = ["question_id"]
LOW_COVERAGE = 0.9
# params that do not change a per-example score: runs differing only in these are one setting
IGNORED_PREFIXES = (
    "method.",
    "analysis.",
    "confidence.",
    "tracking.",
    "attribution.batch_size",
    "paths.",
    "device",
    "plugins",
    "seed",
    "hydra",
)
CONTEXT = ("image_id", "answer_type", "question_type", "correct")
# params that differ between any two runs and never name one: where they live, who ran them
NOT_A_SETTING = (
    "paths.home",
    "paths.cache",
    "tracking.uri",
    "tracking.experiment",
    "hydra.job.num",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "run_name",
)


def setting_of(params: dict, also_ignore: tuple[str, ...] = ()) -> tuple:
    """The scoring setting of a run: every param that changes its per-example scores, except the
    method (and k, reported as its own column); ``also_ignore``: more prefixes (``model.``, to
    compare models)."""
    ignored = IGNORED_PREFIXES + tuple(also_ignore)
    return tuple(sorted((k, v) for k, v in params.items() if k != "k" and not k.startswith(ignored)))


def differing_keys(params: list[dict]) -> list[str]:
    """The keys (sorted) whose values differ between the dicts, places and stores left out."""
    return sorted(
        k for k in set().union(*params) if k not in NOT_A_SETTING and len({str(p.get(k)) for p in params}) > 1
    )


def setting_labels(settings: list[tuple]) -> dict[tuple, str]:
    """Each distinct setting (in first-seen order) -> the params that set it apart from the others
    (``model.name=embedded_vilt``), "" when there is only one."""
    distinct = list(dict.fromkeys(settings))
    if len(distinct) < 2:
        return {s: "" for s in distinct}
    as_dicts = [dict(s) for s in distinct]
    keys = differing_keys(as_dicts)
    # a group whose name differs is named by it alone (model=embedded_vilt, not its every key)
    named = {k.split(".")[0] for k in keys if k.endswith(".name") and k.count(".") == 1}
    keys = [k for k in keys if k.split(".")[0] not in named or k == f"{k.split('.')[0]}.name"]
    return {
        s: " ".join(f"{k.removesuffix('.name') if k.split('.')[0] in named else k}={d.get(k)}" for k in keys)
        for s, d in zip(distinct, as_dicts)
    }


def model_entries(entries: list[dict]) -> list[dict]:
    """The same runs, compared across models instead of methods: each run's ``method`` becomes its
    model, and its setting holds the method (so each method's models are paired on the same
    questions); [] when the runs have fewer than two models for any method."""
    out = [
        {**e, "method": e["model"], "setting": (e["model_setting"], e["method"]), "label": e["method"]}
        for e in entries
        if "model" in e
    ]
    groups: dict = {}
    for e in out:
        groups.setdefault((e["k"], e["setting"]), set()).add(e["method"])
    return out if any(len(models) > 1 for models in groups.values()) else []


def direction(metric: str) -> float:
    """+1 where higher is closer to humans, -1 where lower is."""
    return 1.0 if metric not in REGISTRY or REGISTRY[metric].higher_is_better else -1.0


def _by_setting(runs: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["k"], run["setting"]), []).append(run)
    return {key: distinct(members) for key, members in groups.items()}


def distinct(members: list[dict]) -> list[dict]:
    """The runs of one setting, each under its own name: runs sharing a ``method`` name (``ig`` at two
    ``method.n_steps``, one model at two ``preprocessing.size``) are named by every param that differs
    between them (``ig (method.n_steps=32)``), or by their run ID when none does, so none overwrites
    another."""
    names: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        names.setdefault(m["method"], []).append(i)
    out = list(members)
    for name, index in names.items():
        if len(index) < 2:
            continue
        params = [members[i].get("params", {}) for i in index]
        keys = differing_keys(params)
        for i, p in zip(index, params):
            detail = ", ".join(f"{k}={p.get(k)}" for k in keys) or f"run {members[i].get('run_id', i)}"[:12]
            out[i] = {**members[i], "method": f"{name} ({detail})"}
    return out


def question_rows(run: dict) -> pd.DataFrame:
    """One row per question of a run's per-example table (the map that stands for the example)."""
    table = run["table"]
    if "target" in table and "on_prediction" in table:
        table = example_rows(table, run.get("map_for_example", "prediction"))
    return table.drop_duplicates("question_id").set_index("question_id")


def wide_values(members: list[dict], metric: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """``[questions, methods]`` values of ``metric`` (NaN where a method has no row or no value) with
    the questions' context columns, and each method's coverage (defined / its questions)."""
    columns, coverage, context = {}, {}, None
    for m in members:
        rows = question_rows(m)
        if metric not in rows:
            continue
        columns[m["method"]] = rows[metric]
        coverage[m["method"]] = float(rows[metric].notna().mean()) if len(rows) else float("nan")
        present = rows[[c for c in CONTEXT if c in rows]]
        context = present if context is None else context.combine_first(present)
    if not columns:
        return pd.DataFrame(), {}
    wide = pd.DataFrame(columns)
    return wide.join(context, how="left"), coverage


def shared(wide: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """The rows every method scored."""
    return wide[wide[methods].notna().all(axis=1)]


def _clusters(frame: pd.DataFrame) -> np.ndarray:
    return frame["image_id"].to_numpy() if "image_id" in frame else frame.index.to_numpy()


def per_metric(runs: list[dict], metrics=None):
    """``(k, metric, wide, coverage, methods)`` for every setting of ``runs`` and metric (default:
    the tested family), ``wide`` as :func:`wide_values` gives it; a metric no run has is left out."""
    for (k, _), members in _by_setting(runs).items():
        for metric in list(metrics or family_metrics()):
            wide, coverage = wide_values(members, metric)
            if coverage:
                yield k, metric, wide, coverage, sorted(coverage)


def paired_method_tests(
    runs: list[dict],
    *,
    metrics=None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    min_questions: int = 2,
    min_images: int = 2,
) -> pd.DataFrame:
    """``runs``: dicts with ``method``, ``k``, ``setting``, ``table`` (a per-example table) and
    optionally ``map_for_example``. One row per (pair of methods in the same setting, metric), on the
    questions every method of the setting scored (:func:`vqa_interp.analysis.verdicts.paired_test`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, metric, wide, _, methods in per_metric(runs, metrics):
        common = shared(wide, methods)
        for a, b in combinations(methods, 2):
            diff = (common[a] - common[b]).to_numpy(float)
            rows.append(
                {
                    "method_a": a,
                    "method_b": b,
                    "k": k,
                    "metric": metric,
                    **paired_test(
                        diff,
                        _clusters(common),
                        n_bootstrap=n_bootstrap,
                        rng=rng,
                        min_questions=min_questions,
                        min_images=min_images,
                    ),
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in ("p_holm", "better")])
    table["p_holm"] = np.nan
    for _, index in table[table["p_value"].notna()].groupby(["k", "metric"]).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"].to_numpy(float))
    table["better"] = [better_of(r.method_a, r.method_b, r.metric, r.mean_diff, r.p_holm) for r in table.itertuples()]
    return table[PAIR_COLUMNS]


def better_of(a: str, b: str, metric: str, mean_diff: float, p_holm: float, alpha: float = 0.05) -> str:
    """The better method of a pair (``mean_diff`` = a - b) when Holm p < alpha, else ""."""
    if not np.isfinite(p_holm) or p_holm >= alpha or not np.isfinite(mean_diff) or mean_diff == 0:
        return ""
    return a if mean_diff * direction(metric) > 0 else b


def rank_rows(
    common: pd.DataFrame, methods: list[str], metric: str, n_bootstrap: int, rng: np.random.Generator
) -> list[dict]:
    """The methods ordered best first by their mean over ``common`` (rows every method scored), with
    bootstrap CIs (over images), the probability of ranking first, the rank's 95% interval and the
    probability of ranking above the next method, from the same resamples."""
    values = common[methods].to_numpy(float)
    sign = direction(metric)
    means = values.mean(axis=0) if len(values) else np.full(len(methods), np.nan)
    order = sorted(range(len(methods)), key=lambda i: (-sign * means[i], methods[i]))
    if len(values):
        resampled = resampled_means(values, _clusters(common), n_bootstrap, rng)  # [B, M]
        # rank 1 = best; ties share the better rank
        ranks = scipy.stats.rankdata(-sign * resampled, axis=1, method="min")
    rows = []
    for position, i in enumerate(order):
        row = {
            "metric": metric,
            "method": methods[i],
            "mean": float(means[i]),
            "n": len(values),
            "rank": position + 1,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p_first": np.nan,
            "rank_low": np.nan,
            "rank_high": np.nan,
            "p_above_next": np.nan,
        }
        if len(values):
            row["ci_low"], row["ci_high"] = percentile_ci(resampled[:, i])
            row["p_first"] = float((ranks[:, i] == 1).mean())
            row["rank_low"], row["rank_high"] = (float(x) for x in np.percentile(ranks[:, i], [2.5, 97.5]))
            if position + 1 < len(order):
                following = order[position + 1]
                row["p_above_next"] = float((sign * (resampled[:, i] - resampled[:, following]) > 0).mean())
        rows.append(row)
    return rows


def method_ranking(runs: list[dict], *, metrics=None, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per setting and metric, the methods ordered best first (in the metric's own direction), by
    their mean over the questions every method of the setting scored, with each method's coverage
    (``low_coverage`` below 90%) and the ranking's stability over a bootstrap of images."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, metric, wide, coverage, methods in per_metric(runs, metrics):
        for row in rank_rows(shared(wide, methods), methods, metric, n_bootstrap, rng):
            cover = coverage[row["method"]]
            rows.append({"k": k, **row, "coverage": cover, "low_coverage": bool(cover < LOW_COVERAGE)})
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


def ranking_figure(ranking: pd.DataFrame, pairs: pd.DataFrame, setting: str = ""):
    """One panel per (k, metric): methods best first with their mean and bootstrap 95% CI; a method
    the next one beats significantly (sign-flip test over images, Holm) is separated by a line."""
    from vqa_interp.analysis.figures import new_figure

    panels = list(ranking.groupby(["k", "metric"], sort=False))
    ncols = min(4, max(1, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(
        nrows, ncols, figsize=(3.6 * ncols, 0.45 * ranking["method"].nunique() * nrows + 1.6 * nrows), squeeze=False
    )
    for ax, ((k, metric), part) in zip(axes.ravel(), panels):
        part = part.sort_values("rank")
        y = np.arange(len(part))[::-1]
        ax.errorbar(
            part["mean"],
            y,
            xerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
            fmt="o",
            capsize=3,
            color="tab:red",
        )
        labels = [f"{m}{' (low coverage)' if low else ''}" for m, low in zip(part["method"], part["low_coverage"])]
        ax.set_yticks(y, labels, fontsize=8)
        for upper, lower, yy in zip(part["method"].iloc[:-1], part["method"].iloc[1:], y[:-1]):
            test = pair_test(pairs, k, metric, upper, lower)
            if test is not None and test["better"] == upper:
                ax.axhline(yy - 0.5, color="grey", lw=0.8, ls="--")
        towards = "higher" if direction(metric) > 0 else "lower"
        ax.set_title(f"{metric} (k={k}; {towards} is closer; n={int(part['n'].iloc[0])})", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("mean over the questions every method scored (95% CI)", fontsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"Method ranking{', ' + setting if setting else ''}, one value per question (dashed line: the method "
        "above is better: mean paired difference, sign-flip test over images, Holm p < 0.05)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def pair_test(
    pairs: pd.DataFrame | None, k, metric: str, a: str, b: str, setting: str | None = None
) -> pd.Series | None:
    """The paired test's row of methods ``a`` and ``b`` (either order, in ``setting`` where the pairs
    have several), or None."""
    if pairs is None or pairs.empty:
        return None
    if setting is not None and "setting" in pairs:
        pairs = pairs[pairs["setting"].fillna("") == setting]
    first, second = sorted([a, b])
    test = pairs[
        (pairs["k"] == k)
        & (pairs["metric"] == metric)
        & (pairs["test"] == PAIRED_TEST)
        & (pairs["method_a"] == first)
        & (pairs["method_b"] == second)
    ]
    return test.iloc[0] if len(test) else None
