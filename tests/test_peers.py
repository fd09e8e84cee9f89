"""Every saliency-benchmark and localisation metric against its peer implementation (pysaliency,
scikit-learn, POT, scipy), on maps with ties, zeros and constants.

Where we differ from a peer on purpose (constant maps are undefined here: NaN with a reason, where
pysaliency's CC gives NaN and its NSS divides by nothing), the test says so.
"""

import warnings

import numpy as np
import pytest
import scipy.stats

from vqa_interp.metrics import ScoringOptions, score
from vqa_interp.metrics.overlap import reference_region

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pysaliency imports pkg_resources (deprecated)
    pysaliency_metrics = pytest.importorskip("pysaliency.metrics")
sklearn_metrics = pytest.importorskip("sklearn.metrics")
ot = pytest.importorskip("ot")

SIZE = 32


def _minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def _maps():
    rng = np.random.default_rng(11)
    plain = rng.random((SIZE, SIZE))
    ties = np.round(rng.random((SIZE, SIZE)) * 3)  # 4 levels: heavy ties
    zeros = rng.random((SIZE, SIZE)) * (rng.random((SIZE, SIZE)) > 0.75)  # mostly exact zeros
    blob = np.exp(-((np.indices((SIZE, SIZE)) - 12) ** 2).sum(0) / 30.0)
    return {"plain": plain, "ties": ties, "zeros": zeros, "blob": blob}


PAIRS = [(a, h) for a in ("plain", "ties", "zeros", "blob") for h in ("plain", "ties", "blob", "zeros")]


@pytest.fixture(scope="module")
def scored():
    maps = _maps()
    a = np.stack([maps[x] for x, _ in PAIRS])
    h = np.stack([maps[y] for _, y in PAIRS])
    frame = score(a, h, size=SIZE, k=0.1)
    return maps, frame


@pytest.mark.parametrize("i", range(len(PAIRS)))
def test_cc_sim_kld_equal_pysaliency(scored, i):
    maps, frame = scored
    a, h = (_minmax(maps[n]) for n in PAIRS[i])
    assert frame.loc[i, "cc"] == pytest.approx(pysaliency_metrics.CC(a, h), abs=1e-6)
    assert frame.loc[i, "cc"] == pytest.approx(scipy.stats.pearsonr(a.ravel(), h.ravel()).statistic, abs=1e-6)
    assert frame.loc[i, "sim"] == pytest.approx(pysaliency_metrics.SIM(a, h), abs=1e-6)
    # pysaliency: MIT_KLDiv(saliency_map, gt): P is the second argument, the human map; on the raw maps
    raw_a, raw_h = (maps[n] for n in PAIRS[i])
    assert frame.loc[i, "kld"] == pytest.approx(pysaliency_metrics.MIT_KLDiv(raw_a, raw_h), abs=1e-6)


@pytest.mark.parametrize("i", range(len(PAIRS)))
def test_nss_and_auc_equal_pysaliency_and_scikit_learn(scored, i):
    maps, frame = scored
    a, h = maps[PAIRS[i][0]], maps[PAIRS[i][1]]
    options = ScoringOptions(size=SIZE, k=0.1)
    weights = reference_region(h, options.n_region, "fractional")
    if np.all((weights == 0) | (weights == 1)):  # a binary region: the peers' fixation form applies
        ys, xs = np.nonzero(weights.reshape(SIZE, SIZE))
        assert frame.loc[i, "nss"] == pytest.approx(pysaliency_metrics.NSS(a, xs, ys).mean(), abs=1e-6)
        assert frame.loc[i, "auc"] == pytest.approx(
            sklearn_metrics.roc_auc_score(weights.astype(int), a.ravel()), abs=1e-6
        )
    # fractional membership at ties: each pixel is w of a positive and 1 - w of a negative
    labels = np.r_[np.ones(SIZE * SIZE), np.zeros(SIZE * SIZE)]
    scores = np.r_[a.ravel(), a.ravel()]
    expected = sklearn_metrics.roc_auc_score(labels, scores, sample_weight=np.r_[weights, 1 - weights])
    assert frame.loc[i, "auc"] == pytest.approx(expected, abs=1e-6)
    z = (a - a.mean()) / a.std()
    assert frame.loc[i, "nss"] == pytest.approx(np.average(z.ravel(), weights=weights), abs=1e-6)


@pytest.mark.parametrize("i", [0, 5, 10, 15])
def test_emd_is_the_mit_benchmarks_downsampled_emd_and_equals_pot_on_that_grid(i):
    """Maps scored at 448 are downsampled by 32 (MIT EMD.m) to 14x14 blocks: POT on the block means."""
    maps = _maps()
    a, h = (np.kron(maps[n], np.ones((14, 14))) for n in PAIRS[i])  # 32 -> 448, exact blocks
    pooled = [_minmax(x).reshape(14, 32, 14, 32).mean(axis=(1, 3)) for x in (a, h)]
    cells = np.stack(np.mgrid[:14, :14], -1).reshape(-1, 2).astype(float)
    expected = ot.emd2(
        *((p / p.sum()).ravel() for p in pooled), ot.dist(cells, cells, metric="euclidean"), numItermax=1_000_000
    )
    got = score(a[None], h[None], size=448, metrics=["emd"]).loc[0, "emd"]
    assert got == pytest.approx(expected, abs=1e-6)
    assert score(a[None], a[None], size=448, metrics=["emd"]).loc[0, "emd"] == pytest.approx(0)


