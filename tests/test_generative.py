"""Generative VLMs (``model=hf_vlm``): a tiny random-weight LLaVA saved with ``save_pretrained`` (a real
word-level tokenizer, a real LlavaProcessor with a chat template) loads offline; the number a method
explains is the teacher-forced answer log-probability (checked against Hugging Face's own forward on
the processor's pixels); transformer-native maps equal implementations written here from
``output_attentions``; maps do not depend on the global seed or on the batch; families the tool cannot
build a pixel input for are refused in one line."""

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import EVERY_MODEL_TABLES, FAST_ARGS, NO_EXPLAIN, python
from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD, InputGeometry
from vqa_interp.errors import CheckpointError, ConfigError

QUESTIONS = ["What color is it?", "How many red balls are there?", "Is there a cube?"]
ANSWERS = ["red", "2", "yes", "no", "blue", "green"]
SIZE = 32


def build_tiny_llava(folder, seed: int = 0):
    """A random-weight LLaVA and its processor, saved with ``save_pretrained`` in ``folder``."""
    from vqa_interp.models.embedded_llava import build_llava, build_processor

    words = sorted({w for q in QUESTIONS for w in q.lower().replace("?", " ").split()} | set(ANSWERS))
    processor = build_processor(words, SIZE, 8)
    torch.manual_seed(seed)
    hf = build_llava(
        processor,
        {
            "patch_size": 8,
            "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
            "text": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 4,
            },
        },
        SIZE,
    )
    hf.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="module")
def model(llava_folder):
    from vqa_interp.models.hf_vlm import load_folder

    return load_folder(llava_folder, InputGeometry(SIZE, 1.0)).eval().frozen()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _map(raw) -> torch.Tensor:
    """A method's map (IG also returns its completeness error)."""
    return (raw[0] if isinstance(raw, tuple) else raw).detach()


def _pixels(images: np.ndarray) -> torch.Tensor:
    """The tool's input of uint8 images: ImageNet-normalised ``[B, 3, S, S]``."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]


def test_a_save_pretrained_folder_loads_offline_as_a_generative_model(model, llava_folder):
    assert model.generative and model.kind == "hf_vlm" and model.module.config._attn_implementation == "eager"
    assert model.checkpoint_digest and model.family.name == "llava"
    assert not any(p.requires_grad for p in model.module.parameters())


def test_the_target_score_is_hugging_faces_teacher_forced_answer_log_probability(model):
    """Independent: the processor's own pixels and ids, Hugging Face's forward, the answer's tokens and
    the end-of-sequence token gathered from its log-softmax."""
    images = _images(3)
    answers = ["red", "2", "no"]
    ours = model.target_scores(_pixels(images), model.encode(QUESTIONS), model.encode_targets(answers))
    tokenizer = model.processor.tokenizer
    for i, (question, answer) in enumerate(zip(QUESTIONS, answers)):
        prompt = model.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
            add_generation_prompt=True,
        )
        inputs = model.processor(images=images[i], text=prompt, return_tensors="pt")
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.cat([inputs["input_ids"], torch.tensor([answer_ids])], dim=1)
        with torch.no_grad():
            logits = model.module(input_ids=ids, pixel_values=inputs["pixel_values"]).logits[0]
        start = inputs["input_ids"].shape[1]
        expected = sum(torch.log_softmax(logits[start - 1 + j], -1)[t] for j, t in enumerate(answer_ids))
        assert float(ours[i]) == pytest.approx(float(expected), abs=1e-4)


def test_the_score_is_differentiable_with_respect_to_the_pixels(model):
    pixels = _pixels(_images(2)).requires_grad_(True)
    score = model.target_scores(pixels, model.encode(QUESTIONS[:2]), model.encode_targets(["red", "2"])).sum()
    (grad,) = torch.autograd.grad(score, pixels)
    assert grad.abs().sum() > 0


def test_rollout_and_chefer_equal_implementations_from_output_attentions(model):
    """Written here from Hugging Face's LM attentions on one example: rollout and relevancy over the
    layers, the rows that predict the answer's tokens averaged, the image-token columns."""
    from vqa_interp.attribution import make_attributor
    from vqa_interp.attribution.transformer_methods import on_grid

    images = _images(1, seed=3)
    question, target = model.encode(QUESTIONS[:1]), model.encode_targets(["blue"])
    ids = torch.cat([question[0], target[0]], dim=1)
    pixel_values = model.image_inputs(_pixels(images))["pixel_values"].detach().requires_grad_(True)  # in the graph
    out = model.module(input_ids=ids, pixel_values=pixel_values, output_attentions=True)
    attentions = [a.detach().numpy().astype(np.float64)[0] for a in out.attentions]
    n = ids.shape[1]
    length, n_answer = question[0].shape[1], target[0].shape[1]
    rows = list(range(length - 1, length - 1 + n_answer))
    image = (ids[0] == model.image_token_id).nonzero()[:, 0].numpy()
    expected = np.eye(n)
    for a in attentions:
        mixed = a.mean(axis=0) + np.eye(n)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        expected = mixed @ expected
    expected_rollout = expected[rows].mean(axis=0)[image]
    logits = out.logits[0].float()
    score = sum(torch.log_softmax(logits[length - 1 + j], -1)[t] for j, t in enumerate(target[0][0].tolist()))
    gradients = torch.autograd.grad(score, out.attentions)
    relevance = np.eye(n)
    for a, g in zip(attentions, gradients):
        relevance = relevance + np.maximum(g[0].numpy() * a, 0).mean(axis=0) @ relevance
    expected_chefer = relevance[rows].mean(axis=0)[image]
    side = int(len(image) ** 0.5)
    pixels = _pixels(images)
    for method, values in (("rollout", expected_rollout), ("chefer", expected_chefer)):
        ours = make_attributor(model, method, {})(pixels, target, question)
        grid = on_grid(torch.tensor(values[None], dtype=torch.float32), (side, side), (SIZE, SIZE))
        np.testing.assert_allclose(ours.numpy(), grid.numpy(), rtol=1e-4, atol=1e-6)


