"""Readers, answer normalisation, VQA accuracy, checkpoints and their clear errors."""

import json
from pathlib import Path

import pytest
import torch

from vqa_interp.data import (
    InputGeometry,
    load_examples,
    load_human_maps,
    normalize_answer,
    resolve_paths,
    tokenize_question,
    vqa_accuracy,
)
from vqa_interp.errors import CheckpointError, DataError
from vqa_interp.models import KazemiModel, KazemiNetwork, Net, SmallConvBackbone, load_model
from vqa_interp.models.checkpoint import read_checkpoint


def test_normalize_answer_like_the_official_evaluation():
    assert normalize_answer("Two") == "2"
    assert normalize_answer("a dog") == "dog"
    assert normalize_answer("Yes!") == "yes"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("the Red  ball.") == "red ball"


def test_vqa_accuracy_against_the_leave_one_out_definition():
    answers = ["2"] * 2 + ["3"] * 8
    # leave-one-out: leaving out a "2" -> 1 match -> 1/3 (2 subsets); leaving out a "3" -> 2 -> 2/3 (8)
    assert vqa_accuracy("two", answers) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_accuracy("3", answers) == pytest.approx(1.0)
    assert vqa_accuracy("4", answers) == 0.0


def test_tokenize_like_pytorch_vqa():
    assert tokenize_question("What color is the Cube?") == ["what", "color", "is", "the", "cube"]


def test_missing_files_name_the_key_the_path_and_the_source(tmp_path):
    with pytest.raises(DataError, match="data.root"):
        resolve_paths(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"data.questions.*OpenEnded_mscoco_val2014_questions.json.*visualqa"):
        resolve_paths(tmp_path)
    (tmp_path / "OpenEnded_mscoco_val2014_questions.json").write_text("{not json")
    with pytest.raises(DataError, match="data.annotations"):
        resolve_paths(tmp_path)
    (tmp_path / "mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": []}))
    (tmp_path / "val2014").mkdir()
    with pytest.raises(DataError, match="data.human_maps.*vqahat_val"):
        resolve_paths(tmp_path)
    (tmp_path / "vqahat_val").mkdir()
    paths = resolve_paths(tmp_path)
    with pytest.raises(DataError, match="not valid JSON"):
        load_examples(paths)


@pytest.mark.parametrize(
    "where,field,value",
    [
        ("questions", "question_id", "../../../../tmp/x"),
        ("annotations", "question_id", "../../../../tmp/x"),
        ("questions", "question_id", 1.5),
        ("questions", "image_id", "abc"),
    ],
)
def test_an_id_that_is_not_an_integer_is_a_data_error_naming_the_file_and_the_id(tmp_path, where, field, value):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from realdata import build_tree

    root = build_tree(tmp_path / "vqa")
    name = "OpenEnded_mscoco_val2014_questions.json" if where == "questions" else "mscoco_val2014_annotations.json"
    payload = json.loads((root / name).read_text())
    payload[where][0][field] = value
    (root / name).write_text(json.dumps(payload))
    with pytest.raises(DataError, match=f"data.{where}: .*{name} has an entry whose {field} is") as error:
        load_examples(resolve_paths(root))
    assert repr(value) in str(error.value)


def test_embedded_selection_limit_and_shards_partition(embedded_root):
    paths = resolve_paths(embedded_root)
    full = load_examples(paths, limit=30).examples
    shards = [load_examples(paths, limit=30, num_shards=3, shard=i).examples for i in range(3)]
    assert sorted(e.question_id for s in shards for e in s) == [e.question_id for e in full]
    assert [e.question_id for e in full] == sorted(e.question_id for e in full)
    maps = load_human_maps(full[0].human_map_paths, (128, 128), InputGeometry(64, 1.0))
    assert maps.shape == (3, 64, 64) and 0 <= maps.min() and maps.max() <= 1


class UnsafeToLoad:
    """A class instance in a checkpoint needs arbitrary code to unpickle."""


