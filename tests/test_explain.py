"""The explain stage: token scores against the decisive words (peer: scikit-learn), the generator's
evidence file and grammar, the explain tables of a run (cached, joined, analysed) and their
figures."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from vqa_interp.errors import DataError
from vqa_interp.explain.analysis import faithfulness_table, plausibility_faithfulness, share_by_split, token_table
from vqa_interp.explain.tokens import decisive_token_scores


@pytest.mark.parametrize(
    "scores, decisive",
    [
        ([0.1, -0.9, 0.3, 0.0, 0.2], [1, 2]),
        ([0.5, 0.5, -0.5, 0.5], [0, 3]),  # ties (in magnitude) everywhere
        ([0.0, 0.0, 0.0, 0.7], [3]),  # zeros
        ([0.2, 0.2, 0.2], [0]),  # constant: AUC 0.5, top-1 shared
        ([1e-8, -3.0, 2.0, 0.5, -0.1, 0.0], [0, 5]),  # the decisive words rank last
    ],
)
def test_token_auc_equals_scikit_learns_roc_auc_of_the_magnitudes(scores, decisive):
    got = decisive_token_scores(np.array(scores), decisive)
    labels = np.isin(np.arange(len(scores)), decisive)
    assert got["token_auc"] == pytest.approx(roc_auc_score(labels, np.abs(scores)), abs=1e-12)
    assert got["token_top1_chance"] == pytest.approx(len(decisive) / len(scores))
    magnitude = np.abs(scores)
    top = magnitude == magnitude.max()
    assert got["token_top1"] == pytest.approx(labels[top].mean())


def test_token_scores_do_not_change_when_attributions_are_scaled_or_negated():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.normal(size=rng.integers(3, 12))
        decisive = rng.choice(len(scores), size=2, replace=False).tolist()
        base = decisive_token_scores(scores, decisive)
        for changed in (scores * 1e-7, scores * 1e7, -scores):
            assert decisive_token_scores(changed, decisive) == pytest.approx(base)


def test_token_scores_are_undefined_without_a_contrast_or_with_nan():
    assert np.isnan(decisive_token_scores(np.array([0.3, 0.1]), [])["token_auc"])  # nothing decisive
    everything = decisive_token_scores(np.array([0.3, 0.1]), [0, 1])
    assert np.isnan(everything["token_auc"]) and everything["token_top1"] == 1.0  # every word decisive
    assert np.isnan(decisive_token_scores(np.array([np.nan, 0.1]), [0])["token_auc"])
    # a position past the question's end is ignored, not an error
    assert np.isnan(decisive_token_scores(np.array([0.3, 0.1]), [7])["token_auc"])


def test_the_generator_writes_decisive_positions_and_says_an_before_a_vowel(embedded_root):
    from vqa_interp.data.answers import tokenize_question
    from vqa_interp.data.datasets import read_question_evidence

    questions = json.loads((embedded_root / "OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    evidence = read_question_evidence(embedded_root / "question_evidence_val2014.json")
    assert set(evidence) == {q["question_id"] for q in questions}
    words = {
        "color",
        "shape",
        "size",
        "objects",
        "circle",
        "square",
        "triangle",
        "circles",
        "squares",
        "triangles",
        "small",
        "large",
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "orange",
        "cyan",
        "white",
    }
    for q in questions:
        tokens = tokenize_question(q["question"])
        positions = evidence[q["question_id"]]
        assert positions and all(tokens[p] in words for p in positions), (q["question"], positions)
        assert " a orange" not in q["question"] and " a a" not in q["question"]
        if q["question"].startswith("Is there "):
            article, colour = tokens[2], tokens[3]
            assert article == ("an" if colour[0] in "aeiou" else "a")
            assert positions == (3, 4)  # the colour and the shape named
        if q["question"].startswith("What color is the "):
            assert 1 in positions  # the attribute asked about
    assert any(" an orange " in q["question"] for q in questions)


def test_a_malformed_evidence_file_is_named(tmp_path):
    from vqa_interp.data.datasets import read_question_evidence

    path = tmp_path / "question_evidence_val2014.json"
    path.write_text(json.dumps({"evidence": {"12": "not positions"}}))
    with pytest.raises(DataError, match="question_evidence_val2014.json: not a question-evidence file"):
        read_question_evidence(path)


def test_faithfulness_table_pairs_method_and_random_on_the_same_targets():
    rng = np.random.default_rng(0)
    random_deletion = rng.uniform(0.3, 0.6, 80)
    per_target = pd.DataFrame(
        {
            "deletion_auc": random_deletion - 0.1 + rng.normal(0, 0.02, 80),
            "random_deletion_auc": random_deletion,
            "insertion_auc": rng.uniform(0.3, 0.6, 80),
            "random_insertion_auc": rng.uniform(0.3, 0.6, 80),
        }
    )
    per_target.loc[3, "deletion_auc"] = np.nan  # a NaN drops that pair only
    table = faithfulness_table(per_target, n_bootstrap=200, seed=0).set_index("curve")
    deletion = table.loc["deletion"]
    kept = per_target.drop(index=3)
    assert deletion["n"] == 79
    assert deletion["method"] == pytest.approx(kept["deletion_auc"].mean())
    assert deletion["random"] == pytest.approx(kept["random_deletion_auc"].mean())
    assert deletion["test"] == "sign_flip" and deletion["p_value"] == pytest.approx(1 / 4001)  # no flip reaches it
    assert deletion["ci_low"] < deletion["mean_diff"] < deletion["ci_high"] < 0
    assert bool(deletion["more_faithful_than_random"])
    assert not bool(table.loc["insertion", "more_faithful_than_random"])


def test_plausibility_faithfulness_is_scipys_spearman_and_undefined_for_constants():
    rng = np.random.default_rng(1)
    examples = pd.DataFrame(
        {
            "rank_corr": rng.normal(size=40),
            "iou": np.full(40, 0.2),
            "deletion_auc": rng.normal(size=40),
            "insertion_auc": rng.normal(size=40),
        }
    )
    examples.loc[0, "rank_corr"] = np.nan
    table = plausibility_faithfulness(examples).set_index(["plausibility", "faithfulness"])
    kept = examples.dropna()
    expected = scipy.stats.spearmanr(kept["rank_corr"], kept["deletion_auc"])
    assert table.loc[("rank_corr", "deletion_auc"), "spearman"] == pytest.approx(expected.statistic)
    assert table.loc[("rank_corr", "deletion_auc"), "n"] == 39
    assert np.isnan(table.loc[("iou", "deletion_auc"), "spearman"])  # constant: no correlation, no error


def test_share_by_split_and_the_token_table_read_against_their_floors():
    examples = pd.DataFrame(
        {
            "image_share": [0.2, 0.4, 0.6, 0.8],
            "correct": [True, True, False, False],
            "confidence_level": ["low", "high", "low", "high"],
        }
    )
    split = share_by_split(examples).set_index("scenario")
    assert split.loc["all", "mean"] == pytest.approx(0.5) and split.loc["correct", "mean"] == pytest.approx(0.3)
    assert split.loc["high_wrong", "n"] == 1
    tokens = token_table(
        pd.DataFrame(
            {"token_auc": [1.0, 0.75, np.nan], "token_top1": [1.0, 0.0, 1.0], "token_top1_chance": [0.4, 0.25, 0.5]}
        )
    ).iloc[0]
    assert tokens["token_auc"] == pytest.approx(0.875) and tokens["random_auc"] == 0.5
    assert tokens["top1_hit"] == pytest.approx(2 / 3) and tokens["top1_chance"] == pytest.approx((0.4 + 0.25 + 0.5) / 3)


@pytest.fixture(scope="module")
def run_parts(home, tmp_path_factory):
    """A run's stages up to its maps, on 12 embedded questions, with its own cache folder."""
    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.data.vqa import digest_examples, example_digest
    from vqa_interp.pipeline import model as model_stage
    from vqa_interp.pipeline.attribute import attribute_targets, map_cache_for
    from vqa_interp.pipeline.predict import image_loader, predict
    from vqa_interp.pipeline.targets import map_keys, plan_targets
    from vqa_interp.settings import from_config
    from vqa_interp.train import ensure_model

    cache = tmp_path_factory.mktemp("cache")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(
            compose(
                "config",
                overrides=[f"paths.home={home}", "data.limit=12", f"paths.cache={cache}", "explain.ig_steps=16"],
            )
        )
    dataset = dataset_for(settings.data, settings.home)
    model = model_stage.load(settings, ensure_model(settings, dataset))
    examples = dataset.examples().examples
    load_images = image_loader(model, examples)
    question = model.encode([e.question for e in examples])
    predictions = predict(model, examples, load_images, question, batch_size=16)
    digests = [example_digest(e) for e in examples]
    targets = map_keys(plan_targets(predictions, "paper")[0], digests)
    maps = map_cache_for(settings, model)
    attribute_targets(model, settings, targets, maps, load_images, question)
    return dict(
        settings=settings,
        dataset=dataset,
        model=model,
        examples=examples,
        targets=targets,
        maps=maps,
        load_images=load_images,
        question=question,
        data_digest=digest_examples(examples, digests),
    )


