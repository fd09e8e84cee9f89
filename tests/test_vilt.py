"""ViLT behind the model interface: the same logits as Hugging Face's forward, patches in a fixed
order, rollout and Chefer relevancy equal to implementations written here from ``output_attentions``,
padding invariance, a save_pretrained folder round trip, and methods refused where they mean nothing."""

import numpy as np
import pytest
import torch

from vqa_interp.attribution import make_attributor
from vqa_interp.attribution.transformer_methods import on_grid, relevancy, relevancy_row, rollout, rollout_row
from vqa_interp.data.images import InputGeometry
from vqa_interp.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")


def tiny_vilt(seed: int = 0, size: int = 64, patch: int = 16):
    from transformers import BertTokenizer, ViltConfig, ViltForQuestionAnswering

    from vqa_interp.models.vilt import SPECIAL_TOKENS, ViltModel, ViltNet

    torch.manual_seed(seed)
    words = ["what", "color", "is", "the", "cube", "how", "many", "?", "red", "there", "are"]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate([*SPECIAL_TOKENS, *words])}, do_lower_case=True)
    answers = ["red", "blue", "2", "yes"]
    config = ViltConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(words),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=size,
        patch_size=patch,
        max_position_embeddings=16,
        num_labels=len(answers),
        id2label=dict(enumerate(answers)),
        label2id={a: i for i, a in enumerate(answers)},
        max_image_length=-1,
        attn_implementation="eager",
    )
    hf = ViltForQuestionAnswering(config).eval()
    return ViltModel(ViltNet(hf).eval(), tokenizer, answers, InputGeometry(size, 1.0), max_tokens=12)


QUESTIONS = ["what color is the cube?", "how many cubes are there?", "is the cube red?"]


def _inputs(model, seed: int = 1):
    torch.manual_seed(seed)
    pixels = torch.randn(len(QUESTIONS), 3, model.geometry.size, model.geometry.size)
    return pixels, model.encode(QUESTIONS)


def _hf_forward(model, pixels, question, seed: int):
    """Hugging Face's own forward (patches in visual_embed's random order) and that order."""
    hf, net = model.module.hf, model.module
    x = pixels * net.scale + net.shift
    mask = torch.ones(x.shape[0], x.shape[2], x.shape[3], dtype=torch.long)
    torch.manual_seed(seed)
    _, _, (patch_index, _) = hf.vilt.embeddings.visual_embed(x, mask, max_image_length=-1)
    torch.manual_seed(seed)
    out = hf(
        input_ids=question[0],
        attention_mask=question[1],
        token_type_ids=question[2],
        pixel_values=x,
        pixel_mask=mask,
        output_attentions=True,
    )
    h, w = net.grid(pixels)
    order = (patch_index[..., 0] * w + patch_index[..., 1]).numpy()  # [B, N]: grid cell of each column
    return out, order


