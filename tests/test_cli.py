"""End to end through the CLI, as a user types it; the store is read back with MlflowClient."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST_ARGS as FAST
from conftest import NO_EXPLAIN, python
from vqa_interp.scoring import score

pytestmark = pytest.mark.slow


def run_cli(args, env, cwd, check=True):
    result = subprocess.run(
        [python(), "-m", "vqa_interp.run", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
        )
    return result


def store(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    return client, [r for r in runs if r.data.tags.get("run_kind") != "training"]


def test_default_run_logs_a_traceable_record(cli_env, tmp_path):
    result = run_cli(FAST, cli_env, tmp_path)
    client, runs = store(cli_env)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id in result.stdout and "mlflow ui --backend-store-uri" in result.stdout
    assert f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in result.stdout
    assert run.info.run_name == "saliency k=0.1 (embedded, 10 q)"
    assert run.info.status == "FINISHED"
    assert run.data.params["method.name"] == "saliency" and run.data.params["k"] == "0.1"
    assert run.data.params["confidence.low"] == "0.25" and run.data.params["preprocessing.size"] == "64"
    for tag in ("git_commit", "data_digest", "checkpoint_digest", "hydra_output_dir"):
        assert run.data.tags[tag]
    # the runs table's Dataset column: what was scored, as an MLflow dataset input
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "embedded val" and len(dataset_input.dataset.digest) >= 8
    profile = json.loads(dataset_input.dataset.profile)
    assert profile["num_questions"] == 10 and 4 <= profile["num_images"] <= 10 and profile["num_human_maps"] >= 10
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "evaluation"
    metrics = run.data.metrics
    assert metrics["count/questions"] == 10 and metrics["count/rows"] >= 10
    assert 0 <= metrics["model/accuracy"] <= 1 and "score/rank_corr" in metrics and "score_median/iou" in metrics
    # a readable MLflow view: a few headline metrics in "/" sections, the summary as the description
    # (the explain section adds 13: tokens/, share/, faithfulness/)
    assert len(metrics) <= 60 and all("/" in name for name in metrics), sorted(metrics)
    assert not any(name.startswith(("p.", "p_holm", "cohens_d")) for name in metrics)
    description = run.data.tags["mlflow.note.content"]
    assert "Headline" in description and "rank_corr" in description
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "Headline" in result.stdout and "Between floors and ceiling" in result.stdout
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/per_example.csv", "tables/significance.csv", "tables/scenario_medians.csv"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/fig9_10_qualitative.png" in figures and "figures/fig7_scenario_medians.png" in figures
    assert {
        "figures/fig4_correlation_matrix.png",
        "figures/fig4_correlation_matrix.svg",
        "figures/floor_ceiling.png",
    } <= figures
    # what the model used: token table, image share, faithfulness against random maps, and the figures
    assert {
        "tables/token_attributions.csv",
        "tables/faithfulness.csv",
        "tables/faithfulness_curves.csv",
        "tables/image_share_by_split.csv",
        "tables/image_share_significance.csv",
        "tables/plausibility_faithfulness.csv",
        "tables/token_scores.csv",
    } <= artifacts
    assert {
        "figures/token_attributions.png",
        "figures/faithfulness_curves.png",
        "figures/image_share_by_split.png",
    } <= figures
    for name in (
        "tokens/decisive_auc",
        "tokens/top1_hit",
        "share/image",
        "faithfulness/deletion_auc",
        "faithfulness/random_deletion_auc",
        "faithfulness/plausibility_rank_corr_vs_deletion",
    ):
        assert np.isfinite(metrics[name]), name
    assert "What the model used" in result.stdout
    tokens = pd.read_csv(
        client.download_artifacts(run.info.run_id, "tables/token_attributions.csv", str(tmp_path)),
        keep_default_na=False,
    )
    assert list(tokens.columns) == ["question_id", "target", "position", "token", "attribution"]
    # every number is traceable: recompute the table's metrics from the run's own maps
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_example.csv", str(tmp_path)))
    for column in (
        "question_id",
        "image_id",
        "question",
        "answer",
        "prediction",
        "confidence",
        "correct",
        "target",
        "target_answer",
        "method",
        "rank_corr",
        "intersect",
        "disc_intersect",
        "iou",
        "dice",
        "precision",
        "recall",
        "f1",
        "deletion_auc",
        "insertion_auc",
        "random_deletion_auc",
        "image_share",
        "token_auc",
    ):
        assert column in table
    archive = client.download_artifacts(run.info.run_id, "maps/maps.npz", str(tmp_path))
    maps = np.load(archive)
    assert set(maps.files) == {f"{k}" for k in table["map_key"]}
    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.data import InputGeometry, dataset_for, human_maps_for, load_examples, resolve_paths
    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.home={cli_env['VQA_INTERP_HOME']}"])
    examples = {
        e.question_id: e
        for e in load_examples(
            resolve_paths(dataset_for(from_config(cfg).data, cli_env["VQA_INTERP_HOME"]).root()), limit=10
        ).examples
    }
    geometry = InputGeometry(cfg.model.input.size, cfg.model.input.central_fraction)
    row = table.iloc[0]
    human = human_maps_for(examples[row["question_id"]], geometry, "mean", 1)
    again = score(maps[row["map_key"]][None], human, k=0.1, size=64)
    assert again.loc[0, "rank_corr"] == pytest.approx(row["rank_corr"], abs=1e-9)
    assert again.loc[0, "iou"] == pytest.approx(row["iou"], abs=1e-9)


def test_two_by_two_multirun_has_one_parent_four_children_and_reuses_maps(two_by_two_sweep, tmp_path):
    client, runs = store(two_by_two_sweep["env"])
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(
        c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children
    )
    assert sorted((c.data.params["method.name"], c.data.params["k"]) for c in children) == [
        ("ggradcam", "0.05"),
        ("ggradcam", "0.1"),
        ("saliency", "0.05"),
        ("saliency", "0.1"),
    ]
    # params differ only along the sweep axes (and the options that come with a method)
    keys = set.union(*(set(c.data.params) for c in children))
    differing = {k for k in keys if len({c.data.params.get(k) for c in children}) > 1}
    assert differing <= {"method.name", "k", "method.layer", "method.interpolate_mode", "method.abs"}
    # k does not change maps: the second run of each method takes every map from the cache
    for method in ("saliency", "ggradcam"):
        mine = [c for c in children if c.data.params["method.name"] == method]
        assert sorted(c.data.metrics["count/map_cache_misses"] for c in mine)[0] == 0
        assert max(c.data.metrics["count/map_cache_hits"] for c in mine) == mine[0].data.metrics["count/maps"]

        # figures that do not depend on k are rendered once and logged by both runs, byte for byte;
        # those that do (Figure 7: medians of k-dependent metrics) are each run's own
        def figure(run, name):
            folder = tmp_path / run.info.run_id
            folder.mkdir(exist_ok=True)
            return Path(client.download_artifacts(run.info.run_id, f"figures/{name}", str(folder))).read_bytes()

        for name in (
            "token_attributions.png",
            "token_attributions.svg",
            "faithfulness_curves.png",
            "fig9_10_qualitative.png",
        ):
            assert figure(mine[0], name) == figure(mine[1], name), name
        assert figure(mine[0], "fig7_scenario_medians.png") != figure(mine[1], "fig7_scenario_medians.png")
    for child in children:
        assert {"tables/per_example.csv"} <= {a.path for a in client.list_artifacts(child.info.run_id, "tables")}
    comparison = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "tables/method_comparison.csv", str(tmp_path))
    )
    assert len(comparison) == 4 and set(comparison["status"]) == {"FINISHED"}
    # each method's faithfulness next to its random maps', per child (what the maps tell about the model)
    assert comparison[["faithfulness/deletion_auc", "faithfulness/random_deletion_auc"]].notna().all().all()
    # what a researcher sees: names that say what differs, the ranking last in the terminal and in the parent
    assert parent.info.run_name == "sweep: method=saliency,ggradcam k=0.05,0.1 " + " ".join(FAST)
    assert {c.info.run_name for c in children} >= {
        "saliency k=0.05 (embedded, 10 q)",
        "ggradcam k=0.1 (embedded, 10 q)",
    }
    stdout = two_by_two_sweep["stdout"]
    # a sweep's jobs are quiet (their summaries are in their descriptions); the parent's ranking is the answer
    assert "Headline" not in stdout and "Method ranking" in stdout and "Downloading artifacts" not in stdout
    assert all(c.data.tags["mlflow.note.content"].startswith("**The answer**") for c in children)
    assert len(stdout.splitlines()) < 100
    logs = [log for log in Path(two_by_two_sweep["dir"]).glob("**/run.log") if log.parent.name.isdigit()]
    assert len(logs) == 4 and all("Headline" in log.read_text() and "finished" in log.read_text() for log in logs)
    assert "Method ranking" in parent.data.tags["mlflow.note.content"]
    # both answers at the end of the terminal, and first in the parent's description
    last = stdout[stdout.rindex("The answer:") :]
    assert "Which method looks most like humans (k=" in last and "rank correlation" in last
    assert parent.data.tags["mlflow.note.content"].startswith("**The answer**")
    assert "Does the model look where humans look when it answers right?" in stdout
    assert "tables/children_headline.csv" in {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}
    # the parent's ranking as metrics (its charts and columns in the UI), its table as the UI's viewer shows it
    for method in ("saliency", "ggradcam"):
        assert {f"ranking/{method}/k{k}/{m}" for k in ("0.05", "0.1") for m in ("rank_corr", "iou")} <= set(
            parent.data.metrics
        )
    viewed = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "tables/children_headline.json", str(tmp_path))).read_text()
    )
    assert "method" in viewed["columns"] and not any("." in c for c in viewed["columns"])


def test_the_sweep_parent_tests_methods_pairwise_on_the_mean_with_images_as_clusters(two_by_two_sweep, tmp_path):
    from vqa_interp.analysis.verdicts import sign_flip_p

    client, runs = store(two_by_two_sweep["env"])
    parent = [r for r in runs if r.data.tags.get("run_kind") == "sweep"][0]
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    pairs = pd.read_csv(client.download_artifacts(parent.info.run_id, "tables/method_pairs.csv", str(tmp_path)))
    assert list(pairs.columns) == [
        "method_a",
        "method_b",
        "k",
        "metric",
        "n",
        "n_images",
        "mean_diff",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "test",
        "testable",
        "reason",
        "better",
    ]
    assert sorted(set(pairs["k"])) == [0.05, 0.1] and set(pairs["test"]) == {"sign_flip"}
    ranking = pd.read_csv(client.download_artifacts(parent.info.run_id, "tables/method_ranking.csv", str(tmp_path)))
    for k in ("0.05", "0.1"):
        tables = {}
        for child in children:
            if child.data.params["k"] == k:
                folder = tmp_path / child.info.run_id
                folder.mkdir()
                table = pd.read_csv(client.download_artifacts(child.info.run_id, "tables/per_example.csv", str(folder)))
                tables[child.data.params["method.name"]] = table[table["on_prediction"]].set_index("question_id")
        for metric in ("rank_corr", "iou"):
            # one row per question (the predicted answer's map), on the questions both methods scored
            both = pd.concat(
                [tables["ggradcam"][metric], tables["saliency"][metric], tables["saliency"]["image_id"]],
                axis=1,
                join="inner",
            ).dropna()
            row = pairs[(pairs["k"] == float(k)) & (pairs["metric"] == metric)].iloc[0]
            assert (row["method_a"], row["method_b"]) == ("ggradcam", "saliency") and row["n"] == len(both)
            diff = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
            assert row["mean_diff"] == pytest.approx(diff.mean())
            if row["testable"]:
                assert row["p_value"] == pytest.approx(sign_flip_p(diff, both["image_id"].to_numpy()), abs=0.03)
            order = ranking[(ranking["k"] == float(k)) & (ranking["metric"] == metric)].sort_values("rank")
            better = order["method"].iloc[0]  # the ranking follows the sign of the paired difference
            sign = 1 if metric != "kld" else -1
            assert (row["mean_diff"] * sign > 0) == (better == "ggradcam") or row["mean_diff"] == 0
    robustness = {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}
    assert {"tables/metric_agreement.csv", "tables/ranking_stability.csv", "tables/ranking_by_type.csv"} <= robustness
    by_type = pd.read_csv(client.download_artifacts(parent.info.run_id, "tables/ranking_by_type.csv", str(tmp_path)))
    assert set(by_type["group_kind"]) <= {"answer_type", "question_type"}
    assert "Robustness of the ranking" in two_by_two_sweep["stdout"]
    assert "of resamples of the images" in two_by_two_sweep["stdout"]
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {
        "figures/method_ranking.png",
        "figures/fig2_method_means.png",
        "figures/fig9_10_methods_side_by_side.png",
        "figures/ranking_robustness.png",
    } <= figures


def test_every_run_reads_its_scores_against_floors_and_the_ceiling(two_by_two_sweep, tmp_path):
    from vqa_interp.metrics import run_metrics

    client, runs = store(two_by_two_sweep["env"])
    child = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"][0]
    table = pd.read_csv(client.download_artifacts(child.info.run_id, "tables/baselines.csv", str(tmp_path)))
    assert list(table.columns) == ["reference", "metric", "mean", "ci_low", "ci_high", "n", "protocol"]
    assert set(table["protocol"]) == {"loo"}  # the embedded data has 3 annotators: the ceiling's protocol
    assert set(table["reference"]) == {"method", "random", "centre", "image", "oracle", "human_ceiling"}
    # every number of a metric over the same questions, those of the method
    for metric, part in table.groupby("metric"):
        assert part.loc[part["reference"].isin(["method", "random", "human_ceiling"]), "n"].nunique() == 1, metric
    for reference, part in table.groupby("reference"):
        assert set(part["metric"]) == set(run_metrics()), reference
    assert "norm/rank_corr" in child.data.metrics and "baseline/human_ceiling/iou" in child.data.metrics
    described = child.data.tags["mlflow.note.content"]
    assert "Between floors and ceiling" in described and "vs centre" in described and "leave-one-out" in described


def test_sanity_experiment_shows_saliency_maps_decorrelating(cli_env, tmp_path):
    run_cli(["+experiment=sanity", "analysis.sanity_questions=8", *FAST], cli_env, tmp_path)
    client, runs = store(cli_env)
    run = runs[0]
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/sanity_randomisation.csv", str(tmp_path)))
    assert list(table.columns) == ["mode", "step", "block", "method", "similarity", "mean", "std", "n"]
    cascade = table[(table["mode"] == "cascading") & (table["similarity"] == "spearman_abs")].sort_values("step")
    assert cascade["mean"].iloc[0] == pytest.approx(1.0) and cascade["mean"].iloc[-1] < 0.5
    assert {"human_rank_corr", "ssim", "spearman_signed"} <= set(table["similarity"])
    assert run.data.tags["sanity_check"] == "pass"
    assert "figures/sanity_randomisation.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}


def test_a_failing_job_is_marked_failed_and_the_parent_is_closed(cli_env, tmp_path):
    """A 2x2 sweep (layer x k) where the two jobs on a layer that does not exist fail."""
    result = run_cli(
        ["-m", "method=ggradcam", "method.layer=backbone.layer4,backbone.nope", "k=0.05,0.1", *FAST],
        cli_env,
        tmp_path,
        check=False,
    )
    assert result.returncode != 0
    client, runs = store(cli_env)
    parent = [r for r in runs if r.data.tags.get("run_kind") == "sweep"][0]
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    assert sorted(c.info.status for c in children) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    failed = [c for c in children if c.info.status == "FAILED"]
    assert all(
        "method.layer" in c.data.tags["error"] and c.data.params["method.layer"] == "backbone.nope" for c in failed
    )
    assert parent.info.status == "FAILED"
    assert set(parent.data.tags["failed_children"].split(",")) == {c.info.run_id for c in failed}
    comparison = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "tables/method_comparison.csv", str(tmp_path))
    )
    assert sorted(comparison["status"]) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    medians = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "tables/scenario_medians_by_run.csv", str(tmp_path))
    )
    assert set(medians["run_id"]) == {c.info.run_id for c in children if c.info.status == "FINISHED"}


def test_train_command_trains_and_logs_a_checkpoint(tmp_path):
    """`python -m vqa_interp.train` on a tiny embedded split (own home), logged to MLflow."""
    from conftest import cli_environment

    env = cli_environment(tmp_path, tmp_path / "home")
    result = subprocess.run(
        [python(), "-m", "vqa_interp.train", "data.n_train_images=40", "data.n_val_images=4", "model.train.epochs=2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["run_kind"] == "training"
    assert run.data.metrics["epochs_run"] == 2 and "train_loss" in run.data.metrics
    checkpoint = run.data.tags["checkpoint_path"]
    assert checkpoint in result.stdout
    from vqa_interp.models.checkpoint import read_checkpoint

    payload = read_checkpoint(checkpoint)
    assert all(k.startswith("module.") for k in payload["weights"]) and payload["vocab"]["answer"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["k=2"], "k=2"),
        (["data=vqahat", "data.root=/nonexistent/vqa"], "model=embedded is trained on the embedded benchmark"),
        (["data.root=/nonexistent/vqa"], "data.root: /nonexistent/vqa is not a folder"),
        (["method=nope"], "method"),
    ],
)
def test_bad_input_fails_before_work_with_a_clear_message_and_no_run(cli_env, tmp_path, args, message):
    result = run_cli(args, cli_env, tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    _, runs = store(cli_env)
    assert runs == []


def test_help_lists_the_groups(cli_env, tmp_path):
    out = run_cli(["--help"], cli_env, tmp_path).stdout
    for group in ("data:", "model:", "method:", "preprocessing:", "confidence:"):
        assert group in out


def test_six_methods_beyond_the_paper_finish_and_ig_is_complete(cli_env, tmp_path):
    # the floors and ceiling are not under test here (their own tests): left out, ~40 s less
    run_cli(
        [
            "-m",
            "method=saliency,ig,smoothgrad,gradcam,gradshap,occlusion",
            "+experiment=smoke",
            "data.limit=4",
            "preprocessing.size=64",
            "analysis.bootstrap=50",
            "analysis.n_panels=1",
            "analysis.baselines=false",
            *NO_EXPLAIN,
        ],
        cli_env,
        tmp_path,
    )
    client, runs = store(cli_env)
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    assert sorted(c.data.params["method.name"] for c in children) == [
        "gradcam",
        "gradshap",
        "ig",
        "occlusion",
        "saliency",
        "smoothgrad",
    ]
    assert all(c.info.status == "FINISHED" for c in children)
    ig = [c for c in children if c.data.params["method.name"] == "ig"][0]
    assert ig.data.metrics["method/completeness_error_median"] < 0.05
    table = pd.read_csv(client.download_artifacts(ig.info.run_id, "tables/per_example.csv", str(tmp_path)))
    for metric in ("cc", "sim", "kld", "nss", "auc", "pointing_game", "mass_accuracy"):
        assert table[metric].notna().all(), metric
    assert "emd" not in table  # slow: only when scoring.metrics names it


def test_scoring_beside_the_explain_stage_gives_the_tables_scoring_in_turn_gives(cli_env, tmp_path):
    """``scoring.fork=true`` (the default: the maps scored in a forked process while the model is
    explained) and ``false`` (one after the other): the same scores, floors and ceiling; the explain
    columns equal to float32 rounding (torch runs one thread beside the scoring)."""
    tables = {}
    # a third split of the work: other batch sizes, so the two processes share it differently
    variants = {
        "true": ["scoring.fork=true"],
        "false": ["scoring.fork=false"],
        "split": ["scoring.fork=true", "explain.batch_size=2", "attribution.batch_size=3"],
    }
    for name_, overrides in variants.items():
        run_cli([*FAST, "data.limit=6", *overrides, f"paths.cache={tmp_path / name_}"], cli_env, tmp_path)
        client, runs = store(cli_env)
        run = max(runs, key=lambda r: r.info.start_time)
        assert run.data.tags["scoring_process"].startswith("the run's" if name_ == "false" else "forked")
        tables[name_] = {
            name: pd.read_csv(
                client.download_artifacts(run.info.run_id, f"tables/{name}.csv", str(tmp_path / f"{name_}-{name}"))
            )
            for name in ("per_example", "references_per_question", "timings")
        }
    forked, in_turn = tables["true"], tables["false"]
    assert "scoring_wait" in set(forked["timings"]["stage"]) and "scoring_wait" not in set(in_turn["timings"]["stage"])
    pd.testing.assert_frame_equal(forked["references_per_question"], in_turn["references_per_question"])
    explain = [
        "share_error",
        "image_share",
        "token_error",
        "deletion_auc",
        "insertion_auc",
        "random_deletion_auc",
        "random_insertion_auc",
    ]
    pd.testing.assert_frame_equal(tables["split"]["references_per_question"], forked["references_per_question"])
    for other in (in_turn, tables["split"]):  # the maps and scores identical; the explain columns to float32
        a, b = forked["per_example"], other["per_example"]  # rounding (another batch: another summation order)
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        pd.testing.assert_frame_equal(
            a.drop(columns=[c for c in explain if c in a]), b.drop(columns=[c for c in explain if c in b])
        )
        for column in (c for c in explain if c in a):
            np.testing.assert_allclose(a[column], b[column], atol=1e-5, rtol=0, err_msg=column)
