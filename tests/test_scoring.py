"""The fast scorer against the slow reference and against hand-checked values."""

import numpy as np
import pytest
import scipy.stats

from vqa_interp.metrics.reference import score_pair_reference
from vqa_interp.scoring import METRICS, ScoringOptions, average_ranks, score, top_k_region


def _maps(rng, shape):
    plain = rng.random(shape)
    ties = np.round(rng.random(shape) * 4) / 4  # heavy ties (5 levels)
    zeros = rng.random(shape) * (rng.random(shape) > 0.7)  # mostly zeros, like Guided Grad-CAM
    blob = np.exp(-((np.indices(shape) - np.array(shape)[:, None, None] / 2) ** 2).sum(0) / 40.0)
    return [plain, ties, zeros, blob]


@pytest.mark.parametrize("tie_policy", ["fractional", "include", "index"])
@pytest.mark.parametrize("dice", ["soft", "hard"])
def test_fast_scorer_equals_reference_on_ties_zeros_and_blobs(tie_policy, dice):
    rng = np.random.default_rng(1)
    attributions = _maps(rng, (20, 20))
    humans = _maps(rng, (24, 16))  # another size: resized inside
    a = np.stack([x for x in attributions for _ in humans])
    h = np.stack([y for _ in attributions for y in humans])
    options = ScoringOptions(k=0.1, size=32, tie_policy=tie_policy, dice=dice)
    fast = score(a, h, k=0.1, size=32, tie_policy=tie_policy, dice=dice, metrics="all")
    for i in range(len(a)):
        expected = score_pair_reference(a[i], h[i], options)
        for metric in METRICS:
            assert fast.loc[i, metric] == pytest.approx(expected[metric], rel=1e-9, abs=1e-12), (i, metric)


def test_constant_and_nan_maps_give_nan_with_a_reason_not_a_crash():
    rng = np.random.default_rng(0)
    good = rng.random((8, 8))
    constant = np.full((8, 8), 0.3)
    zeros = np.zeros((8, 8))
    with_nan = good.copy()
    with_nan[2, 3] = np.nan
    frame = score(
        np.stack([constant, good, zeros, with_nan]), np.stack([good, constant, good, good]), size=8, metrics="all"
    )
    assert frame[list(METRICS)].isna().all().all()
    assert list(frame["undefined"]) == [
        "attribution_constant",
        "human_constant",
        "attribution_constant",
        "attribution_non_finite",
    ]
    reference = score_pair_reference(constant, good, ScoringOptions(size=8))
    assert np.isnan(reference["rank_corr"]) and reference["undefined"] == "attribution_constant"


def test_rank_corr_is_scipy_spearman_with_average_ranks():
    rng = np.random.default_rng(3)
    a = np.round(rng.random((16, 16)) * 3)
    h = rng.random((16, 16))
    frame = score(a[None], h[None], size=16)
    assert frame.loc[0, "rank_corr"] == pytest.approx(scipy.stats.spearmanr(a.ravel(), h.ravel()).statistic, abs=1e-12)
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert np.allclose(average_ranks(a.ravel()), scipy.stats.rankdata(a.ravel()))


def test_top_k_tie_policies_by_hand():
    values = np.array([5.0, 1.0, 3.0, 3.0, 3.0, 0.0])
    # 3 highest: 5, then two of the three 3s share the two free slots: 2/3 each
    assert top_k_region(values, 3, "fractional").tolist() == pytest.approx([1, 0, 2 / 3, 2 / 3, 2 / 3, 0])
    # index (the old policy): lowest indices first
    assert np.flatnonzero(top_k_region(values, 3, "index")).tolist() == [0, 2, 3]
    # include: every value >= the 3rd largest (3)
    assert np.flatnonzero(top_k_region(values, 3, "include")).tolist() == [0, 2, 3, 4]


def test_region_metrics_by_hand_on_a_4x4_map():
    a = np.zeros((4, 4))
    h = np.zeros((4, 4))
    a[0, :2] = [2.0, 1.5]  # attribution top-2: (0,0), (0,1)
    h[0, 1], h[1, 1] = 2.0, 1.0  # human top-2: (0,1), (1,1)
    a += np.arange(16).reshape(4, 4) * 1e-3
    h += np.arange(16).reshape(4, 4) * 1e-4
    frame = score(a[None], h[None], k=2 / 16, size=4, dice="hard")
    row = frame.iloc[0]
    assert row["disc_intersect"] == 1
    assert row["iou"] == pytest.approx(1 / 3)
    assert row["precision"] == row["recall"] == row["f1"] == row["dice"] == pytest.approx(0.5)


def test_intersect_has_the_papers_magnitude_for_uniform_like_maps():
    rng = np.random.default_rng(0)
    a = 1 + 1e-3 * rng.random((1, 448, 448))
    h = 1 + 1e-3 * rng.random((1, 448, 448))
    frame = score(a, h, size=448, steps=["unit_sum"])
    assert frame.loc[0, "intersect"] == pytest.approx(1 / 448**2, rel=1e-3)