def _unpermute(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``[B, N]`` in Hugging Face's column order -> row-major grid order."""
    out = np.empty_like(values)
    for b in range(len(values)):
        out[b, order[b]] = values[b]
    return out


def test_logits_equal_hugging_faces_and_use_no_random_numbers():
    model = tiny_vilt()
    pixels, question = _inputs(model)
    state = torch.get_rng_state()
    with torch.no_grad():
        ours = model.forward(pixels, question)
    assert torch.equal(state, torch.get_rng_state())  # visual_embed's multinomial is not called
    out, _ = _hf_forward(model, pixels, question, seed=3)
    torch.testing.assert_close(ours, out.logits, atol=1e-5, rtol=1e-5)


def test_rollout_and_chefer_equal_implementations_from_output_attentions():
    """Written here from Hugging Face's attentions (their columns put back in grid order), in NumPy."""
    model = tiny_vilt(seed=2)
    pixels, question = _inputs(model, seed=4)
    out, order = _hf_forward(model, pixels, question, seed=5)
    length = question[0].shape[1]
    attentions = [a.detach().numpy().astype(np.float64) for a in out.attentions]
    n_tokens = attentions[0].shape[-1]
    expected = np.repeat(np.eye(n_tokens)[None], len(pixels), 0)
    for a in attentions:
        mixed = a.mean(axis=1) + np.eye(n_tokens)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        expected = mixed @ expected
    expected_rollout = _unpermute(expected[:, 0, length + 1 :], order)
    targets = torch.tensor([0, 1, 2])
    gradients = torch.autograd.grad(out.logits.gather(1, targets[:, None]).sum(), out.attentions)
    relevance = np.repeat(np.eye(n_tokens)[None], len(pixels), 0)
    for a, g in zip(attentions, gradients):
        relevance = relevance + np.maximum(g.numpy() * a, 0).mean(axis=1) @ relevance
    expected_chefer = _unpermute(relevance[:, 0, length + 1 :], order)
    with torch.no_grad():
        _, ours = model.attentions(pixels, question)
    row, columns, grid = model.token_layout(pixels, question)
    np.testing.assert_allclose(rollout(ours)[:, row, columns].numpy(), expected_rollout, rtol=1e-4, atol=1e-6)
    with torch.enable_grad():
        logits, live = model.attentions(pixels, question)
        ours_grad = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), live)
    chefer = relevancy([a.detach() for a in live], list(ours_grad))[:, row, columns].numpy()
    np.testing.assert_allclose(chefer, expected_chefer, rtol=1e-4, atol=1e-6)
    # the methods' one-row products (from the top) equal those rows of the full products
    np.testing.assert_allclose(rollout_row(ours, row)[:, columns].numpy(), expected_rollout, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        relevancy_row([a.detach() for a in live], list(ours_grad), row)[:, columns].numpy(),
        expected_chefer,
        rtol=1e-4,
        atol=1e-6,
    )
    # and lay those values on the patch grid, upsampled to the input
    for method, expected_values in (("rollout", expected_rollout), ("chefer", expected_chefer)):
        maps = make_attributor(model, method, {})(pixels, targets, question)
        assert maps.shape == (3, 1, 64, 64)
        torch.testing.assert_close(
            maps, on_grid(torch.from_numpy(expected_values).float(), grid, (64, 64)), rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("method", ["attention", "rollout", "chefer", "gradcam", "saliency", "ig"])
def test_maps_are_the_same_twice_and_under_another_global_seed(method):
    model = tiny_vilt(seed=6)
    pixels, question = _inputs(model, seed=7)
    targets = torch.tensor([1, 0, 3])
    options = {"n_steps": 8, "internal_batch_size": 8} if method == "ig" else {}
    attribute = make_attributor(model, method, options)
    maps = []
    for seed in (0, 123):
        torch.manual_seed(seed)
        out = attribute(pixels.clone().requires_grad_(True), targets, question)
        maps.append((out[0] if isinstance(out, tuple) else out).detach())
    torch.testing.assert_close(maps[0], maps[1], atol=1e-6, rtol=1e-5)
    assert maps[0].shape[-2:] == (64, 64) and torch.isfinite(maps[0]).all()


def test_padding_the_question_changes_neither_logits_nor_maps():
    model = tiny_vilt(seed=8)
    pixels, _ = _inputs(model, seed=9)
    short = model.encode(QUESTIONS)
    long = model.encode(QUESTIONS, pad_to=model.max_tokens)
    assert long[0].shape[1] > short[0].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model.forward(pixels, short), model.forward(pixels, long), atol=1e-5, rtol=1e-4)
    targets = torch.tensor([0, 1, 2])
    for method in ("rollout", "chefer"):
        a = make_attributor(model, method, {})(pixels, targets, short)
        b = make_attributor(model, method, {})(pixels, targets, long)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_a_save_pretrained_folder_loads_offline_with_its_answers(tmp_path):
    from vqa_interp.models.vilt import load_folder

    model = tiny_vilt(seed=10)
    model.save(tmp_path / "vilt", config={})
    loaded = load_folder(tmp_path / "vilt", InputGeometry(64, 1.0), max_tokens=12)
    pixels, question = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward(pixels, loaded.encode(QUESTIONS)), model.forward(pixels, question))
    assert loaded.answers == ["red", "blue", "2", "yes"] and loaded.tokens("What color?")[:3] == [
        "[CLS]",
        "what",
        "color",
    ]
    for name in ("vocab.txt", "tokenizer.json"):  # transformers 5 writes tokenizer.json
        (tmp_path / "vilt" / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="lacks \\['vocab.txt'\\]"):
        load_folder(tmp_path / "vilt", InputGeometry(64, 1.0))
    with pytest.raises(CheckpointError, match="is not a folder"):
        load_folder(tmp_path / "nowhere", InputGeometry(64, 1.0))


def test_methods_are_refused_where_the_model_lacks_what_they_need():
    from vqa_interp.attribution import METHODS
    from vqa_interp.models.registry import check_method, model_kind

    for method in ("attention", "rollout", "chefer"):
        with pytest.raises(ConfigError, match=f"method={method} needs the model's attentions"):
            check_method(model_kind("kazemi"), method, METHODS[method].needs)
    for method in ("gbackp", "deconv", "ggradcam"):
        with pytest.raises(ConfigError, match="relu_units"):
            check_method(model_kind("vilt"), method, METHODS[method].needs)
    check_method(model_kind("vilt"), "gradcam", METHODS["gradcam"].needs)