def test_gradcam_and_one_layers_attention_equal_implementations_from_hugging_faces_outputs(model):
    """Grad-CAM over the image tokens of the middle LM layer's output (``output_hidden_states``), and
    ``attention`` at ``method.layer=0``, written here for one example."""
    from vqa_interp.attribution import make_attributor
    from vqa_interp.attribution.transformer_methods import on_grid

    images = _images(1, seed=4)
    question, target = model.encode(QUESTIONS[1:2]), model.encode_targets(["red"])
    ids = torch.cat([question[0], target[0]], dim=1)
    pixel_values = model.image_inputs(_pixels(images))["pixel_values"].detach().requires_grad_(True)
    out = model.module(input_ids=ids, pixel_values=pixel_values, output_attentions=True, output_hidden_states=True)
    length = question[0].shape[1]
    logits = out.logits[0].float()
    score = sum(torch.log_softmax(logits[length - 1 + j], -1)[t] for j, t in enumerate(target[0][0].tolist()))
    middle = (model.module.config.text_config.num_hidden_layers - 1) // 2
    states = out.hidden_states[middle + 1]  # [0] holds the embeddings, [l + 1] layer l's output
    (gradient,) = torch.autograd.grad(score, states, retain_graph=True)
    image = (ids[0] == model.image_token_id).nonzero()[:, 0]
    h, g = states[0, image].detach().numpy(), gradient[0, image].numpy()
    expected_cam = np.maximum(h @ g.mean(axis=0), 0)
    rows = list(range(length - 1, length - 1 + target[0].shape[1]))
    first = out.attentions[0][0].detach().numpy().mean(axis=0)
    expected_attention = first[rows].mean(axis=0)[image.numpy()]
    side = int(len(image) ** 0.5)
    pixels = _pixels(images)
    for method, options, values in (("gradcam", {}, expected_cam), ("attention", {"layer": 0}, expected_attention)):
        ours = make_attributor(model, method, options)(pixels, target, question)
        grid = on_grid(torch.tensor(values[None], dtype=torch.float32), (side, side), (SIZE, SIZE))
        assert float(grid.abs().max()) > 0
        np.testing.assert_allclose(ours.detach().numpy(), grid.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match=r"method.layer=5 is out of range: the model has 2 attention layers"):
        make_attributor(model, "attention", {"layer": 5})(pixels, target, question)
    with pytest.raises(ConfigError, match=r"method.layer='lm.layer9' is not a layer of this language model"):
        make_attributor(model, "gradcam", {"layer": "lm.layer9"})


