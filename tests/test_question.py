"""The question side and faithfulness (groundwork of the question-side analysis): Integrated
Gradients is complete on the embedding path, shares are proportions, and deleting a map's top
pixels lowers the target's probability more than deleting random pixels, on average."""

import numpy as np
import pytest
import torch

from vqa_interp.attribution import make_attributor
from vqa_interp.attribution.faithfulness import deletion_insertion
from vqa_interp.attribution.question import image_question_share, token_attributions


@pytest.fixture(scope="module")
def batch(home, tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from conftest import ROOT
    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.pipeline import model as model_stage
    from vqa_interp.settings import from_config
    from vqa_interp.train import ensure_model

    store = tmp_path_factory.mktemp("store")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(
            compose(
                "config", overrides=[f"paths.home={home}", "data.limit=24", f"tracking.uri=sqlite:///{store}/mlflow.db"]
            )
        )
    dataset = dataset_for(settings.data, settings.home)
    checkpoint = ensure_model(settings, dataset)  # trained once, if no test has yet
    model = model_stage.load(settings, checkpoint)  # the model interface the functions take
    examples = dataset.examples().examples
    images = model.load_pixels([e.image_path for e in examples])
    q, q_len = model.encode([e.question for e in examples])
    with torch.no_grad():
        targets = model.forward(images, (q, q_len)).argmax(1)
    return model, images, q, q_len, targets


def test_token_attributions_are_complete_on_the_embedding_path(batch):
    model, images, q, q_len, targets = batch
    scores, error = token_attributions(model, images, (q, q_len), targets, n_steps=128)
    net = model.module
    with torch.no_grad():
        gap = (net(images, q, q_len) - net(images, torch.zeros_like(q), q_len)).gather(1, targets[:, None])[:, 0]
    assert (error <= 0.02 * gap.abs() + 1e-3).all(), (error, gap)  # sum of attributions = f(x) - f(baseline)
    assert torch.allclose(scores.norm(dim=1), torch.ones(len(q)), atol=1e-5)
    positions = torch.arange(q.shape[1])[None, :]
    assert (scores[positions >= q_len[:, None]] == 0).all()  # padding gets nothing


def test_the_image_share_is_a_proportion_from_one_complete_pass(batch):
    model, images, q, q_len, targets = batch
    share, error = image_question_share(model, images, (q, q_len), targets, n_steps=128)
    assert ((share > 0) & (share < 1)).all()
    net = model.module
    with torch.no_grad():
        gap = (net(images, q, q_len) - net(torch.zeros_like(images), torch.zeros_like(q), q_len)).gather(
            1, targets[:, None]
        )[:, 0]
    # the error of a 128-step quadrature is about constant in logits (~0.1 here, where gaps reach
    # ~15; a ReLU net is piecewise linear, so the error of its worst example depends on the trained
    # weights: 0.63 on one of 24 with a model trained on another CPU), so it is bounded by the batch's
    # scale; leaving either input out would miss by whole logits
    assert (error <= 0.05 * gap.abs().max()).all() and error.median() <= 0.01 * gap.abs().median(), (error, gap)


def test_deleting_a_maps_top_pixels_hurts_more_than_deleting_random_pixels(batch):
    model, images, q, q_len, targets = batch
    saliency = make_attributor(model, "saliency", {})(images.clone().requires_grad_(True), targets, (q, q_len))
    maps = saliency.detach().abs().sum(1).numpy()
    faithful = deletion_insertion(model, images, maps, (q, q_len), targets)
    random = deletion_insertion(model, images, np.random.default_rng(0).random(maps.shape), (q, q_len), targets)
    assert faithful["deletion"].shape == (len(q), 11)
    np.testing.assert_allclose(faithful["deletion"][:, 0], faithful["insertion"][:, -1], atol=1e-6)  # both: the image
    np.testing.assert_allclose(faithful["deletion"][:, -1], faithful["insertion"][:, 0], atol=1e-6)  # both: the blur
    assert faithful["deletion_auc"].mean() < random["deletion_auc"].mean()


@pytest.mark.parametrize("side, sigma", [(4, 0.25), (33, 0.25), (64, 1 / 16), (64, 0.5)])
def test_the_separable_blur_equals_torchvisions_gaussian_blur(side, sigma):
    from torchvision.transforms.functional import gaussian_blur

    from vqa_interp.attribution.faithfulness import blurred

    images = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(side))
    s = max(0.5, sigma * side)
    kernel = min(int(2 * round(3 * s) + 1), 2 * side - 1)
    torch.testing.assert_close(
        blurred(images, sigma), gaussian_blur(images, [kernel, kernel], [s, s]), atol=1e-5, rtol=0
    )
    constant = torch.full((1, 3, side, side), 0.7)
    torch.testing.assert_close(blurred(constant, sigma), constant)  # a blur keeps a flat image