def test_grad_cam_reads_the_patch_grid_at_the_last_blocks_input():
    """The head reads token 0: at the last block's output the patches have no gradient; at its
    input, laid out as [B, D, h, w], they do."""
    model = tiny_vilt(seed=11)
    pixels, question = _inputs(model)
    maps = make_attributor(model, "gradcam", {"layer": "cam"})(
        pixels.requires_grad_(True), torch.tensor([0, 1, 2]), question
    )
    assert maps.shape == (3, 1, 64, 64) and maps.abs().sum() > 0


@pytest.mark.slow
def test_embedded_vilt_runs_end_to_end_with_every_table_the_cnn_has(cli_env, tmp_path):
    """``model=embedded_vilt method=rollout`` (trained on first use): floors and ceiling, the
    analysis, the explain stage's tables; and a method it cannot serve refused in one line."""
    import subprocess

    from mlflow.tracking import MlflowClient

    from conftest import EVERY_MODEL_TABLES, python

    result = subprocess.run(
        [python(), "-m", "vqa_interp.run", "model=embedded_vilt", "method=rollout", "+experiment=smoke"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Between floors and ceiling" in result.stdout and "Faithfulness:" in result.stdout
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["model_kind"] == "vilt"
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert EVERY_MODEL_TABLES <= tables
    assert "norm/rank_corr" in run.data.metrics
    refused = subprocess.run(
        [python(), "-m", "vqa_interp.run", "model=embedded_vilt", "method=gbackp"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "relu_units" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_a_model_by_method_sweep_compares_models_on_the_same_questions(cli_env, tmp_path):
    """``-m model=embedded,embedded_vilt method=saliency,rollout``: the CNN cannot serve rollout, so
    that pair is listed as not applicable (not a failed child); saliency's two models are compared
    question by question."""
    import subprocess

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from conftest import NO_EXPLAIN, python

    result = subprocess.run(
        [
            python(),
            "-m",
            "vqa_interp.run",
            "-m",
            "model=embedded,embedded_vilt",
            "method=saliency,rollout",
            "+experiment=smoke",
            *NO_EXPLAIN,
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("run_kind") == "sweep")
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    assert (
        parent.data.metrics["count/children_failed"] == 0 and parent.data.metrics["count/children_not_applicable"] == 1
    )
    skipped = pd.read_csv(client.download_artifacts(parent.info.run_id, "tables/not_applicable.csv", str(tmp_path)))
    assert "model=embedded" in skipped["overrides"].iloc[0] and "method=rollout" in skipped["overrides"].iloc[0]
    pairs = pd.read_csv(client.download_artifacts(parent.info.run_id, "tables/model_pairs.csv", str(tmp_path)))
    assert set(pairs["test"]) == {"sign_flip"} and set(pairs["target"]) == {"label", "prediction"}
    assert set(pairs["method"]) == {"saliency"} and set(pairs["model_a"]) | set(pairs["model_b"]) == {
        "embedded",
        "embedded_vilt",
    }
    assert (pairs["n"] > 0).all()
    assert "Models compared on the same questions, target = label" in result.stdout + result.stderr
    # the methods are ranked within each model, never across them
    assert "Method ranking, model=embedded_vilt" in result.stdout + result.stderr
    assert "Not applicable" in result.stdout + result.stderr


@pytest.mark.parametrize("method", ["rollout", "chefer", "saliency"])
def test_sanity_checks_randomise_every_vilt_parameter_and_the_maps_follow(method):
    """Cascading randomisation through ``blocks()`` (classifier, encoder blocks from the top, the
    embeddings) leaves no parameter of ViLT as it was (the position embeddings and the image [CLS]
    token included), and the method's maps fall from Spearman 1 to under the check's threshold."""
    from vqa_interp.attribution.sanity import FAIL_THRESHOLD, randomise, sanity_checks, verdict

    model = tiny_vilt(seed=12)
    twin = tiny_vilt(seed=12)
    for i, (_, block) in enumerate(twin.blocks()):
        randomise(block, i)
    for (name, before), after in zip(model.module.named_parameters(), twin.module.parameters()):
        if before.numel() > 1 and before.std() > 0:  # LayerNorm's ones and zero biases are their own reset
            assert not torch.equal(before, after), f"{name} was not re-initialised"
    pixels, question = _inputs(model, seed=13)
    table = sanity_checks(model, method, {}, pixels, question, batch_size=2)
    cascade = table[(table["mode"] == "cascading") & (table["similarity"] == "spearman_abs")].sort_values("step")
    assert list(cascade["block"]) == [
        "none",
        "classifier",
        "encoder.layer2",
        "encoder.layer1",
        "encoder.layer0",
        "embeddings",
    ]
    assert cascade["mean"].iloc[0] == pytest.approx(1.0)
    passed, final = verdict(table)
    assert passed and final <= FAIL_THRESHOLD and final < cascade["mean"].iloc[1:3].max()