@pytest.mark.parametrize("method", ["saliency", "ig", "attention", "rollout", "chefer", "gradcam"])
def test_maps_are_the_same_twice_under_another_seed_and_alone_or_in_a_padded_batch(model, method):
    from vqa_interp.attribution import make_attributor
    from vqa_interp.models.base import take

    options = {"n_steps": 8, "internal_batch_size": 8} if method == "ig" else {}
    attribute = make_attributor(model, method, options)
    pixels = _pixels(_images(3, seed=1))
    question = model.encode(QUESTIONS)  # prompts of different lengths: padded
    target = model.encode_targets(["red", "2", "yes please"])  # answers of different lengths: padded
    assert (question[1] == 0).any() and (target[1] == 0).any()

    def run(x, t, q):
        raw = attribute(x.clone().requires_grad_(True), t, q)
        return (raw[0] if isinstance(raw, tuple) else raw).detach()  # IG also returns its completeness error

    def maps(torch_seed):
        torch.manual_seed(torch_seed)
        return run(pixels, target, question)

    first, again, reseeded = maps(0), maps(0), maps(123)
    assert torch.equal(first, again) and torch.equal(first, reseeded)
    for i in range(3):
        alone = run(
            pixels[i : i + 1], model.encode_targets([["red", "2", "yes please"][i]]), model.encode(QUESTIONS[i : i + 1])
        )
        scale = float(first[i].abs().max())
        assert scale > 0
        np.testing.assert_allclose(alone[0].numpy(), first[i].numpy(), rtol=1e-4, atol=1e-5 * scale)
    assert take(question, [0])[0].shape[1] == question[0].shape[1]


def test_answers_are_normalised_and_confidence_is_over_the_candidates(model):
    from vqa_interp.models.generative import GenerativeVlm

    pixels, question = _pixels(_images(2)), model.encode(QUESTIONS[:2])
    chooser = GenerativeVlm(model.module, model.processor, model.family, model.geometry, answer_mode="multiple_choice")
    answers, confidence = chooser.predict_answers(pixels, question, [["Two", "Red"], ["Two", "Red"]])
    assert set(answers) <= {"2", "red"}  # "Two" -> "2", as the VQA evaluation
    scores = chooser._candidate_scores(pixels, question, [["2", "red"], ["2", "red"]])
    for answer, p, s in zip(answers, confidence, scores):
        expected = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        assert float(p) == pytest.approx(float(expected[["2", "red"].index(answer)]), rel=1e-5)
    generated, _ = model.predict_answers(pixels, question, None)
    from vqa_interp.data.answers import normalize_answer

    assert all(a == normalize_answer(a) for a in generated)


def test_the_sanity_check_similarity_falls_under_randomisation(model):
    from vqa_interp.attribution.sanity import sanity_checks

    pixels = _pixels(_images(4, seed=5))
    question = model.encode([QUESTIONS[i % 3] for i in range(4)])
    table = sanity_checks(model, "saliency", {}, pixels, question, batch_size=4, seed=0, modes=("cascading",))
    curve = table[table["similarity"] == "spearman_abs"].sort_values("step")
    assert list(curve["block"])[:2] == ["none", "lm_head"] and list(curve["block"])[-1] == "vision_tower"
    assert curve["mean"].iloc[0] == pytest.approx(1.0) and curve["mean"].iloc[-1] < 0.9


def test_missing_files_and_unsupported_families_are_one_line(tmp_path, llava_folder):
    from vqa_interp.models.hf_vlm import check_folder

    with pytest.raises(CheckpointError, match="is not a folder"):
        check_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        CheckpointError,
        match=r"lacks \['config.json', 'model.safetensors', 'tokenizer.json', "
        r"'processor_config.json'\]",
    ):
        check_folder(empty)
    for family, why in (("llava_next", "anyres"), ("blip", "cannot build its pixel input")):
        other = tmp_path / family
        other.mkdir()
        for name in ("model.safetensors", "tokenizer.json", "processor_config.json"):
            (other / name).write_text("{}")
        (other / "config.json").write_text(json.dumps({"model_type": family}))
        with pytest.raises(CheckpointError, match=why):
            check_folder(other)