def test_curves_of_several_map_sets_equal_one_set_at_a_time(batch):
    from vqa_interp.attribution.faithfulness import curves_for_map_sets

    model, images, q, q_len, targets = batch
    rng = np.random.default_rng(3)
    sets = {"a": rng.random((len(q), 64, 64)), "b": rng.random((len(q), 64, 64))}
    together = curves_for_map_sets(model, images, sets, (q, q_len), targets, steps=4, batch_size=7)
    for name, maps in sets.items():
        alone = deletion_insertion(model, images, maps, (q, q_len), targets, steps=4, batch_size=64)
        for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
            np.testing.assert_allclose(together[name][key], alone[key], atol=1e-6)


def test_curves_do_not_change_when_a_map_is_scaled(batch):
    model, images, q, q_len, targets = batch
    maps = np.random.default_rng(5).random((len(q), 64, 64))
    base = deletion_insertion(model, images, maps, (q, q_len), targets, steps=4)
    for factor in (1e-7, 1e7):
        scaled = deletion_insertion(model, images, maps * factor, (q, q_len), targets, steps=4)
        for key in ("deletion_auc", "insertion_auc"):
            np.testing.assert_array_equal(scaled[key], base[key])


class _BrightnessModel(torch.nn.Module):
    """Answers from the image's mean red value: a model that no flip of the image changes."""

    def forward(self, images, question):
        red = images[:, 0].mean(dim=(1, 2))
        return torch.stack([8 * red, -8 * red], dim=1)


@pytest.mark.parametrize("kind", ["mean", "blur"])
def test_deletion_and_insertion_break_ties_by_no_position(kind):
    """A flat map ties every pixel: removing "the top 10%" must not mean the top rows. Flipping the
    image and the map together leaves the curves unchanged (an index-order tie-break removed the
    bright top half first, and after the flip the dark half first)."""
    side = 16
    images = torch.zeros(2, 3, side, side)
    images[:, 0, : side // 2] = 1.0  # bright top half
    maps = np.ones((2, side, side))
    maps[1, :, : side // 4] = 2.0  # a step, ties within each part
    question = (torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 3]))
    targets = torch.tensor([0, 0])
    model = _BrightnessModel()
    base = deletion_insertion(model, images, maps, question, targets, steps=10, kind=kind)
    for flip in (lambda x: torch.flip(x, dims=[-2]), lambda x: torch.flip(x, dims=[-1]), lambda x: x.transpose(-1, -2)):
        flipped_maps = flip(torch.as_tensor(maps)).numpy()
        other = deletion_insertion(
            model, flip(images).contiguous(), flipped_maps, question, targets, steps=10, kind=kind
        )
        for key in ("deletion", "insertion"):
            np.testing.assert_allclose(other[key], base[key], atol=1e-6)
    # the flat map blends every pixel by the same share towards the mean colour: the red mean stays 0.5
    if kind == "mean":
        red = np.linspace(0.5, 0.5, 11)
        expected = torch.softmax(torch.tensor(np.stack([8 * red, -8 * red], 1)), 1)[:, 0].numpy()
        np.testing.assert_allclose(base["deletion"][0], expected, atol=1e-6)


def test_an_internal_batch_below_the_examples_is_met_in_chunks_without_captums_warning(batch, recwarn):
    """Captum raises its internal batch to the number of examples (and warns) when it is below it:
    the budget would not hold. The examples go in chunks instead, with the same numbers."""
    model, images, q, q_len, targets = batch
    images, q, q_len, targets = images[:6], q[:6], q_len[:6], targets[:6]
    for function in (token_attributions, image_question_share):
        whole = function(model, images, (q, q_len), targets, n_steps=8)
        chunked = function(model, images, (q, q_len), targets, n_steps=8, internal_batch_size=4)
        for a, b in zip(whole, chunked):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not [w for w in recwarn if "internal batch size" in str(w.message).lower()]
