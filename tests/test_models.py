"""The paper model's backbone (Caffe ResNet-152, not torchvision's), checkpoints, and answers compared
under the official normalisation."""

from pathlib import Path

import pytest
import torch

from vqa_interp.data import Example
from vqa_interp.data.images import InputGeometry
from vqa_interp.models import KazemiModel, KazemiNetwork, Net, ResNetBackbone, load_model
from vqa_interp.models.backbones import SmallConvBackbone
from vqa_interp.pipeline.predict import answer_lookup, predict
from vqa_interp.pipeline.targets import plan_targets


def test_caffe_resnet152_has_the_converted_caffe_geometry_and_differs_from_torchvision():
    torch.manual_seed(0)
    caffe = ResNetBackbone(152, "caffe").eval()
    torchvision_variant = ResNetBackbone(152, "torchvision").eval()
    state = caffe.state_dict()
    assert list(state) == list(torchvision_variant.state_dict())  # same keys: a file loads into either
    torchvision_variant.load_state_dict(state)
    assert caffe.maxpool.ceil_mode and caffe.maxpool.padding == 0 and caffe.maxpool.stride == 2
    for layer in ("layer2", "layer3", "layer4"):
        first = getattr(caffe, layer)[0]
        assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
        other = getattr(torchvision_variant, layer)[0]
        assert other.conv1.stride == (1, 1) and other.conv2.stride == (2, 2)
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        a, b = caffe(x), torchvision_variant(x)
    assert a.shape == b.shape == (1, 2048, 14, 14)
    assert (a - b).abs().max() > 1e-3


def test_pytorch_vqa_checkpoint_and_caffe_weights_round_trip(tmp_path):
    torch.manual_seed(1)
    backbone = ResNetBackbone(50, "caffe").eval()
    net = Net(
        12,
        v_features=2048,
        embedding_features=8,
        lstm_features=16,
        mid_features=8,
        glimpses=2,
        classifier_mid=16,
        max_answers=4,
        drop=0.0,
    )
    torch.save(backbone.state_dict(), tmp_path / "resnet50-caffe.pth")
    torch.save(
        {
            "name": "t",
            "tracker": {},
            "config": {},
            "eval": {},
            "weights": {f"module.{k}": v for k, v in net.state_dict().items()},
            "vocab": {"question": {f"w{i}": i + 1 for i in range(11)}, "answer": {"a": 0, "b": 1, "c": 2, "d": 3}},
        },
        tmp_path / "ckpt.pth",
    )
    loaded = load_model(
        tmp_path / "ckpt.pth", {"type": "resnet", "depth": 50, "variant": "caffe"}, tmp_path / "resnet50-caffe.pth"
    )
    assert loaded.description.startswith("caffe resnet50")
    assert loaded.tags()["backbone_variant"] == "caffe"
    x, q, q_len = torch.randn(2, 3, 224, 224), torch.randint(1, 12, (2, 4)), torch.tensor([4, 2])
    with torch.no_grad():
        expected = KazemiNetwork(backbone, net.eval())(x, q, q_len)
        assert torch.allclose(loaded.forward(x, (q, q_len)), expected, atol=1e-5)


def test_answer_lookup_finds_labels_under_the_vocabularys_own_spelling():
    lookup = answer_lookup(["two", "a lot", "yes", "2"])
    assert lookup["2"] == 0  # "two" and "2" normalise alike: the more frequent (lower index) wins
    assert lookup["lot"] == 1  # the official normalisation drops articles
    assert lookup["yes"] == 2


def _model_that_answers(index: int, n_answers: int) -> KazemiNetwork:
    torch.manual_seed(0)
    net = Net(
        10,
        v_features=16,
        embedding_features=4,
        lstm_features=8,
        mid_features=4,
        glimpses=2,
        classifier_mid=8,
        max_answers=n_answers,
        drop=0.0,
    )
    with torch.no_grad():
        net.classifier.lin2.weight.zero_()
        net.classifier.lin2.bias.zero_()
        net.classifier.lin2.bias[index] = 10.0
    return KazemiNetwork(SmallConvBackbone(16), net).eval()