def explain(parts, **changes):
    from dataclasses import replace

    from vqa_interp.explain.compute import explain_targets

    settings = parts["settings"]
    if changes:
        settings = replace(settings, explain=replace(settings.explain, **changes))
    return explain_targets(
        parts["model"],
        settings,
        parts["examples"],
        parts["targets"],
        parts["maps"],
        parts["load_images"],
        parts["question"],
        data_digest=parts["data_digest"],
        evidence=parts["dataset"].question_evidence(),
    )


def test_a_runs_explain_tables_cover_every_target_and_are_cached(run_parts):
    targets, q_len = run_parts["targets"], run_parts["question"][1]
    first = explain(run_parts)
    assert first.hits == {"model": False, "map": False}
    table = first.per_target
    assert len(table) == len(targets) and table[["question_id", "target"]].equals(targets[["question_id", "target"]])
    for column in (
        "deletion_auc",
        "insertion_auc",
        "random_deletion_auc",
        "random_insertion_auc",
        "token_auc",
        "token_top1",
        "token_error",
    ):
        assert table[column].notna().all(), column
    # the share is the example's: computed for the map of the prediction only
    stands = targets["on_prediction"].to_numpy(bool)
    assert table.loc[stands, "image_share"].notna().all() and table.loc[~stands, "image_share"].isna().all()
    assert not stands.all() and table.loc[stands, "image_share"].between(0, 1, inclusive="neither").all()
    # one token row per word of each target's question, and each target's scores have unit L2 norm
    assert len(first.tokens) == int(q_len[targets["row"].to_numpy()].sum())
    norms = first.tokens.groupby(["question_id", "target"])["attribution"].apply(lambda a: np.sqrt((a**2).sum()))
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert set(first.curves["source"]) == {"method", "random"} and first.curves.filter(like="step_").shape[1] == 11
    again = explain(run_parts)
    assert again.hits == {"model": True, "map": True}
    pd.testing.assert_frame_equal(again.per_target, first.per_target, check_dtype=False)
    pd.testing.assert_frame_equal(again.tokens, first.tokens, check_dtype=False)
    # other curve settings are another cache entry, and a part that is off leaves no column or table
    other = explain(run_parts, steps=4, tokens=False, share=False)
    assert other.hits == {"model": False, "map": False} and "image_share" not in other.per_target
    assert other.curves.filter(like="step_").shape[1] == 5 and other.tokens.empty