def test_score_defaults_to_the_runs_metric_set_without_emd():
    from vqa_interp.metrics import run_metrics

    maps = _maps()
    frame = score(maps["plain"][None], maps["blob"][None], size=SIZE)
    assert list(frame.columns) == [*run_metrics(), "undefined"] and "emd" not in frame
    assert "emd" in score(maps["plain"][None], maps["blob"][None], size=SIZE, metrics="all")


@pytest.mark.parametrize(
    "a_name,h_name",
    [("offset", "offset"), ("signed", "offset"), ("plain", "offset"), ("offset", "zeros"), ("signed", "signed")],
)
def test_kld_equals_pysaliency_on_raw_maps_not_prescaled(a_name, h_name):
    """KL reads the raw maps as pysaliency and MIT KLdiv.m do (sum-normalised; a negative minimum
    shifted away), not min-max scaled maps: a map with a positive floor keeps it."""
    rng = np.random.default_rng(5)
    maps = {**_maps(), "offset": 0.5 + 0.5 * rng.random((SIZE, SIZE)), "signed": rng.normal(0, 1, (SIZE, SIZE))}
    a, h = maps[a_name], maps[h_name]
    got = score(a[None], h[None], size=SIZE, metrics=["kld"]).loc[0, "kld"]
    assert got == pytest.approx(pysaliency_metrics.MIT_KLDiv(a, h), rel=1e-6, abs=1e-9)
    if a_name == "offset" and h_name != a_name:  # min-max scaling first would give another number
        scaled = pysaliency_metrics.MIT_KLDiv(_minmax(a), _minmax(h))
        assert abs(got - scaled) > 1e-3
    # invariant to a positive scale, and to flipping / transposing both maps
    assert score((3.5 * a)[None], h[None], size=SIZE, metrics=["kld"]).loc[0, "kld"] == pytest.approx(got, rel=1e-6)
    assert score(a.T[None, ::-1], h.T[None, ::-1], size=SIZE, metrics=["kld"]).loc[0, "kld"] == pytest.approx(
        got, rel=1e-6
    )


def test_pointing_game_and_mass_accuracy_by_hand():
    a = np.zeros((SIZE, SIZE))
    h = np.zeros((SIZE, SIZE))
    h[:4, :26] = 1.0  # 104 px; k = 0.1 -> 102 px region: ties at 1
    a[1, 1] = 5.0  # the maximum inside the region
    a[20, 20] = 1.0
    frame = score(a[None], h[None], size=SIZE, metrics=["pointing_game", "mass_accuracy"])
    assert frame.loc[0, "pointing_game"] == pytest.approx(102 / 104)  # inside, at a fractional weight
    assert frame.loc[0, "mass_accuracy"] == pytest.approx((1.0 * 102 / 104) / (1.0 + 0.2))
    a[1, 1] = 0
    a[30, 30] = 5.0  # the maximum outside
    assert score(a[None], h[None], size=SIZE, metrics=["pointing_game"]).loc[0, "pointing_game"] == 0


def test_constant_maps_are_undefined_not_a_peer_value():
    """pysaliency's CC of a constant map is NaN with a warning and its NSS divides by nothing;
    here every metric of such a pair is NaN and the reason is named."""
    rng = np.random.default_rng(0)
    frame = score(
        np.stack([np.full((SIZE, SIZE), 0.5), rng.random((SIZE, SIZE))]),
        np.stack([rng.random((SIZE, SIZE)), np.zeros((SIZE, SIZE))]),
        size=SIZE,
    )
    assert frame[["cc", "sim", "kld", "nss", "auc", "pointing_game", "mass_accuracy"]].isna().all().all()
    assert list(frame["undefined"]) == ["attribution_constant", "human_constant"]


def test_das14_protocol_pools_to_14x14_and_reports_rank_correlation():
    rng = np.random.default_rng(3)
    a, h = rng.random((56, 56)), rng.random((56, 56))
    frame = score(a[None], h[None], size=14, resample="area", metrics=["rank_corr"])
    pooled_a, pooled_h = (x.reshape(14, 4, 14, 4).mean(axis=(1, 3)) for x in (a, h))
    expected = scipy.stats.spearmanr(pooled_a.ravel(), pooled_h.ravel()).statistic
    assert frame.loc[0, "rank_corr"] == pytest.approx(expected, abs=1e-6)
