"""The two answers a run and a sweep end with, built from their tables: each with its number, CI and
verdict, saying where the metrics disagree."""

import pandas as pd

from vqa_interp.analysis.answers import answer_lines, sweep_answer_lines


def _tables(correct_higher_on=("iou",)):
    baselines = pd.DataFrame(
        [
            {
                "reference": "method",
                "metric": "rank_corr",
                "mean": 0.36,
                "ci_low": 0.34,
                "ci_high": 0.38,
                "n": 300,
                "protocol": "loo",
            }
        ]
    )
    normalised = pd.DataFrame([{"metric": "rank_corr", "normalised": 0.67, "ci_low": 0.62, "ci_high": 0.72, "n": 300}])
    tests = pd.DataFrame(
        [{"reference": "centre", "metric": "rank_corr", "mean_diff": 0.005, "p_holm": 1.0, "verdict": "no difference"}]
    )
    rows = [
        {
            "comparison": "correct_vs_wrong",
            "role": "primary",
            "metric": m,
            "testable": True,
            "significant": m in correct_higher_on,
            "mean_diff": 0.09 if m in correct_higher_on else -0.01,
            "ci_low": 0.05 if m in correct_higher_on else -0.05,
            "ci_high": 0.13 if m in correct_higher_on else 0.03,
            "p_holm": 0.006 if m in correct_higher_on else 0.98,
            "reason": "",
        }
        for m in ("rank_corr", "iou")
    ]
    return {
        "baselines": baselines,
        "normalised": normalised,
        "baseline_tests": tests,
        "significance": pd.DataFrame(rows),
    }


def test_a_run_answers_both_questions_with_numbers_and_says_where_metrics_disagree():
    where, when = answer_lines(_tables(), "saliency")
    assert where.startswith("Does saliency look where humans look?") and "0.36 [0.34, 0.38] over 300 questions" in where
    assert "67% [62%, 72%] of the way from chance" in where and "no different from a centre Gaussian" in where
    assert "rank correlation no difference (-0.01 [-0.05, 0.03], p=0.98)" in when
    assert "IoU higher for correct answers (0.09 [0.05, 0.13], p=0.006)" in when and "the metrics disagree" in when
    _, agreeing = answer_lines(_tables(correct_higher_on=("rank_corr", "iou")), "saliency")
    assert "the metrics disagree" not in agreeing


def test_a_sweep_answers_with_its_best_method_against_the_next_and_that_methods_own_run():
    ranking = pd.DataFrame(
        [
            {
                "k": 0.1,
                "metric": "rank_corr",
                "rank": r,
                "method": m,
                "mean": v,
                "ci_low": v - 0.02,
                "ci_high": v + 0.02,
                "n": 24,
            }
            for r, m, v in ((1, "saliency", 0.38), (2, "ggradcam", 0.15))
        ]
    )
    pairs = pd.DataFrame(
        [
            {
                "method_a": "ggradcam",
                "method_b": "saliency",
                "k": 0.1,
                "metric": "rank_corr",
                "test": "sign_flip",
                "p_holm": 0.002,
                "better": "saliency",
                "mean_diff": -0.23,
            }
        ]
    )
    entries = [{"method": "saliency", "k": 0.1, "run_id": "abc"}, {"method": "ggradcam", "k": 0.1, "run_id": "def"}]
    asked = []

    def tables_of(run_id):
        asked.append(run_id)
        return _tables()

    which, when = sweep_answer_lines([("", pairs, ranking, entries)], tables_of)
    assert which.startswith("Which method looks most like humans (k=0.1)? saliency: rank correlation 0.38")
    assert "significantly above ggradcam (0.15, p=0.002)" in which
    assert asked == ["abc"] and when.startswith("saliency: Does the model look where humans look")
