"""Verdicts: one procedure gives a comparison's direction and its significance, images are the unit
of resampling, models are compared on the same target, settings stay apart, small samples are not
tested, every dropped question is counted, and each model kind's confidence is its own probability.

The peers: scipy's ``permutation_test`` (the exact sign-flip distribution of the image sums) and
statsmodels' cluster-robust OLS (the CR1 standard error of the group difference)."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from vqa_interp.analysis.baselines import paired_baseline_tests
from vqa_interp.analysis.comparisons import method_ranking, model_entries, paired_method_tests
from vqa_interp.analysis.group_tests import compare_groups
from vqa_interp.analysis.statistics import analyse
from vqa_interp.analysis.verdicts import cluster_robust_slopes, paired_test, sign_flip_p


# ------------------------------------------------------------------ the peers
@pytest.mark.parametrize("case", ["ties_and_zeros", "one_image_constant", "all_positive"])
def test_the_sign_flip_p_is_scipys_exact_permutation_test_of_the_image_sums(case):
    rng = np.random.default_rng(1)
    images = np.repeat(np.arange(9), 3)
    diff = {
        "ties_and_zeros": np.round(rng.normal(0.05, 0.2, 27), 1),
        "one_image_constant": np.r_[np.zeros(3), rng.normal(0.1, 0.3, 24)],
        "all_positive": np.abs(rng.normal(0.2, 0.1, 27)),
    }[case]
    sums = np.bincount(images, weights=diff)
    expected = scipy.stats.permutation_test(
        (sums, np.zeros_like(sums)), lambda x, y: np.sum(x - y), permutation_type="samples", n_resamples=np.inf
    ).pvalue
    assert sign_flip_p(diff, images) == pytest.approx(min(1.0, expected), rel=1e-9)
    assert sign_flip_p(2.5 * diff, images) == pytest.approx(sign_flip_p(diff, images))  # scale-free


def test_the_group_difference_and_its_standard_error_are_statsmodels_cluster_robust_ols():
    from statsmodels.regression.linear_model import OLS

    rng = np.random.default_rng(3)
    images = np.repeat(np.arange(30), 4)
    y = np.round(rng.normal(size=120), 1)  # ties
    y[:8] = 0.0  # zeros; two images constant
    group = rng.random(120) < 0.4
    fit = OLS(y, np.stack([np.ones(120), group.astype(float)], 1)).fit(cov_type="cluster", cov_kwds={"groups": images})
    b, se = cluster_robust_slopes(y, group, images)
    assert b == pytest.approx(fit.params[1], rel=1e-10) and se == pytest.approx(fit.bse[1], rel=1e-10)
    strata = (np.arange(120) % 3 == 0).astype(float)[:, None]  # with an answer-type intercept
    fit = OLS(y, np.column_stack([np.ones(120), group.astype(float), strata])).fit(
        cov_type="cluster", cov_kwds={"groups": images}
    )
    b, se = cluster_robust_slopes(y, group, images, strata)
    assert b == pytest.approx(fit.params[1], rel=1e-10) and se == pytest.approx(fit.bse[1], rel=1e-10)


# ------------------------------------------------------------------ 1. direction and significance agree
def _pair_runs(a_values, b_values, images):
    def table(values):
        return pd.DataFrame(
            {
                "question_id": np.arange(len(values)),
                "image_id": images,
                "target": "label",
                "on_prediction": True,
                "rank_corr": values,
            }
        )

    return [
        {"method": "a", "k": 0.1, "setting": (), "table": table(a_values)},
        {"method": "b", "k": 0.1, "setting": (), "table": table(b_values)},
    ]


def test_a_verdict_follows_the_tested_mean_not_a_pseudo_median():
    """80% of questions slightly favour b, 20% strongly favour a: the mean favours a, the pseudo-median
    b (a Wilcoxon test is significant in b's favour). The verdict must read the mean, which is tested."""
    rng = np.random.default_rng(0)
    n = 200
    diff = np.where(np.arange(n) % 5 == 0, rng.normal(0.115, 0.02, n), rng.normal(-0.011, 0.004, n))
    assert diff.mean() > 0 and np.median(diff) < 0
    assert scipy.stats.wilcoxon(diff, alternative="less").pvalue < 0.01  # the pseudo-median favours b
    base = rng.normal(0.4, 0.05, n)
    pairs = paired_method_tests(
        _pair_runs(base + diff, base, np.arange(n) // 2),
        metrics=["rank_corr"],
        n_bootstrap=500,
        min_questions=10,
        min_images=5,
    )
    row = pairs.iloc[0]
    assert row["test"] == "sign_flip" and row["mean_diff"] == pytest.approx(diff.mean())
    assert row["p_value"] == pytest.approx(sign_flip_p(diff, np.arange(n) // 2), abs=0.02)
    if row["better"]:
        assert row["better"] == "a" and row["ci_low"] > 0  # never b: the tested mean favours a
    # and a method below the centre baseline on most questions is never "better" than it by a
    # verdict on another statistic: the verdict is the sign of the tested mean
    references = pd.DataFrame({"question_id": np.arange(n), "reference": "centre", "rank_corr": base - diff})
    examples = pd.DataFrame({"question_id": np.arange(n), "image_id": np.arange(n) // 2, "rank_corr": base})
    test = paired_baseline_tests(
        examples, references, against=("centre",), metrics=["rank_corr"], n_bootstrap=500, protocol="headline"
    ).iloc[0]
    assert test["mean_diff"] == pytest.approx(diff.mean())
    assert test["verdict"] in ("better", "no difference")
    assert (test["verdict"] == "better") == (test["p_holm"] < 0.05)


# ------------------------------------------------------------------ 2. images are clusters
def test_type_one_error_stays_nominal_when_an_images_questions_share_an_effect():
    """H0 true, 30 images x 4 questions, an effect shared by an image's questions: the paired test
    and the two-group test say "different" in at most 7% of replicates (a paired t on questions:
    about 30%)."""
    rng = np.random.default_rng(0)
    images = np.repeat(np.arange(30), 4)
    replicates, paired_hits, naive_hits, group_hits = 300, 0, 0, 0
    for _ in range(replicates):
        diff = rng.normal(0, 1, 30)[images] + rng.normal(0, 0.3, 120)
        paired_hits += paired_test(diff, images, n_bootstrap=10, n_permutations=999, rng=rng)["p_value"] < 0.05
        naive_hits += scipy.stats.ttest_1samp(diff, 0).pvalue < 0.05
        group = (rng.permutation(30) < 15)[images]  # the group of a question follows its image
        y = rng.normal(0, 1, 30)[images] + rng.normal(0, 0.3, 120)
        rows = compare_groups(
            y[group],
            y[~group],
            n_bootstrap=999,
            rng=rng,
            min_group=10,
            min_images=5,
            clusters_x=images[group],
            clusters_y=images[~group],
        )
        group_hits += rows[0]["test"] == "cluster_bootstrap" and rows[0]["p_value"] < 0.05
    assert naive_hits / replicates > 0.2  # the simulation is clustered
    assert paired_hits / replicates <= 0.07 and group_hits / replicates <= 0.07


# ------------------------------------------------------------------ 3. models on the same target
def _model_table(values_of, correct, n=60):
    rows = []
    for q in range(n):
        for target in ("label",) + (() if correct[q] else ("prediction",)):
            rows.append(
                {
                    "question_id": q,
                    "image_id": q // 2,
                    "target": target,
                    "on_prediction": target == "prediction" or bool(correct[q]),
                    "rank_corr": values_of(q, target),
                }
            )
    return pd.DataFrame(rows)


def test_models_are_compared_on_the_labelled_answer_by_default_and_the_prediction_beside_it():
    """The same map for every (question, answer): only accuracy differs (0.77 vs 0.57). On the label
    every model explains, the models cannot differ; on their own predictions they seem to."""
    from vqa_interp.tracking.sweep_tables import model_comparison

    rng = np.random.default_rng(2)
    label_maps = rng.normal(0.5, 0.05, 60)
    wrong_maps = rng.normal(0.1, 0.05, 60)  # a wrong answer's map sits lower

    def value(q, target):
        return label_maps[q] if target == "label" else wrong_maps[q]

    strong = np.arange(60) % 13 < 10  # 0.77 correct
    weak = strong & (np.arange(60) % 4 != 0)  # 0.57 correct, wrong where strong is too
    entries = [
        {
            "method": "saliency",
            "k": 0.1,
            "setting": (),
            "model": name,
            "model_setting": (),
            "table": _model_table(value, correct),
            "params": {"model.name": name},
        }
        for name, correct in (("strong", strong), ("weak", weak))
    ]
    pairs, ranking = model_comparison(entries, {"n_bootstrap": 200, "min_questions": 10, "min_images": 5})
    label = pairs[(pairs["target"] == "label") & (pairs["metric"] == "rank_corr")].iloc[0]
    prediction = pairs[(pairs["target"] == "prediction") & (pairs["metric"] == "rank_corr")].iloc[0]
    assert label["mean_diff"] == 0 and not label["testable"] and label["better"] == ""
    assert prediction["better"] == "strong" and prediction["p_holm"] < 0.05
    assert set(ranking["target"]) == {"label", "prediction"}
    from vqa_interp.analysis.summary import model_summary

    text = model_summary(ranking, pairs)
    assert text.index("target = label") < text.index("target = prediction")
    assert "never alone" in text


# ------------------------------------------------------------------ 4. settings stay apart
def test_runs_differing_in_an_ignored_key_keep_their_own_names():
    tables = {
        size: _model_table(lambda q, t, s=size: (0.3 if s == 112 else 0.5) + 0.01 * (q % 5), np.ones(60, bool))
        for size in (112, 448)
    }
    entries = [
        {
            "method": "saliency",
            "k": 0.1,
            "setting": (),
            "model": "embedded",
            "model_setting": (),
            "table": tables[size],
            "params": {"model.name": "embedded", "preprocessing.size": str(size)},
        }
        for size in (112, 448)
    ]
    models = model_entries(entries + [{**entries[0], "model": "other", "params": {"model.name": "other"}}])
    ranking = method_ranking(models, metrics=["rank_corr"], n_bootstrap=50)
    assert {"embedded (preprocessing.size=112)", "embedded (preprocessing.size=448)", "other"} <= set(ranking["method"])
    by_name = ranking.set_index("method")["mean"]
    assert by_name["embedded (preprocessing.size=448)"] - by_name["embedded (preprocessing.size=112)"] == pytest.approx(
        0.2
    )
    methods = [
        {"method": "ig", "k": 0.1, "setting": (), "table": tables[112], "params": {"method.n_steps": "32"}},
        {"method": "ig", "k": 0.1, "setting": (), "table": tables[448], "params": {"method.n_steps": "64"}},
    ]
    assert set(
        paired_method_tests(methods, metrics=["rank_corr"], n_bootstrap=50)[["method_a", "method_b"]].iloc[0]
    ) == {"ig (method.n_steps=32)", "ig (method.n_steps=64)"}


def test_a_sweep_over_models_ranks_methods_within_each_model_named_by_it():
    from vqa_interp.analysis.comparisons import setting_labels

    cnn = (("data.limit", "5"), ("model.name", "embedded"), ("model.kind", "kazemi"), ("model.input.size", "64"))
    vilt = (("data.limit", "5"), ("model.name", "embedded_vilt"), ("model.kind", "vilt"), ("model.input.size", "112"))
    assert setting_labels([cnn, vilt, cnn]) == {cnn: "model=embedded", vilt: "model=embedded_vilt"}
    assert setting_labels([cnn, cnn]) == {cnn: ""}


# ------------------------------------------------------------------ 5. small samples are not tested
def test_nine_questions_of_three_images_get_no_verdict():
    n = 9
    images = np.arange(n) // 3
    base = np.linspace(0.3, 0.5, n)
    examples = pd.DataFrame({"question_id": np.arange(n), "image_id": images, "rank_corr": base + 0.3})
    references = pd.DataFrame({"question_id": np.arange(n), "reference": "centre", "rank_corr": base})
    test = paired_baseline_tests(
        examples,
        references,
        against=("centre",),
        metrics=["rank_corr"],
        n_bootstrap=200,
        protocol="headline",
        min_questions=10,
        min_images=5,
    ).iloc[0]
    assert test["verdict"] == "not testable" and "underpowered: 9 questions of 3 images" in test["reason"]
    pairs = paired_method_tests(
        _pair_runs(base + 0.3, base, images), metrics=["rank_corr"], n_bootstrap=50, min_questions=6, min_images=5
    )
    assert not pairs.iloc[0]["testable"] and pairs.iloc[0]["better"] == ""
    # even with the minimums lowered, 3 images cannot reach p < 0.25
    assert paired_test(np.full(n, 0.3), images)["p_value"] == pytest.approx(0.25)


# ------------------------------------------------------------------ 7. drops are counted, n is what is averaged
def test_an_equivalent_spelling_of_the_answer_stands_for_the_prediction_and_no_question_drops_silently():
    from vqa_interp.pipeline.targets import plan_targets

    predictions = pd.DataFrame(
        [
            {
                "question_id": 1,
                "row": 0,
                "answer": "2",
                "prediction": "2",
                "correct": True,
                "label_index": 0,
                "prediction_index": 1,
                "label_answerable": True,
            },  # the vocabulary holds "2" and "two"
            {
                "question_id": 2,
                "row": 1,
                "answer": "red",
                "prediction": "red",
                "correct": True,
                "label_index": 2,
                "prediction_index": 2,
                "label_answerable": True,
            },
        ]
    )
    targets, skipped = plan_targets(predictions, "paper")
    assert targets["on_prediction"].all() and not skipped
    table = targets.assign(method="saliency", rank_corr=[0.4, 0.6], confidence=0.9, correct=True, image_id=[1, 2])
    results = analyse(table, low=0.25, high=0.75, n_bootstrap=10, metrics=["rank_corr"])
    assert len(results.examples) == 2 and "count/skipped_no_map_for_example" not in results.metrics
    lost = analyse(
        table.assign(on_prediction=[False, True]), low=0.25, high=0.75, n_bootstrap=10, metrics=["rank_corr"]
    )
    assert lost.metrics["count/skipped_no_map_for_example"] == 1


# ------------------------------------------------------------------ 8. confidence is the model's own probability
def test_a_bce_trained_vilt_head_gets_sigmoid_confidences_and_says_so(tmp_path):
    from test_vilt import tiny_vilt

    from vqa_interp.data.images import InputGeometry
    from vqa_interp.models.vilt import load_folder

    folder = tmp_path / "vilt"
    tiny_vilt(seed=10).save(folder, config={})  # trained here: cross-entropy over the answers
    assert load_folder(folder, InputGeometry(64, 1.0), max_tokens=12).confidence == "softmax"
    (folder / "vqa_interp.json").unlink()  # any other folder: dandelin's BCE head
    model = load_folder(folder, InputGeometry(64, 1.0), max_tokens=12).eval()
    assert model.confidence == "sigmoid" and "binary cross-entropy" in model.tags()["confidence"]
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    assert torch.allclose(model.answer_probabilities(logits), torch.sigmoid(logits))
    pixels = torch.zeros(1, 3, 64, 64)
    answers, confidence = model.predict_answers(pixels, model.encode(["what color is the cube?"]))
    with torch.no_grad():
        expected = torch.sigmoid(model.forward(pixels, model.encode(["what color is the cube?"]))).max()
    assert float(confidence[0]) == pytest.approx(float(expected))