def _small_model():
    torch.manual_seed(0)
    backbone = SmallConvBackbone(8)
    net = Net(
        6,
        v_features=8,
        embedding_features=4,
        lstm_features=8,
        mid_features=4,
        glimpses=2,
        classifier_mid=8,
        max_answers=3,
        drop=0.0,
    )
    return KazemiNetwork(backbone, net).eval()


def test_checkpoint_roundtrip_in_the_pytorch_vqa_layout(tmp_path):
    model = _small_model()
    path = tmp_path / "model.pth"
    KazemiModel(
        model, {"what": 1, "is": 2, "a": 3, "b": 4, "c": 5}, {"yes": 0, "no": 1, "2": 2}, InputGeometry(16, 1.0)
    ).save(path, config={"backbone": {"type": "small_cnn"}})
    payload = read_checkpoint(path)
    assert set(payload) == {"name", "tracker", "config", "weights", "vocab", "eval"}
    assert all(k.startswith("module.") for k in payload["weights"])
    assert "module.text.embedding.weight" in payload["weights"] and "module.classifier.lin2.bias" in payload["weights"]
    loaded = load_model(path, {"type": "small_cnn", "channels": 8})
    x, q, q_len = torch.randn(2, 3, 16, 16), torch.tensor([[1, 2, 0], [3, 4, 5]]), torch.tensor([2, 3])
    assert torch.allclose(loaded.forward(x, (q, q_len)), model(x, q, q_len))
    assert loaded.answers == ["yes", "no", "2"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="model.checkpoint.*pytorch-vqa"):
        read_checkpoint(tmp_path / "missing.pth")

    torch.save({"weights": UnsafeToLoad(), "vocab": {}}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="refuses") as unsafe:
        read_checkpoint(tmp_path / "unsafe.pth")
    assert "weights_only=False" not in str(unsafe.value)  # never a suggestion to turn safety off
    (tmp_path / "random.pth").write_bytes(bytes(range(256)) * 8)  # random bytes: not a checkpoint
    with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
        read_checkpoint(tmp_path / "random.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "unsafe.pth").read_bytes()[:100])  # truncated zip
    with pytest.raises(CheckpointError, match="not a torch checkpoint|not a readable torch file"):
        read_checkpoint(tmp_path / "cut.pth")
    torch.save({"weights": {}}, tmp_path / "novocab.pth")
    with pytest.raises(CheckpointError, match="vocab"):
        read_checkpoint(tmp_path / "novocab.pth")


@pytest.mark.parametrize("kind", ["8bit", "16bit", "1bit", "palette", "rgba"])
def test_human_maps_are_read_at_their_bit_depth(kind, tmp_path):
    """A 16-bit VQA-HAT-style PNG used to be converted to 8 bits, saturating 99.98% of its pixels."""
    import numpy as np
    from PIL import Image

    from vqa_interp.data import InputGeometry, load_human_maps

    ramp = np.tile(np.linspace(0, 1, 32), (32, 1))
    if kind == "16bit":
        image = Image.fromarray((ramp * 65535).astype(np.uint16))
        assert image.mode.startswith("I")
    elif kind == "1bit":
        image = Image.fromarray(ramp > 0.5).convert("1")
        ramp = (ramp > 0.5).astype(float)
    else:
        image = Image.fromarray((ramp * 255).round().astype(np.uint8), mode="L")
        image = {"8bit": image, "palette": image.convert("P"), "rgba": image.convert("RGBA")}[kind]
    path = tmp_path / "1_1.png"
    image.save(path)
    loaded = load_human_maps([path], (32, 32), InputGeometry(32, 1.0))[0]
    assert loaded.shape == (32, 32)
    np.testing.assert_allclose(loaded, ramp, atol=1 / 255 + 1e-6)
    assert loaded.min() == pytest.approx(0, abs=1e-6) and loaded.max() == pytest.approx(1, abs=1e-6)
    if kind == "16bit":  # values 300..1000 are all 255 once converted to 8 bits: not constant at 16 bits
        from vqa_interp.data.vqa import is_constant_image

        Image.fromarray((300 + ramp * 700).astype(np.uint16)).save(tmp_path / "2_1.png")
        assert not is_constant_image(tmp_path / "2_1.png")
