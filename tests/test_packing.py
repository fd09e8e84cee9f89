"""Training a generative model on an image's questions packed into one sequence: each question's answer
log-probability equals the one its own sequence gives (:meth:`GenerativeVlm.run`), and so does its
gradient; families whose positions span the whole sequence are refused in one line."""

import numpy as np
import pytest
import torch
from test_generative import ANSWERS, QUESTIONS, _images, _pixels, build_tiny_llava

from vqa_interp.data.images import InputGeometry
from vqa_interp.errors import ConfigError
from vqa_interp.models.packing import pack, packed_scores, shared_prefix


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from vqa_interp.models.hf_vlm import load_folder

    return load_folder(build_tiny_llava(tmp_path_factory.mktemp("llava"), seed=3), InputGeometry(32, 1.0)).eval()


def _groups(model):
    """Two images: the first with all three questions, the second with two (rows of unequal length)."""
    answers = [ANSWERS[0], "2 red", ANSWERS[2], ANSWERS[4], ANSWERS[5]]
    questions = [*QUESTIONS, QUESTIONS[2], QUESTIONS[0]]
    ids, mask = model.encode_targets(answers)
    answer_lists = [i[m.bool()].tolist() for i, m in zip(ids, mask)]
    items = [(model.prompt_ids(q), a) for q, a in zip(questions, answer_lists)]
    return questions, answers, [items[:3], items[3:]], [0, 0, 0, 1, 1]


def test_packed_scores_equal_one_sequence_per_question(model):
    questions, answers, groups, image_of = _groups(model)
    pixels = _pixels(_images(2, seed=5))
    packed = pack(groups, model.image_token_id, model.pad_id)
    with torch.no_grad():
        together = packed_scores(model, pixels, packed)
        alone = torch.stack(
            [
                model.run(pixels[[i]], model.encode([q]), model.encode_targets([a]))[0][0]
                for q, a, i in zip(questions, answers, image_of)
            ]
        )
    assert together.shape == (5,) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    # the image is read once per row: two rows, each shorter than its questions' own sequences together
    assert packed.input_ids.shape[0] == 2
    assert packed.input_ids.shape[1] < sum(len(p) + len(a) for p, a in groups[0])


def test_packed_gradients_equal_one_sequence_per_question(model):
    questions, answers, groups, image_of = _groups(model)
    pixels = _pixels(_images(2, seed=6))
    parameter = model.module.model.multi_modal_projector.linear_1.weight
    parameter.requires_grad_(True)
    try:
        packed_loss = -packed_scores(model, pixels, pack(groups, model.image_token_id, model.pad_id)).mean()
        (packed_grad,) = torch.autograd.grad(packed_loss, parameter)
        alone_loss = -torch.stack(
            [
                model.run(pixels[[i]], model.encode([q]), model.encode_targets([a]))[0][0]
                for q, a, i in zip(questions, answers, image_of)
            ]
        ).mean()
        (alone_grad,) = torch.autograd.grad(alone_loss, parameter)
    finally:
        parameter.requires_grad_(False)
    assert packed_grad.abs().sum() > 0
    torch.testing.assert_close(packed_grad, alone_grad, atol=1e-5, rtol=1e-4)


def test_the_block_mask_lets_a_segment_see_the_prefix_and_itself_only(model):
    _, _, groups, _ = _groups(model)
    packed = pack(groups[:1], model.image_token_id, model.pad_id)
    allowed = packed.attention_mask[0, 0] == 0
    prefix = shared_prefix([p for p, _ in groups[0]])
    first, second = (a[1] for a in packed.answer_at[:2])  # answer starts of the first two questions
    assert allowed[first, :prefix].all()  # the answer sees the image and the prompt's start
    assert not allowed[second, first]  # the second question never sees the first's answer
    assert packed.position_ids[0, prefix] == prefix  # each segment's positions go on from the prefix
    second_start = first + len(groups[0][0][1])
    assert packed.position_ids[0, second_start] == prefix


def test_prompts_that_differ_before_the_image_are_refused(model):
    image = model.image_token_id
    with pytest.raises(ValueError, match="before their image tokens"):
        pack([[([5, image, 7], [9]), ([6, image, 7], [9])]], image, model.pad_id)


def test_a_family_whose_positions_span_the_sequence_is_refused_for_training(model, monkeypatch):
    from vqa_interp.models.training import TrainingSplit, train_generative

    monkeypatch.setattr(model.family, "packs", False)
    split = TrainingSplit(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), [0], [QUESTIONS[0]], [["red"] * 10])
    with pytest.raises(ConfigError, match="cannot share one packed sequence"):
        train_generative(model, split, epochs=1, batch_size=1, lr=1e-3, seed=0, threads=1)


def test_the_embedded_llava_trains_and_saves_a_folder_that_loads_and_answers(home, tmp_path):
    """``train_and_save`` for ``model=embedded_llava`` (packed batches of whole images, on a benchmark of
    30 training images): a save_pretrained folder that loads as ``hf_vlm`` and generates answers, and
    a history with one validation accuracy an epoch."""
    from conftest import settings_with
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.models.hf_vlm import load_folder
    from vqa_interp.models.train_embedded import train_and_save

    settings = settings_with(
        home,
        "model=embedded_llava",
        "model.train.epochs=2",
        "model.train.threads=1",
        "data.n_train_images=30",
        "data.n_val_images=6",
    )
    result = train_and_save(settings.model, dataset_for(settings.data, settings.home), tmp_path / "llava")
    assert result["epochs_run"] == 2 and 0 <= result["final_val_accuracy"] <= 1
    assert 0 < result["final_train_accuracy"] < 1  # the mean probability of the trained answers
    loaded = load_folder(tmp_path / "llava", InputGeometry(settings.model.input_size, 1.0)).eval()
    size = settings.model.input_size
    pixels = _pixels(np.random.default_rng(1).integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    answers = loaded.generate_answers(pixels, loaded.encode(["What color is the cube?", "Is there a red sphere?"]))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
