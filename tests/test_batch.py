"""The torch scorer (device=cuda runs) equals the NumPy scorer: every metric, every tie policy,
several k from one sort, undefined maps; on the CPU here, and on a GPU where there is one."""

import numpy as np
import pandas as pd
import pytest
import torch

from vqa_interp.metrics import run_metrics, score
from vqa_interp.metrics.batch import score_batch
from vqa_interp.metrics.prepare import ScoringOptions, resize_maps

S = 48
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _maps(rng):
    attributions = np.concatenate(
        [
            rng.random((3, S, S)),  # no ties
            np.kron(rng.random((2, 6, 6)), np.ones((8, 8))),  # CAM-like plateaus
            np.round(rng.normal(0, 1, (2, S, S))),  # heavy ties
            np.where(rng.random((1, S, S)) < 0.8, 0.0, rng.random((1, S, S))),  # mostly zeros
            np.ones((1, S, S)),  # constant: undefined
            np.full((1, S, S), np.nan),  # non-finite: undefined
        ]
    )
    humans = np.concatenate([np.kron(rng.random((2, 4, 4)), np.ones((12, 12))), rng.random((1, S, S))])
    return attributions, humans


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tie_policy", ["fractional", "include", "index"])
@pytest.mark.parametrize("dice", ["soft", "hard"])
def test_torch_scorer_equals_numpy_scorer(device, tie_policy, dice):
    rng = np.random.default_rng(3)
    attributions, humans = _maps(rng)
    pair_human = rng.integers(0, len(humans), len(attributions))
    options = ScoringOptions(size=S, tie_policy=tie_policy, dice=dice)
    names = run_metrics()  # every metric with a batched version (emd: see the next test)
    got = score_batch(attributions, humans, pair_human, options, names, ks=[0.05, 0.1, 0.3], device=device)
    for k in (0.05, 0.1, 0.3):
        expected = score(attributions, humans[pair_human], k=k, size=S, tie_policy=tie_policy, dice=dice, metrics=names)
        frame = pd.DataFrame(got[k])
        assert frame["undefined"].tolist() == expected["undefined"].tolist()
        assert frame["undefined"].tolist()[-2:] == ["attribution_constant", "attribution_non_finite"]
        for m in names:
            np.testing.assert_allclose(
                frame[m].to_numpy(float), expected[m].to_numpy(float), atol=1e-6, rtol=0, err_msg=f"{m} at k={k}"
            )


def test_a_metric_without_a_batched_version_is_scored_by_its_numpy_version():
    from vqa_interp.metrics.registry import BATCHED

    assert "emd" not in BATCHED and set(run_metrics()) <= set(BATCHED)
    rng = np.random.default_rng(4)
    attributions, humans = rng.random((3, S, S)), rng.random((2, S, S))
    got = score_batch(attributions, humans, [0, 1, 0], ScoringOptions(size=S), ["rank_corr", "emd"])
    expected = score(attributions, humans[[0, 1, 0]], size=S, metrics=["rank_corr", "emd"])
    np.testing.assert_allclose(pd.DataFrame(got[0.1])["emd"], expected["emd"], atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_the_pipeline_scores_the_same_with_either_scorer(device):
    """What a run does per question: maps against every annotator, averaged, at several k."""
    from vqa_interp.metrics.humans import score_maps_against_humans

    rng = np.random.default_rng(5)
    maps = resize_maps(rng.random((3, 14, 14)).astype(np.float32), S)
    humans = resize_maps(rng.random((3, 20, 20)).astype(np.float32), S)
    options = ScoringOptions(size=S)
    names = run_metrics()
    on_numpy = score_maps_against_humans(maps, humans, options, names, (0.1, 0.2))
    on_torch = score_maps_against_humans(maps, humans, options, names, (0.1, 0.2), device=device)
    for k in (0.1, 0.2):
        for a, b in zip(on_numpy[k], on_torch[k]):
            assert a["undefined"] == b["undefined"] == ""
            for m in names:
                assert abs(a[m] - b[m]) < 1e-6, (m, k)


@pytest.mark.parametrize("change", ["flip", "transpose", "rotate", "scale_down", "scale_up"])
def test_torch_scores_do_not_change_when_both_maps_are_flipped_or_one_is_scaled(change):
    rng = np.random.default_rng(6)
    attributions, humans = _maps(rng)
    attributions, humans = attributions[:-2], humans  # the defined maps
    pair_human = rng.integers(0, len(humans), len(attributions))
    options, names = ScoringOptions(size=S), run_metrics()
    moved = {
        "flip": lambda m: m[..., ::-1, :],
        "transpose": lambda m: np.swapaxes(m, -1, -2),
        "rotate": lambda m: np.rot90(m, axes=(-2, -1)),
        "scale_down": lambda m: m,
        "scale_up": lambda m: m,
    }[change]
    scale = {"scale_down": 1e-7, "scale_up": 1e7}.get(change, 1.0)
    before = pd.DataFrame(score_batch(attributions, humans, pair_human, options, names)[0.1])
    after = pd.DataFrame(
        score_batch(
            np.ascontiguousarray(moved(attributions)) * scale,
            np.ascontiguousarray(moved(humans)),
            pair_human,
            options,
            names,
        )[0.1]
    )
    for m in names:
        np.testing.assert_allclose(after[m], before[m], rtol=1e-9, atol=1e-12, err_msg=m)