def test_predictions_are_cached_and_read_back_equal_dtypes_included(run_parts):
    """A k sweep's later jobs and a rerun read the predictions back instead of running the model."""
    from dataclasses import replace

    from vqa_interp.pipeline.predict import cached_predictions

    p = run_parts
    args = (p["model"], p["examples"], p["load_images"], p["question"], p["data_digest"])
    first, hit = cached_predictions(p["settings"], *args)
    assert not hit and first["answer"].map(type).eq(str).all()
    again, hit = cached_predictions(p["settings"], *args)
    assert hit
    pd.testing.assert_frame_equal(again, first)
    # another batch size or other data is another entry
    other = replace(p["settings"], attribution=replace(p["settings"].attribution, batch_size=5))
    assert not cached_predictions(other, *args)[1]
    assert not cached_predictions(p["settings"], *args[:-1], "another data digest")[1]


def test_every_part_off_computes_nothing(run_parts):
    assert explain(run_parts, tokens=False, share=False, faithfulness=False) is None


def test_without_an_evidence_file_tokens_are_reported_without_a_score():
    from vqa_interp.explain.analysis import explain_results

    rng = np.random.default_rng(2)
    per_target = pd.DataFrame(
        {
            "question_id": np.arange(30),
            "target": "label",
            "token_error": 0.01,
            "deletion_auc": rng.random(30),
            "random_deletion_auc": rng.random(30),
        }
    )
    examples = per_target.assign(correct=rng.random(30) > 0.5, confidence_level="high", rank_corr=rng.random(30))
    tables, metrics, lines = explain_results(examples, per_target, alpha=0.05, n_bootstrap=100, seed=0, min_group=5)
    assert "token_scores" not in tables and not any(m.startswith("tokens/") for m in metrics)
    assert not any(line.startswith("Question words") for line in lines)
    assert "faithfulness" in tables and "faithfulness/deletion_auc" in metrics


