"""Floors, the human ceiling, paired tests against baselines and between methods, sanity checks."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from vqa_interp.analysis.baselines import baselines_table, normalised_scores, paired_baseline_tests
from vqa_interp.analysis.comparisons import method_ranking, paired_method_tests
from vqa_interp.attribution.baselines import BaselineContext, baseline_map
from vqa_interp.attribution.sanity import sanity_checks, ssim, verdict
from vqa_interp.data import Example
from vqa_interp.metrics import ScoringOptions
from vqa_interp.metrics.humans import human_ceiling


def _context(question_id=1, size=32, seed=0, image=None):
    example = Example(question_id, 1, "q?", ["a"] * 10, "a", "other", Path("x.jpg"), [])
    image = np.zeros((size, size, 3), np.uint8) if image is None else image
    return BaselineContext(example, image, None, None, seed)


def test_baseline_maps():
    a, b = baseline_map("random", _context(1)), baseline_map("random", _context(2))
    assert a.shape == (32, 32) and not np.array_equal(a, b)
    assert np.array_equal(a, baseline_map("random", _context(1)))  # seeded per question
    centre = baseline_map("centre", _context())
    assert np.unravel_index(centre.argmax(), centre.shape) in {(15, 15), (15, 16), (16, 15), (16, 16)}
    np.testing.assert_allclose(centre, centre.T)
    np.testing.assert_allclose(centre, centre[::-1])
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 255  # one vertical edge
    edges = baseline_map("image", _context(image=image))
    assert edges[:, 14:18].mean() > 10 * edges[:, :8].mean()
    assert baseline_map("oracle", _context()) is None  # no dataset, no mask


def test_human_ceiling_is_leave_one_annotator_out():
    options = ScoringOptions(size=16)
    rng = np.random.default_rng(0)
    assert human_ceiling(rng.random((1, 16, 16)), options) is None
    same = np.repeat(rng.random((1, 16, 16)), 3, axis=0)
    assert human_ceiling(same, options)["rank_corr"] == pytest.approx(1.0)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    expected = np.mean(
        [
            scipy.stats.spearmanr(maps[i].ravel(), np.delete(maps, i, 0).mean(0).astype(np.float32).ravel()).statistic
            for i in range(3)
        ]
    )
    assert human_ceiling(maps, options)["rank_corr"] == pytest.approx(expected, abs=1e-9)


def _examples_and_references(n=60, seed=0):
    rng = np.random.default_rng(seed)
    examples = pd.DataFrame(
        {
            "question_id": np.arange(n),
            "rank_corr": rng.normal(0.4, 0.1, n),
            "iou": rng.normal(0.2, 0.05, n),
            "intersect": rng.normal(1e-5, 1e-6, n),
            "dice": rng.normal(0.3, 0.1, n),
        }
    )
    refs = []
    for name, shift in (("random", -0.4), ("centre", -0.1), ("image", -0.2), ("human_ceiling", 0.2)):
        frame = examples.copy()
        for metric in ("rank_corr", "iou", "dice"):
            frame[metric] = examples[metric] + shift * (0.5 if metric == "iou" else 1) + rng.normal(0, 0.05, n)
        refs.append(frame.assign(reference=name))
    return examples, pd.concat(refs, ignore_index=True)


def test_baselines_table_normalised_scores_and_paired_tests_against_scipy():
    examples, refs = _examples_and_references()
    table = baselines_table(examples, refs, n_bootstrap=200)
    assert set(table["reference"]) == {"method", "random", "centre", "image", "human_ceiling"}
    assert list(table.columns) == ["reference", "metric", "mean", "ci_low", "ci_high", "n", "protocol"]
    means = table.pivot(index="metric", columns="reference", values="mean")
    norm = normalised_scores(table)
    for metric in ("rank_corr", "iou"):
        row = means.loc[metric]
        assert norm[metric] == pytest.approx((row["method"] - row["random"]) / (row["human_ceiling"] - row["random"]))
    tests = paired_baseline_tests(examples, refs, n_bootstrap=100)
    centre = refs[refs["reference"] == "centre"].set_index("question_id")
    row = tests[(tests["reference"] == "centre") & (tests["metric"] == "rank_corr")].iloc[0]
    diff = examples.set_index("question_id")["rank_corr"] - centre["rank_corr"]
    assert row["mean_diff"] == pytest.approx(diff.mean()) and row["test"] == "sign_flip"
    assert row["p_value"] == pytest.approx(1 / 4001)  # no flip of 60 questions (no images: each its own) reaches it
    assert row["better"] and row["verdict"] == "better"  # the method is 0.1 above the centre baseline


def _per_example(method_shift, n=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n):
        wrong = q % 3 == 0
        for target in ("label", "prediction") if wrong else ("label",):
            rows.append(
                {
                    "question_id": q,
                    "image_id": q // 2,
                    "target": target,
                    "on_prediction": target == "prediction" or not wrong,
                    "rank_corr": rng.normal(0.3 + method_shift, 0.1),
                    "iou": rng.normal(0.2, 0.05),
                    "intersect": 1e-5,
                    "dice": rng.normal(0.3, 0.1),
                }
            )
    return pd.DataFrame(rows)


def test_method_pairs_are_the_sign_flip_test_on_one_row_per_question_every_method_scored():
    from vqa_interp.analysis.verdicts import sign_flip_p

    a, b = _per_example(0.1, seed=1), _per_example(0.0, seed=2)
    c = _per_example(0.0, seed=3).iloc[5:]  # a method with fewer questions
    runs = [
        {"method": "a", "k": 0.1, "setting": (), "table": a},
        {"method": "b", "k": 0.1, "setting": (), "table": b},
        {"method": "c", "k": 0.1, "setting": (), "table": c},
        {"method": "a", "k": 0.2, "setting": (), "table": a},
    ]  # alone in its setting: no pair
    pairs = paired_method_tests(runs, n_bootstrap=100)
    assert set(pairs["k"]) == {0.1} and len(pairs[pairs["test"] == "sign_flip"]) == 3 * 4 == len(pairs)
    # one row per question (the map of the predicted answer), on the questions all three scored
    stands = {name: t[t["on_prediction"]].set_index("question_id") for name, t in (("a", a), ("b", b), ("c", c))}
    common = sorted(set(stands["a"].index) & set(stands["b"].index) & set(stands["c"].index))
    assert len(common) == 37  # q3 keeps its prediction row, the one that stands for it
    for x, y in (("a", "b"), ("a", "c")):
        for metric in ("rank_corr", "iou"):
            row = pairs[(pairs.method_a == x) & (pairs.method_b == y) & (pairs.metric == metric)].iloc[0]
            assert row["n"] == len(common) and row["n_images"] == len({q // 2 for q in common})
            vx, vy = stands[x].loc[common, metric], stands[y].loc[common, metric]
            assert row["mean_diff"] == pytest.approx((vx - vy).mean())
            images = stands[x].loc[common, "image_id"].to_numpy()
            assert row["p_value"] == pytest.approx(
                sign_flip_p((vx - vy).to_numpy(), images, rng=np.random.default_rng(123)), abs=0.03
            )
    chosen = pairs[pairs.metric == "rank_corr"]
    from vqa_interp.analysis.group_tests import holm

    assert chosen["p_holm"].to_numpy() == pytest.approx(holm(chosen["p_value"].to_numpy()))
    ranking = method_ranking(runs, n_bootstrap=100)
    top = ranking[(ranking.k == 0.1) & (ranking.metric == "rank_corr")].sort_values("rank")
    assert top["method"].iloc[0] == "a" and set(top["n"]) == {37}


def test_ssim_equals_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    for x, y in ((a, b), (a, a), (a, np.zeros_like(a)), (np.round(a), b)):
        expected = metrics.structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        assert ssim(x, y) == pytest.approx(expected, abs=1e-10)


def test_saliency_maps_decorrelate_under_cascading_randomisation():
    from test_attribution import tiny_vqa

    model = tiny_vqa(seed=3)
    torch.manual_seed(0)
    images, q, q_len = torch.randn(6, 3, 32, 32), torch.randint(1, 20, (6, 5)), torch.tensor([5, 3, 4, 5, 2, 5])
    table = sanity_checks(model, "saliency", {"abs": True}, images, (q, q_len), batch_size=3)
    assert set(table["mode"]) == {"cascading", "independent"}
    assert list(table.columns) == ["mode", "step", "block", "method", "similarity", "mean", "std", "n"]
    cascade = table[(table["mode"] == "cascading") & (table["similarity"] == "spearman_abs")].sort_values("step")
    assert cascade["mean"].iloc[0] == pytest.approx(1.0)
    assert cascade["mean"].iloc[-1] < 0.5 and verdict(table)[0]
    assert list(cascade["block"])[:4] == ["none", "classifier", "attention", "text"]


def test_random_baseline_is_at_chance_on_the_embedded_default(embedded_root, home):
    """Over the 300 questions of the embedded default: random IoU ~ k / (2 - k), rank corr ~ 0."""
    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.data import InputGeometry, dataset_for
    from vqa_interp.pipeline.references import score_references
    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config", overrides=[f"paths.home={home}"]))
    dataset = dataset_for(settings.data, settings.home)
    examples = dataset.examples().examples
    k = 0.1
    refs = score_references(
        dataset, examples, InputGeometry(64, 1.0), ScoringOptions(k=k, size=64), human_mode="mean", annotator=1, seed=0
    )
    random = refs[refs["reference"] == "random"]
    assert len(random) == len(examples) == 300
    assert random["iou"].mean() == pytest.approx(k / (2 - k), abs=0.01)
    assert random["rank_corr"].mean() == pytest.approx(0.0, abs=0.02)
    ceiling = refs[refs["reference"] == "human_ceiling"]
    assert len(ceiling) == 300 and ceiling["iou"].mean() > 0.4
