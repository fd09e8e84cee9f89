"""Every registered metric: invariances (flip, transpose, positive scale), position-free ties, and
agreement with its slow reference."""

import numpy as np
import pytest

from vqa_interp.metrics import REGISTRY, ScoringOptions, metric_names, score
from vqa_interp.metrics.reference import score_pair_reference


def _cam_like(rng, size=32, cells=4):
    """A ReLU'd coarse map upsampled by repetition: large plateaus of exact zeros and ties."""
    coarse = np.maximum(rng.normal(0, 1, (cells, cells)), 0)
    return np.kron(coarse, np.ones((size // cells, size // cells)))


def _pairs(seed=0, size=32):
    rng = np.random.default_rng(seed)
    plain = rng.random((size, size))
    levels = np.round(rng.random((size, size)) * 3) / 3
    sparse = rng.random((size, size)) * (rng.random((size, size)) > 0.8)
    cam = _cam_like(rng, size)
    human = np.round(rng.random((size, size)) * 5)
    return [(a, h) for a in (plain, levels, sparse, cam) for h in (plain, human, cam)]


TRANSFORMS = {"flip_ud": np.flipud, "flip_lr": np.fliplr, "transpose": np.transpose, "rot90": np.rot90}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("tie_policy", ["fractional", "include"])
def test_every_metric_is_unchanged_when_both_maps_are_flipped_or_transposed(name, tie_policy):
    transform = TRANSFORMS[name]
    pairs = _pairs()
    a = np.stack([p[0] for p in pairs])
    h = np.stack([p[1] for p in pairs])
    before = score(a, h, size=32, tie_policy=tie_policy, metrics="all")
    after = score(
        np.stack([transform(x) for x in a]),
        np.stack([transform(x) for x in h]),
        size=32,
        tie_policy=tie_policy,
        metrics="all",
    )
    for metric in metric_names():
        np.testing.assert_allclose(after[metric], before[metric], rtol=1e-9, atol=1e-12, err_msg=metric)


@pytest.mark.parametrize("factor", [1e-7, 1e7, 3.0, 2.0**200])
def test_every_metric_is_unchanged_when_a_map_is_multiplied_by_a_positive_constant(factor):
    """2^200: finite float64 values beyond float32's range are scaled (exactly) before the float32
    resize, not turned into inf and called non-finite."""
    pairs = _pairs(seed=1)
    a = np.stack([p[0] for p in pairs])
    h = np.stack([p[1] for p in pairs])
    before = score(a, h, size=32, metrics="all")
    for scaled_a, scaled_h in ((a * factor, h), (a, h * factor)):
        after = score(scaled_a, scaled_h, size=32, metrics="all")
        assert (after["undefined"] == before["undefined"]).all()
        for metric in metric_names():
            np.testing.assert_allclose(after[metric], before[metric], rtol=1e-9, atol=1e-15, err_msg=metric)


def test_finite_values_above_float32s_range_are_scored_not_called_non_finite():
    rng = np.random.default_rng(2)
    a, h = rng.random((1, 40, 40)), rng.random((1, 40, 40))
    big = score(a * 1e39, h, size=32)
    assert big.loc[0, "undefined"] == "" and np.isfinite(big.loc[0, "rank_corr"])
    assert big.loc[0, "rank_corr"] == pytest.approx(score(a, h, size=32).loc[0, "rank_corr"], abs=1e-6)
    with_inf = a.copy()
    with_inf[0, 0, 0] = np.inf
    assert score(with_inf * 1e39, h, size=32).loc[0, "undefined"] == "attribution_non_finite"


def test_soft_dice_of_a_tiny_map_does_not_depend_on_its_scale():
    """Before: min-max divided by (max - min + 1e-6), so a Guided Grad-CAM map with a maximum of
    ~1e-6 peaked at ~0.5 and its soft Dice moved with its overall scale."""
    rng = np.random.default_rng(2)
    cam = _cam_like(rng) * 1e-6
    human = rng.random((32, 32))
    tiny = score(cam[None], human[None], size=32).loc[0, "dice"]
    unit = score((cam / cam.max())[None], human[None], size=32).loc[0, "dice"]
    assert tiny == pytest.approx(unit, rel=1e-12)


def test_a_human_blob_at_the_top_or_the_bottom_scores_the_same_against_a_map_of_ties():
    """Before (lowest-index tie-break), a plateau of zeros put the top rows in the attribution's
    region: a blob at the top scored IoU > 0 and the same blob at the bottom 0."""
    size = 32
    attribution = np.zeros((size, size))
    attribution[12:20, 12:20] = 1.0  # 64 px, fewer than k * size^2 = 205: the rest are tied zeros
    yy, xx = np.mgrid[:size, :size]
    top = np.exp(-((yy - 3) ** 2 + (xx - 16) ** 2) / 8.0)
    bottom = np.flipud(top)
    fractional = score(np.stack([attribution, attribution]), np.stack([top, bottom]), size=size)
    assert fractional.loc[0, "iou"] == pytest.approx(fractional.loc[1, "iou"], rel=1e-12)
    assert fractional.loc[0, "iou"] > 0
    index = score(np.stack([attribution, attribution]), np.stack([top, bottom]), size=size, tie_policy="index")
    assert index.loc[0, "iou"] > 0.05 and index.loc[1, "iou"] == 0  # the old, position-biased policy


def test_fractional_overlap_is_the_expected_overlap_of_random_tie_breaks():
    rng = np.random.default_rng(5)
    a = np.round(rng.random((8, 8)) * 2)
    h = np.round(rng.random((8, 8)) * 2)
    options = ScoringOptions(k=0.25, size=8)
    exact = score(a[None], h[None], k=0.25, size=8).loc[0, "disc_intersect"]
    n = options.n_region
    draws = []
    for _ in range(4000):
        ra = np.lexsort((rng.random(64), -a.ravel()))[:n]  # random tie-break, independent per map
        rh = np.lexsort((rng.random(64), -h.ravel()))[:n]
        draws.append(len(np.intersect1d(ra, rh)))
    assert exact == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(len(draws)))


@pytest.mark.parametrize("tie_policy", ["fractional", "include", "index"])
def test_every_metric_equals_its_reference(tie_policy):
    pairs = _pairs(seed=3, size=24)
    options = ScoringOptions(k=0.1, size=20, tie_policy=tie_policy)
    frame = score(
        np.stack([p[0] for p in pairs]),
        np.stack([p[1] for p in pairs]),
        k=0.1,
        size=20,
        tie_policy=tie_policy,
        metrics="all",
    )
    for i, (a, h) in enumerate(pairs):
        expected = score_pair_reference(a, h, options)
        for metric in metric_names():
            assert frame.loc[i, metric] == pytest.approx(expected[metric], rel=1e-9, abs=1e-12), (i, metric)


def test_registry_entries_declare_what_the_rest_of_the_tool_reads():
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.description and entry.needs
        assert entry.range[0] < entry.range[1]
        assert isinstance(entry.higher_is_better, bool)


def test_a_region_of_zero_pixels_or_of_every_pixel_is_refused():
    with pytest.raises(ValueError, match="top-k region of 1.6e-08 pixels"):
        score(np.ones((1, 4, 4)), np.ones((1, 4, 4)), k=1e-9, size=4)
    # a region covering every pixel leaves none outside it (AUC divided by zero before)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="leaving none outside"):
        score(rng.random((1, 4, 4)), rng.random((1, 4, 4)), size=2, k=0.9)
    assert len(score(rng.random((1, 4, 4)), rng.random((1, 4, 4)), size=2, k=0.6)) == 1  # 2 of 4 pixels


@pytest.mark.parametrize(
    "kind",
    [
        "random",
        "ties",
        "negative_zero",
        "float64",
        "float64_same_float32",
        "float64_huge",
        "constant",
        "float32_dtype",
        "one",
    ],
)
def test_the_linear_time_argsort_is_numpys_stable_argsort(kind):
    from vqa_interp.metrics.prepare import argsort_exact

    rng = np.random.default_rng(7)
    # float64 values a few ulps apart round to the same float32: the refinement must order them
    close = 1.0 + rng.integers(0, 40, 5000) * np.finfo(np.float64).eps * rng.choice([1, 1e3], 5000)
    values = {
        "random": rng.normal(0, 1, 5000).astype(np.float32),
        "ties": np.round(rng.normal(0, 2, 5000)).astype(np.float32),
        "negative_zero": np.array([0.0, -0.0, -1.5, 1e-30, -1e-30, 3.0, -0.0, np.inf, -np.inf], np.float32),
        "float64": rng.random(5000),
        "float64_same_float32": np.concatenate([close, -close, np.zeros(7)]),
        "float64_huge": rng.normal(0, 1, 5000) * 1e300,  # overflow to +-inf in float32
        "constant": np.full(300, 2.5),
        "float32_dtype": rng.normal(0, 1, 4096).astype(np.float32),
        "one": np.array([4.0]),
    }[kind]
    values = values if kind == "float32_dtype" else values.astype(np.float64)
    np.testing.assert_array_equal(argsort_exact(values), np.argsort(values, kind="stable"))
