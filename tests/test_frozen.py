"""A loaded model's parameters are frozen (no weight gradient is accumulated by any stage): every
method's maps, the token attributions and the image share are the same as the unfrozen model's,
for both model kinds, and the run's loader returns a frozen model."""

import copy

import pytest
import torch
from test_attribution import inputs, tiny_vqa

from vqa_interp.attribution import METHODS, make_attributor
from vqa_interp.attribution.question import image_question_share, token_attributions

OPTIONS = {
    "ig": {"n_steps": 8, "internal_batch_size": 8},
    "smoothgrad": {"nt_samples": 4},
    "gradshap": {"n_samples": 4},
    "occlusion": {"window": 8, "stride": 8},
}


def _models():
    cnn = tiny_vqa(seed=3)
    image, q, q_len = inputs()
    yield "kazemi", cnn, image, (q, q_len), torch.tensor([0, 3, 6])
    pytest.importorskip("transformers")
    from test_vilt import _inputs, tiny_vilt

    vilt = tiny_vilt(seed=4)
    pixels, question = _inputs(vilt, seed=5)
    yield "vilt", vilt, pixels, question, torch.tensor([1, 0, 3])


def _applicable(model) -> list[str]:
    return [name for name, m in METHODS.items() if m.kind != "baseline" and m.runs_on(model.provides)]


def _out(value):
    return (value[0] if isinstance(value, tuple) else value).detach()


@pytest.mark.parametrize("kind", ["kazemi", "vilt"])
def test_frozen_parameters_change_no_map_token_attribution_or_share(kind):
    found = [m for m in _models() if m[0] == kind]
    if not found:
        pytest.skip("transformers is not installed")
    _, model, pixels, question, targets = found[0]
    frozen = copy.deepcopy(model).frozen()
    assert not any(p.requires_grad for p in frozen.module.parameters())
    assert all(p.requires_grad for p in model.module.parameters())
    methods = _applicable(model)
    assert {"saliency", "gradcam"} <= set(methods) and (kind == "kazemi") == ("ggradcam" in methods)
    for method in methods:
        options = {k: v for k, v in OPTIONS.get(method, {}).items() if k in METHODS[method].options}
        maps = []
        for m in (model, frozen):
            torch.manual_seed(0)
            maps.append(
                _out(make_attributor(m, method, options)(pixels.clone().requires_grad_(True), targets, question))
            )
        torch.testing.assert_close(maps[0], maps[1], atol=1e-6, rtol=1e-5, msg=method)
        assert torch.isfinite(maps[1]).all() and maps[1].abs().sum() > 0, method
    for part in (token_attributions, image_question_share):
        values = [part(m, pixels, question, targets, n_steps=8) for m in (model, frozen)]
        for a, b in zip(*values):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # Captum takes autograd.grad of its inputs: nothing accumulated a gradient on the unfrozen weights
    assert all(p.grad is None for p in model.module.parameters())


def test_the_runs_loader_returns_a_frozen_model(tmp_path):
    """The stored smoke checkpoint through the registry's loader, as a run loads its model."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from vqa_interp.models import registry
    from vqa_interp.settings import from_config

    root = Path(__file__).resolve().parents[1]
    checkpoint = root / "tests" / "data" / "smoke_model_v0.3.pth"
    with initialize_config_dir(str(root / "conf"), version_base="1.3"):
        settings = from_config(
            compose("config", overrides=[f"paths.home={tmp_path}", f"model.checkpoint={checkpoint}"])
        )
    model = registry.load(settings.model, checkpoint, "cpu")
    assert not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())