def test_bad_options_are_refused_before_any_work(home):
    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.models.registry import check_model_settings
    from vqa_interp.settings import from_config

    for override, key in (("model.answer_mode=vote", "model.answer_mode"), ("model.prompt=hello", "model.prompt")):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            settings = from_config(compose("config", overrides=[f"paths.home={home}", "model=hf_vlm", override]))
        with pytest.raises(ConfigError, match=key):
            check_model_settings(settings.model)


@pytest.mark.slow
def test_hf_vlm_runs_end_to_end_on_a_save_pretrained_folder(cli_env, tmp_path, llava_folder):
    """``model=hf_vlm model.pretrained=DIR``: predictions, rollout maps, scores with floors and ceiling,
    the summary; a missing folder is one line before any run opens."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    args = [
        python(),
        "-m",
        "vqa_interp.run",
        "model=hf_vlm",
        f"model.pretrained={llava_folder}",
        "model.input.size=32",
        "method=rollout",
        *FAST_ARGS,
        *NO_EXPLAIN,
    ]
    result = subprocess.run(args, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["model_kind"] == "hf_vlm"
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_example.csv", str(tmp_path)))
    assert len(table) >= 10 and table["rank_corr"].notna().all() and table["confidence"].between(0, 1).all()
    assert "Headline" in result.stdout
    missing = subprocess.run(
        [*args[:4], f"model.pretrained={tmp_path / 'nowhere'}", "method=rollout"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "model.pretrained" in missing.stderr and "Traceback" not in missing.stderr


def test_question_words_image_share_and_faithfulness_run_on_a_generative_model(model):
    """Token attributions land on the question's own words inside the prompt, the image's share is a
    fraction, and the deletion/insertion curves read the answer's probability."""
    from vqa_interp.attribution.faithfulness import deletion_insertion
    from vqa_interp.attribution.question import image_question_share, token_attributions

    pixels, question = _pixels(_images(3, seed=2)), model.encode(QUESTIONS)
    target = model.encode_targets(["red", "2", "yes"])
    scores, error = token_attributions(model, pixels, question, target, n_steps=8)
    mask = model.token_mask(question)
    assert [int(m.sum()) for m in mask] == [len(model.tokens(q)) for q in QUESTIONS]
    assert torch.all(scores[~mask] == 0) and torch.all(scores[mask].abs().sum() > 0)
    assert [model.tokens(q)[-1] for q in QUESTIONS] == ["?", "?", "?"]
    share, _ = image_question_share(model, pixels, question, target, n_steps=8)
    assert torch.all((share > 0) & (share < 1))
    maps = np.random.default_rng(0).random((3, SIZE, SIZE))
    curves = deletion_insertion(model, pixels, maps, question, target, steps=4)
    probabilities = model.target_probabilities(pixels, question, target).numpy()
    np.testing.assert_allclose(curves["deletion"][:, 0], probabilities, rtol=1e-5)
    assert np.all((curves["deletion_auc"] >= 0) & (curves["deletion_auc"] <= 1))


def test_greedy_answers_do_not_depend_on_the_batch(model):
    pixels, question = _pixels(_images(3, seed=4)), model.encode(QUESTIONS)
    together = model.generate_answers(pixels, question)
    alone = [model.generate_answers(pixels[i : i + 1], model.encode(QUESTIONS[i : i + 1]))[0] for i in range(3)]
    assert together == alone


