"""The embedded models ship with the package: the default configs evaluate them (no training), they
are checked against their digests, a changed training config is not mistaken for them, and the
thread sizing that training uses reads the free cores."""

import json
import shutil

import pytest

from conftest import settings_with
from vqa_interp.errors import CheckpointError
from vqa_interp.models.shipped import SHIPPED_DIR, content_digest, ship, shipped_for, shipped_models, verify


def test_every_shipped_model_is_there_with_its_digest_and_retrain_command():
    models = shipped_models()
    assert {m.name for m in models} >= {"embedded", "embedded_vilt", "embedded_llava"}
    for model in models:
        verify(model)
        assert model.retrain.startswith(f"python -m vqa_interp.train model={model.name} ")
        assert "model.train.threads=" in model.retrain  # the same bits need the same thread count
        assert model.facts["final_val_accuracy"] > model.facts["val_question_prior_accuracy"]


@pytest.mark.parametrize("name", ["embedded", "embedded_vilt", "embedded_llava"])
def test_the_default_config_evaluates_the_shipped_model_without_training(name, tmp_path, home, capsys):
    from vqa_interp.data import dataset_for
    from vqa_interp.train import ensure_model, model_source_tags

    settings = settings_with(home, f"model={name}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    dataset = dataset_for(settings.data, settings.home)
    path = ensure_model(settings, dataset)
    assert SHIPPED_DIR in path.resolve().parents
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"model={name}: the shipped model {path.name} (sha256 ") and "\n" not in line
    tags = model_source_tags(path)
    assert tags["model_source"] == "shipped" and tags["shipped_digest"] == content_digest(path)
    assert not (tmp_path / "mlflow.db").exists()  # no training run was opened


def test_a_changed_training_config_is_not_the_shipped_model(home):
    from vqa_interp.data import dataset_for
    from vqa_interp.models.train_embedded import embedded_checkpoint_path
    from vqa_interp.models.training import training_signature

    default = settings_with(home)
    dataset = dataset_for(default.data, default.home)
    assert shipped_for(training_signature(default.model, dataset)[0]) is not None
    changed = settings_with(home, "model.train.epochs=3")
    assert shipped_for(training_signature(changed.model, dataset)[0]) is None
    # the thread count is how a model was trained, not which model: same signature
    threads = settings_with(home, "model.train.threads=1")
    assert training_signature(threads.model, dataset) == training_signature(default.model, dataset)
    assert embedded_checkpoint_path(changed.model, home, dataset).name.startswith("embedded-")