@pytest.mark.parametrize(
    "vocab_answer,label,correct", [("two", "2", True), ("2", "two", True), ("a lot", "lot", True), ("3", "2", False)]
)
def test_a_prediction_is_compared_with_the_label_after_both_are_normalised(vocab_answer, label, correct):
    vocab = {vocab_answer: 0, "other": 1}
    model = KazemiModel(_model_that_answers(0, 2), {"how": 1}, vocab, InputGeometry(32, 1.0))
    example = Example(1, 1, "How many?", [label] * 10, label, "number", Path("unused.jpg"), [])
    question = model.encode([example.question])
    frame = predict(model, [example], lambda rows: torch.zeros(len(rows), 3, 32, 32), question, batch_size=1)
    assert bool(frame.loc[0, "correct"]) is correct
    assert frame.loc[0, "label_index"] == (0 if correct else -1)
    targets, skipped = plan_targets(frame, "paper")
    assert (len(targets) == 1) if correct else (skipped["label_not_in_answer_vocab"] == 1)


def test_the_question_prior_answers_each_question_with_its_most_frequent_training_answer():
    from vqa_interp.models.training import TrainingSplit, question_prior_accuracy

    def split(questions, answers):
        return TrainingSplit(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), [0] * len(questions), questions, answers)

    train = split(
        ["What color is the ball?", "what color is the ball?", "How many balls?"],
        [["red"] * 6 + ["blue"] * 4, ["Red"] * 2 + ["blue"] * 8, ["2"] * 10],
    )
    # "what color is the ball?": blue 12 x red 8 -> blue; "is it?" unseen -> the overall favourite (blue 12)
    val = split(
        ["WHAT COLOR IS THE BALL?", "How many balls?", "is it?"],
        [["blue"] * 2 + ["red"] * 8, ["3"] * 10, ["blue"] * 10],
    )
    assert question_prior_accuracy(train, val) == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_split_accuracy_batches_images_with_all_their_questions():
    """The validation accuracy reported while training equals scoring every question at once."""
    from vqa_interp.models.training import (
        TrainingSplit,
        _normalise_batch,
        answer_targets,
        soft_accuracy,
        split_accuracy,
    )
    from vqa_interp.models.vilt import untrained

    class Settings:  # the fields ``untrained`` reads of a model's settings
        input_size, central_fraction = 32, 1.0
        options = {
            "vilt": {
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 16,
                "patch_size": 16,
            },
            "max_question_tokens": 8,
        }

    questions = ["what color is it?", "how many are there?", "is it red?", "what shape is it?", "is it big?"]
    labels = ["red", "2", "yes", "circle", "no"]  # every answer given by 0-4 annotators: each guess scores differently
    answers = [[a for j, a in enumerate(labels) for _ in range((i + j) % 5)] for i in range(5)]
    torch.manual_seed(0)
    model = untrained(Settings, questions, answers)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    data = TrainingSplit(images, [0, 1, 1, 2, 0], questions, answers)
    with torch.no_grad():
        logits = model.module.eval()(_normalise_batch(images)[torch.tensor(data.image_index)], *model.encode(questions))
    expected = soft_accuracy(logits.argmax(1), answer_targets(answers, model.answer_vocab)).mean()
    assert 0 < float(expected) < 1
    assert split_accuracy(model, data, images_per_batch=2) == pytest.approx(float(expected))


@pytest.mark.parametrize("by_image", [True, False])
def test_an_epochs_batches_hold_every_question_once_with_the_images_it_is_about(by_image):
    """Whole images with all their questions (a model that encodes the image alone), else questions
    drawn at random; either way each question once an epoch, and the same order from the same seed."""
    from vqa_interp.models.training import TrainingSplit, training_batches

    image_index = [0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 6, 6, 1]
    data = TrainingSplit(
        torch.zeros(7, 3, 4, 4, dtype=torch.uint8), image_index, [f"q{i}" for i in range(13)], [["a"] * 10] * 13
    )

    def epoch(seed):
        return list(training_batches(data, 3, by_image, torch.Generator().manual_seed(seed)))

    batches = epoch(0)
    seen = [int(q) for _, idx in batches for q in idx]
    assert sorted(seen) == list(range(13))
    for images, idx in batches:
        assert {image_index[int(q)] for q in idx} == set(images.tolist())
        if by_image:
            assert len(images) <= 3 and all(
                image_index.count(int(r)) == sum(image_index[int(q)] == int(r) for q in idx) for r in images
            )
        else:
            assert len(idx) <= 3
    assert [i.tolist() for _, i in epoch(0)] == [i.tolist() for _, i in batches]
    assert [i.tolist() for _, i in epoch(1)] != [i.tolist() for _, i in batches]