# ------------------------------------------------------------------ Qwen2-VL
def build_tiny_qwen2_vl(folder, seed: int = 0):
    """A random-weight Qwen2-VL (2 vision blocks, 2 LM layers, hidden 32) and its processor (a real
    word-level tokenizer with Qwen's special tokens, a chat template), saved with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    special = [
        "<pad>",
        "<unk>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    words = sorted({w for q in QUESTIONS for w in q.lower().replace("?", " ").split()} | set(ANSWERS))
    vocab = {w: i for i, w in enumerate([*special, "user", "assistant", ":", "?", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == "
        "'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
        "<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant :{% endif %}"
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56 * 4),
        tokenizer=fast,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=template,
    )
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "vocab_size": len(vocab),
            "bos_token_id": None,
            "eos_token_id": vocab["<|im_end|>"],
            "pad_token_id": vocab["<pad>"],
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
    )
    torch.manual_seed(seed)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


QWEN_SIZE = 56  # 4x4 patches of 14 px, merged 2x2: a 2x2 grid of image tokens


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from vqa_interp.models.hf_vlm import load_folder

    folder = build_tiny_qwen2_vl(tmp_path_factory.mktemp("qwen"))
    return load_folder(folder, InputGeometry(QWEN_SIZE, 1.0)).eval().frozen()


def test_qwen2_vl_pixel_input_is_the_processors_patches_and_the_score_hugging_faces(qwen):
    """The differentiable patchify equals the processor's ``pixel_values`` and ``image_grid_thw``; the
    target score equals Hugging Face's forward on the processor's inputs."""
    images = np.random.default_rng(7).integers(0, 256, (2, QWEN_SIZE, QWEN_SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    pixels = (x - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]
    ours = qwen.image_inputs(pixels)
    answers = ["red", "yes please"]
    scores = qwen.target_scores(pixels, qwen.encode(QUESTIONS[:2]), qwen.encode_targets(answers))
    tokenizer = qwen.processor.tokenizer
    for i in range(2):
        prompt = qwen.prompt_text(QUESTIONS[i])
        inputs = qwen.processor(images=images[i], text=prompt, return_tensors="pt")
        n = len(inputs["pixel_values"])
        np.testing.assert_allclose(
            ours["pixel_values"][i * n : (i + 1) * n].numpy(), inputs["pixel_values"].numpy(), atol=1e-5
        )
        assert ours["image_grid_thw"][i].tolist() == inputs["image_grid_thw"][0].tolist()
        answer_ids = tokenizer(answers[i], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.cat([inputs["input_ids"], torch.tensor([answer_ids])], dim=1)
        types = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(answer_ids), dtype=torch.long)], dim=1)
        with torch.no_grad():
            logits = qwen.module(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=types,
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
            ).logits[0]
        start = inputs["input_ids"].shape[1]
        expected = sum(torch.log_softmax(logits[start - 1 + j], -1)[t] for j, t in enumerate(answer_ids))
        assert float(scores[i]) == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("method", ["saliency", "ig", "attention", "rollout", "chefer", "gradcam"])
def test_qwen2_vl_maps_do_not_depend_on_the_batch(qwen, method):
    from vqa_interp.attribution import make_attributor

    attribute = make_attributor(qwen, method, {"n_steps": 4, "internal_batch_size": 4} if method == "ig" else {})
    images = np.random.default_rng(8).integers(0, 256, (3, QWEN_SIZE, QWEN_SIZE, 3), dtype=np.uint8)
    pixels = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    ) / torch.from_numpy(IMAGENET_STD)[:, None, None]
    answers = ["red", "2", "yes please"]
    together = _map(
        attribute(pixels.clone().requires_grad_(True), qwen.encode_targets(answers), qwen.encode(QUESTIONS))
    )
    for i in range(3):
        alone = _map(
            attribute(
                pixels[i : i + 1].clone().requires_grad_(True),
                qwen.encode_targets(answers[i : i + 1]),
                qwen.encode(QUESTIONS[i : i + 1]),
            )
        )
        scale = float(together[i].abs().max())
        assert scale > 0
        np.testing.assert_allclose(alone[0].numpy(), together[i].numpy(), rtol=1e-4, atol=1e-5 * scale)
    assert qwen.token_layout(pixels, qwen.encode(QUESTIONS), qwen.encode_targets(answers))[2] == (2, 2)


# ------------------------------------------------------------------ PaliGemma
PALI_SIZE = 28  # 2x2 patches of 14 px


def build_tiny_paligemma(folder, seed: int = 0):
    """A random-weight PaliGemma (SigLIP + Gemma, hidden 32, 2 layers each) and its processor (a real
    word-level tokenizer with ``<image>``, ``<bos>``, ``<eos>``; the processor adds its ``<loc>``/``<seg>``
    tokens), saved with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        PreTrainedTokenizerFast,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    words = sorted({w for q in QUESTIONS for w in q.lower().replace("?", " ").split()} | set(ANSWERS))
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", "<image>", "answer", "en", "?", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessor(size={"height": PALI_SIZE, "width": PALI_SIZE}, image_seq_length=4),
        tokenizer=fast,
    )
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=PALI_SIZE,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=GemmaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            vocab_size=len(processor.tokenizer),
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        ),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    PaliGemmaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def paligemma(tmp_path_factory):
    from vqa_interp.models.hf_vlm import load_folder

    folder = build_tiny_paligemma(tmp_path_factory.mktemp("paligemma"))
    return load_folder(folder, InputGeometry(PALI_SIZE, 1.0)).eval().frozen()