def test_a_damaged_or_missing_shipped_copy_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, folder)
    cnn = next(m for m in shipped_models(folder) if m.name == "embedded")
    data = bytearray(cnn.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cnn.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not .* as its manifest says.*python -m vqa_interp.train model=embedded"):
        shipped_for(cnn.signature, folder)
    vilt = next(m for m in shipped_models(folder) if m.name == "embedded_vilt")
    shutil.rmtree(vilt.path)
    with pytest.raises(CheckpointError, match="missing"):
        shipped_for(vilt.signature, folder)


def test_ship_records_a_model_and_replaces_its_earlier_entry(tmp_path):
    folder = tmp_path / "shipped"
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    first = ship(
        model_dir,
        name="x",
        kind="vilt",
        signature="aaa",
        signature_fields={"a": 1},
        retrain="r",
        facts={"final_val_accuracy": 0.5},
        folder=folder,
    )
    (model_dir / "config.json").write_text('{"b": 2}')
    second = ship(
        model_dir,
        name="x",
        kind="vilt",
        signature="bbb",
        signature_fields={"a": 2},
        retrain="r",
        facts={},
        folder=folder,
    )
    assert not first.path.exists() and second.path.is_dir() and first.digest != second.digest
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [e["signature"] for e in manifest["models"]] == ["bbb"]
    assert shipped_for("bbb", folder).digest == content_digest(second.path)


def test_folder_digest_covers_names_and_contents(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "x").write_text("1")
    before = content_digest(a)
    (a / "x").rename(a / "y")
    assert content_digest(a) != before
    (a / "y").write_text("2")
    assert content_digest(a) != before


# ------------------------------------------------------------------ thread sizing
def test_free_cores_counts_cores_others_keep_busy(monkeypatch):
    from vqa_interp.util import cores

    samples = iter([{0: (0, 0), 1: (0, 0)}, {0: (100, 100), 1: (5, 100)}])  # cpu 0 busy, cpu 1 idle
    monkeypatch.setattr(cores, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(cores, "_own_cpu_seconds", lambda: 0.0)
    monkeypatch.setattr(cores.time, "sleep", lambda s: None)
    assert cores.free_cores(cores=[0, 1]) == 1
    samples = iter([{0: (0, 0), 1: (0, 0)}, {0: (10, 100), 1: (5, 100)}])  # both nearly idle
    monkeypatch.setattr(cores, "_cpu_times", lambda: next(samples))
    assert cores.free_cores(cores=[0, 1]) == 2
    samples = iter([{0: (0, 0), 1: (0, 0)}, {0: (100, 100), 1: (100, 100)}])  # both taken: still one thread
    monkeypatch.setattr(cores, "_cpu_times", lambda: next(samples))
    assert cores.free_cores(cores=[0, 1]) == 1


def test_free_cores_does_not_count_this_process_as_another_program(monkeypatch):
    from vqa_interp.util import cores

    ticks = cores.os.sysconf("SC_CLK_TCK")
    samples = iter([{0: (0, 0), 1: (0, 0)}, {0: (ticks, ticks), 1: (0, ticks)}])  # cpu 0 busy with us
    own = iter([0.0, 1.0])
    monkeypatch.setattr(cores, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(cores, "_own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(cores.time, "sleep", lambda s: None)
    assert cores.free_cores(cores=[0, 1]) == 2


def test_free_cores_on_this_machine_is_within_the_affinity_mask():
    from vqa_interp.util.cores import free_cores, usable_cores

    assert 1 <= free_cores(0.05) <= len(usable_cores())


def test_train_threads_option_is_checked(home):
    from vqa_interp.errors import ConfigError
    from vqa_interp.models.registry import check_model_settings

    for bad in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match="model.train.threads"):
            check_model_settings(settings_with(home, f"model.train.threads={bad}").model)
    check_model_settings(settings_with(home, "model.train.threads=1").model)


def test_a_checkpoint_with_a_flipped_byte_inside_a_tensor_is_refused_before_it_loads(tmp_path):
    """torch.load reads a zip member whose CRC no longer matches: the zip check refuses it, naming the
    file and the member."""
    import zipfile

    import torch

    from vqa_interp.errors import CheckpointError
    from vqa_interp.models.checkpoint import read_checkpoint, save_checkpoint

    path = tmp_path / "model.pth"
    save_checkpoint(
        path,
        {"module.w": torch.arange(4096, dtype=torch.float32)},
        question_vocab={"a": 1},
        answer_vocab={"x": 0},
        config={},
    )
    assert read_checkpoint(path)["weights"]["module.w"].sum() > 0
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename)
    raw = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + 1000
    raw[start : start + 64] = bytes(64)  # 64 bytes zeroed inside the tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model.checkpoint: .*model.pth is damaged: .*data/\d+ fails its CRC"):
        read_checkpoint(path)


def test_a_model_trained_here_that_changed_on_disk_is_refused_with_the_fix(tmp_path):
    from vqa_interp.errors import CheckpointError
    from vqa_interp.models.checkpoint import record_digest, verify_digest

    folder = tmp_path / "embedded_vilt-abc"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    record_digest(folder)
    verify_digest(folder, "model=embedded_vilt: the model trained here,")  # unchanged: accepted
    (folder / "model.safetensors").write_bytes(b"weightz" * 100)
    with pytest.raises(
        CheckpointError,
        match=r"does not match the digest recorded when it was made .* Delete .*"
        r"embedded_vilt-abc .* to train it again",
    ):
        verify_digest(folder, "model=embedded_vilt: the model trained here,")