def test_bad_arguments_name_the_option():
    with pytest.raises(ValueError, match="k=1.5"):
        score(np.ones((1, 4, 4)), np.ones((1, 4, 4)), k=1.5)
    with pytest.raises(ValueError, match="scoring.tie_policy"):
        score(np.ones((1, 4, 4)), np.ones((1, 4, 4)), tie_policy="random")
    with pytest.raises(ValueError, match="same B"):
        score(np.ones((2, 4, 4)), np.ones((1, 4, 4)))


@pytest.mark.parametrize(
    "tie_policy,dice", [("fractional", "soft"), ("include", "soft"), ("index", "soft"), ("fractional", "hard")]
)
def test_scoring_several_k_from_shared_maps_equals_scoring_each_k_afresh(tie_policy, dice):
    """What a k sweep's first job does: one human map shared by several maps, every map sorted
    once for all k, the human's region made once per k and each pair's overlap once per k; the
    order of k and of the maps must not matter. Soft Dice reads no region (computed once for all
    k), hard Dice does."""
    import gc
    import weakref

    from vqa_interp.metrics import REGISTRY, prepare_map, run_metrics
    from vqa_interp.metrics.engine import score_at_ks

    rng = np.random.default_rng(7)
    maps = _maps(rng, (24, 24))
    human = prepare_map(np.round(rng.random((24, 24)) * 6), ScoringOptions(size=24, tie_policy=tie_policy, dice=dice))
    assert REGISTRY["dice"].depends_on_k(human.options) == (dice == "hard") and REGISTRY["dice"].depends_on_k()
    names = run_metrics()
    ks = (0.3, 0.05, 0.1, 0.3)
    for values in maps + maps[::-1]:  # the human (and its views) reused, in both orders
        got = score_at_ks(prepare_map(values, human.options), [human], human.options, names, ks)
        assert (got[0.05]["dice"] != got[0.3]["dice"]) == (dice == "hard")
        # the columns come in one order whichever metrics the options make k-free (the stored smoke
        # tables pin it): those that never read a region, then those that may
        assert list(got[0.05]) == [
            *(m for m in names if not REGISTRY[m].depends_on_k()),
            *(m for m in names if REGISTRY[m].depends_on_k()),
            "undefined",
        ]
        for k in ks:
            expected = score(
                values[None],
                human.values.reshape(1, 24, 24),
                k=k,
                size=24,
                tie_policy=tie_policy,
                dice=dice,
                metrics=names,
            ).iloc[0]
            for m in names:
                assert got[k][m] == pytest.approx(expected[m], rel=1e-12, abs=1e-15), (m, k)
    assert human.at_k(0.3) is human.at_k(0.3) and human.at_k(human.options.k) is human
    # a map shared by every question (the centre floor) keeps no other map alive through its overlaps
    shared = prepare_map(maps[3], human.options)
    other = prepare_map(maps[0], human.options)
    shared.at_k(0.3).overlap(other.at_k(0.3))
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("change", ["flip", "transpose", "scale_down"])
def test_scores_at_several_k_do_not_change_when_both_maps_are_flipped_or_one_is_scaled(change):
    """The k-sweep path (views kept per k, overlaps kept per pair) keeps the scorer's invariances."""
    from vqa_interp.metrics import prepare_map, run_metrics
    from vqa_interp.metrics.engine import score_at_ks

    rng = np.random.default_rng(11)
    options = ScoringOptions(size=24)
    names, ks = run_metrics(), (0.05, 0.1, 0.3)
    alter = {
        "flip": (np.flipud, np.flipud),
        "transpose": (np.transpose, np.transpose),
        "scale_down": (lambda m: m * 1e-7, lambda m: m),
    }[change]
    humans = [np.round(rng.random((24, 24)) * 6), rng.random((24, 24))]
    for values in _maps(rng, (24, 24)):
        before = score_at_ks(
            prepare_map(values, options), [prepare_map(h, options) for h in humans], options, names, ks
        )
        after = score_at_ks(
            prepare_map(alter[0](values), options),
            [prepare_map(alter[1](h), options) for h in humans],
            options,
            names,
            ks,
        )
        for k in ks:
            for m in names:
                assert after[k][m] == pytest.approx(before[k][m], rel=1e-9, abs=1e-12), (change, m, k)


def test_a_map_against_several_annotators_is_the_mean_of_its_defined_pairs():
    """Each metric averaged over the annotators whose pair is defined (a constant human map is
    left out); with none defined, NaN and the first reason."""
    from vqa_interp.metrics import prepare_map, run_metrics
    from vqa_interp.metrics.engine import score_against_annotators, score_prepared

    rng = np.random.default_rng(11)
    options = ScoringOptions(size=24)
    names = run_metrics()
    attribution = prepare_map(rng.random((24, 24)), options)
    humans = [prepare_map(np.round(rng.random((24, 24)) * 4), options) for _ in range(3)]
    constant = prepare_map(np.full((24, 24), 0.5), options)
    for group in (humans, humans[:1], [constant, *humans], humans[:2] + [constant]):
        got = score_against_annotators(attribution, group, options, names)
        pairs = [score_prepared(attribution, h, options, names) for h in group if not h.undefined]
        assert got["undefined"] == ""
        for m in names:
            assert got[m] == np.mean([p[m] for p in pairs]), m
    none = score_against_annotators(attribution, [constant], options, names)
    assert none["undefined"] == "human_constant" and all(np.isnan(none[m]) for m in names)