def test_paligemma_scores_the_processors_suffix_layout(paligemma):
    """Independent: the processor's own ``suffix=`` layout (prefix 0, answer 1 in ``token_type_ids``) and
    Hugging Face's forward; the prompt is PaliGemma's ``answer en {question}``."""
    images = np.random.default_rng(9).integers(0, 256, (2, PALI_SIZE, PALI_SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    pixels = (x - torch.from_numpy(IMAGENET_MEAN)[:, None, None]) / torch.from_numpy(IMAGENET_STD)[:, None, None]
    answers = ["red", "yes please"]
    assert paligemma.prompt_text("What is it?") == "answer en What is it?"
    scores = paligemma.target_scores(pixels, paligemma.encode(QUESTIONS[:2]), paligemma.encode_targets(answers))
    for i in range(2):
        inputs = paligemma.processor(
            images=images[i], text=paligemma.prompt_text(QUESTIONS[i]), suffix=answers[i], return_tensors="pt"
        )
        with torch.no_grad():
            logits = paligemma.module(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                token_type_ids=inputs["token_type_ids"],
                pixel_values=inputs["pixel_values"],
            ).logits[0]
        answer = (inputs["token_type_ids"][0] == 1).nonzero()[:, 0].tolist()
        ids = inputs["input_ids"][0]
        expected = sum(torch.log_softmax(logits[p - 1], -1)[ids[p]] for p in answer)
        assert float(scores[i]) == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("method", ["saliency", "ig", "attention", "rollout", "chefer", "gradcam"])
def test_paligemma_maps_do_not_depend_on_the_batch(paligemma, method):
    from vqa_interp.attribution import make_attributor

    attribute = make_attributor(paligemma, method, {"n_steps": 4, "internal_batch_size": 4} if method == "ig" else {})
    images = np.random.default_rng(10).integers(0, 256, (3, PALI_SIZE, PALI_SIZE, 3), dtype=np.uint8)
    pixels = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    ) / torch.from_numpy(IMAGENET_STD)[:, None, None]
    answers = ["red", "2", "yes please"]
    together = _map(
        attribute(pixels.clone().requires_grad_(True), paligemma.encode_targets(answers), paligemma.encode(QUESTIONS))
    )
    for i in range(3):
        alone = _map(
            attribute(
                pixels[i : i + 1].clone().requires_grad_(True),
                paligemma.encode_targets(answers[i : i + 1]),
                paligemma.encode(QUESTIONS[i : i + 1]),
            )
        )
        scale = float(together[i].abs().max())
        assert scale > 0
        np.testing.assert_allclose(alone[0].numpy(), together[i].numpy(), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.slow
def test_embedded_llava_runs_end_to_end_with_every_table_the_other_models_have(cli_env, tmp_path):
    """``model=embedded_llava method=rollout`` (the shipped LLaVA): predictions by generation, floors and
    ceiling, the analysis, the explain stage's tables (question words inside the prompt, the image's
    share, deletion/insertion on the answer's probability); a method it cannot serve refused in one line."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    result = subprocess.run(
        [
            python(),
            "-m",
            "vqa_interp.run",
            "model=embedded_llava",
            "method=rollout",
            "+experiment=smoke",
            "data.limit=10",
            "explain.ig_steps=8",
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model=embedded_llava: the shipped model" in result.stdout
    assert "Between floors and ceiling" in result.stdout and "Faithfulness:" in result.stdout
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["model_kind"] == "hf_vlm"
    assert run.data.tags["model_source"] == "shipped"
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert EVERY_MODEL_TABLES <= tables
    assert "norm/rank_corr" in run.data.metrics
    per_example = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_example.csv", str(tmp_path)))
    assert per_example["rank_corr"].notna().all() and per_example["confidence"].between(0, 1).all()
    tokens = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/token_attributions.csv", str(tmp_path)))
    assert len(tokens) and "?" in set(tokens["token"])  # the question's own words, found in the prompt
    refused = subprocess.run(
        [python(), "-m", "vqa_interp.run", "model=embedded_llava", "method=gbackp"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "relu_units" in refused.stderr and "Traceback" not in refused.stderr
