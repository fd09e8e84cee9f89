"""The real-data path: readers on a real-format tree with its quirks, the pytorch-vqa checkpoint
on a ResNet-152, an end-to-end CLI run, and the clear errors a new user meets."""

import shutil
import subprocess

import pytest
from mlflow.tracking import MlflowClient
from realdata import build_checkpoint, build_resnet152_weights, build_tree

from conftest import python
from vqa_interp.data import load_examples, resolve_paths
from vqa_interp.errors import DataError
from vqa_interp.models import load_model


@pytest.fixture(scope="session")
def real(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    return {
        "root": build_tree(base / "vqa"),
        "checkpoint": build_checkpoint(base / "2017-08-04_00.55.19.pth"),
        "backbone": build_resnet152_weights(base / "resnet152-95e0e999.pth"),
    }


def test_reader_handles_the_quirks(real):
    selection = load_examples(resolve_paths(real["root"]))
    ids = [e.question_id for e in selection.examples]
    assert ids == [1001, 2001, 3001, 4001]
    assert selection.skipped["constant_human_map"] == 3 and selection.skipped["all_human_maps_constant"] == 1
    by_id = {e.question_id: e for e in selection.examples}
    assert len(by_id[1001].human_map_paths) == 3 and len(by_id[2001].human_map_paths) == 2
    assert [p.name for p in by_id[3001].human_map_paths] == ["3001_2.png"]


def test_missing_image_is_a_clear_error_or_skipped_on_request(real, tmp_path):
    root = shutil.copytree(real["root"], tmp_path / "vqa")
    (root / "val2014" / "COCO_val2014_000000000002.jpg").unlink()
    with pytest.raises(DataError, match=r"data.images.*COCO_val2014_000000000002.jpg.*skip_missing_images"):
        load_examples(resolve_paths(root))
    selection = load_examples(resolve_paths(root), skip_missing_images=True)
    assert selection.skipped["missing_image"] == 1 and len(selection.examples) == 3


def test_pytorch_vqa_checkpoint_loads_on_resnet152(real):
    loaded = load_model(real["checkpoint"], {"type": "resnet", "depth": 152}, real["backbone"])
    assert loaded.answer_vocab["2"] == 2
    assert loaded.text_embedding().num_embeddings == len(loaded.question_vocab) + 1
    assert loaded.description.startswith("caffe resnet152")
    assert loaded.module.backbone.variant == "caffe"
    torchvision_variant = load_model(
        real["checkpoint"], {"type": "resnet", "depth": 152, "variant": "torchvision"}, real["backbone"]
    )
    assert torchvision_variant.description.startswith("torchvision resnet152")


def _run(args, env, cwd):
    return subprocess.run(
        [python(), "-m", "vqa_interp.run", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


def _args(real, **changes):
    args = {
        "data": "vqahat",
        "model": "kazemi",
        "data.root": real["root"],
        "model.checkpoint": real["checkpoint"],
        "model.backbone_weights": real["backbone"],
        "model.input.size": 224,
        "preprocessing.size": 64,
        "attribution.batch_size": 2,
        "analysis.bootstrap": 50,
        "analysis.n_panels": 2,
        **changes,
    }
    return [f"{k}={v}" for k, v in args.items() if v is not None]


@pytest.mark.slow
def test_end_to_end_run_on_real_format_files(real, cli_env, tmp_path):
    # the image share's 32 IG steps and the curves' 38 forwards a map through ResNet-152 were ~2.5 of
    # this test's ~3 minutes: no share (tested on the embedded model: test_explain.py, test_cli.py)
    # and two-step curves (6 forwards a map) here
    result = _run(_args(real, method="gbackp", **{"explain.share": "false", "explain.steps": 2}), cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    run = [r for r in client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])][0]
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["count/questions"] == 4 and m["count/skipped_label_not_in_answer_vocab"] == 1
    assert m["count/skipped_constant_human_map"] == 3 and m["count/skipped_all_human_maps_constant"] == 1
    assert 0 <= m["model/vqa_accuracy"] <= 1 and m["count/rows"] >= 3
    assert run.data.tags["backbone_variant"] == "caffe"
    assert "resnet152" in run.data.tags["backbone"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"model.checkpoint": "/nowhere/2017-08-04_00.55.19.pth"},
            "model.checkpoint: /nowhere/2017-08-04_00.55.19.pth does not exist",
        ),
        (
            {"model.backbone_weights": "/nowhere/resnet152.pth"},
            "model.backbone_weights: /nowhere/resnet152.pth does not exist",
        ),
        ({"data.root": "/nowhere/vqa"}, "data.root: /nowhere/vqa is not a folder"),
        ({"data.root": None}, "data.root"),
    ],
)
def test_missing_inputs_fail_with_the_file_to_place_and_no_running_run(real, cli_env, tmp_path, change, message):
    result = _run(_args(real, **change), cli_env, tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert all(r.info.status != "RUNNING" for r in runs)