def test_explain_batches_shared_with_a_forked_process_equal_the_stage_run_here(run_parts, tmp_path):
    """What a run does when its forked process ends its scoring first: both take explain batches from
    one shared counter (each on one torch thread), and the tables put back in batch order are the
    ones this process makes alone; only this process writes the cache."""
    from dataclasses import replace

    from vqa_interp.explain.compute import explain_work
    from vqa_interp.util import forked
    from vqa_interp.util.allocator import torch_threads
    from vqa_interp.util.shared_work import SharedCounter

    def work(folder):
        settings = replace(
            run_parts["settings"], cache=str(folder), explain=replace(run_parts["settings"].explain, batch_size=4)
        )
        return explain_work(
            run_parts["model"],
            settings,
            run_parts["examples"],
            run_parts["targets"],
            run_parts["maps"],
            run_parts["load_images"],
            run_parts["question"],
            data_digest=run_parts["data_digest"],
            evidence=run_parts["dataset"].question_evidence(),
        )

    with torch_threads(1):
        alone = work(tmp_path / "alone").run()
        shared = work(tmp_path / "shared")
        assert len(shared.items) >= 4
        counter = SharedCounter()
        first = counter.claim()  # this process holds batch 0, so the child must take some of the rest
        child = forked.start(lambda: shared.take(counter.claim), fork=True)
        there = child.result()
        here = {first: shared.items[first](), **shared.take(counter.claim)}
    assert there and set(there) | set(here) == set(range(len(shared.items))) and not set(there) & set(here)
    together = shared.complete(here, there)
    for name in ("per_target", "tokens", "curves"):
        pd.testing.assert_frame_equal(getattr(together, name), getattr(alone, name))
    assert work(tmp_path / "shared").items == []  # the parent wrote the cache: nothing left to compute


def test_the_forked_process_takes_explain_batches_only_where_two_fit_the_memory_budget():
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.pipeline.explain import two_can_explain
    from vqa_interp.settings import from_config
    from vqa_interp.util.memory import Batching

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config"))
    e = settings.explain
    need = 2 * max(e.ig_batch_size * 1000, e.batch_size * 100)  # two processes' batches, 1000 B a backward sample
    fits = replace(settings, batching=Batching(budget=need, forward=100, backward=1000))
    assert two_can_explain(fits)
    assert not two_can_explain(replace(fits, batching=Batching(budget=need - 1, forward=100, backward=1000)))
    assert not two_can_explain(replace(fits, analysis=replace(fits.analysis, sanity=True)))
