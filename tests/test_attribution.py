"""Captum's Guided Backprop / DeconvNet on our models equal a hand-written ReLU rule."""

import copy

import pytest
import torch
from torch import nn

from vqa_interp.attribution import METHODS, make_attributor
from vqa_interp.data.images import InputGeometry
from vqa_interp.models import KazemiModel, KazemiNetwork, Net, ResNetBackbone, SmallConvBackbone


class _RuleReLU(torch.autograd.Function):
    """ReLU whose backward is the guided (relu(grad) * (x > 0)) or deconv (relu(grad)) rule."""

    @staticmethod
    def forward(ctx, x, guided):
        ctx.save_for_backward(x)
        ctx.guided = guided
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        out = grad.clamp(min=0)
        return (out * (x > 0) if ctx.guided else out), None


class RuleReLU(nn.Module):
    def __init__(self, guided):
        super().__init__()
        self.guided = guided

    def forward(self, x):
        return _RuleReLU.apply(x, self.guided)


def with_rule_relus(model, guided):
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, RuleReLU(guided))
    return twin


def tiny_vqa(seed=0, backbone=None):
    """A small Kazemi net behind the model interface (the methods take the interface)."""
    torch.manual_seed(seed)
    backbone = backbone or SmallConvBackbone(16)
    net = Net(
        20,
        v_features=backbone.out_channels,
        embedding_features=8,
        lstm_features=16,
        mid_features=8,
        glimpses=2,
        classifier_mid=16,
        max_answers=7,
        drop=0.0,
    )
    return KazemiModel(
        KazemiNetwork(backbone, net).eval(),
        {f"w{i}": i for i in range(1, 20)},
        {f"a{i}": i for i in range(7)},
        InputGeometry(32, 1.0),
    )


def inputs(batch=3, size=32):
    torch.manual_seed(1)
    image = torch.randn(batch, 3, size, size)
    q = torch.randint(1, 20, (batch, 5))
    q_len = torch.tensor([5, 3, 4][:batch])
    return image, q, q_len


@pytest.mark.parametrize("method,guided", [("gbackp", True), ("deconv", False)])
def test_guided_backprop_and_deconv_equal_the_hand_written_rule(method, guided):
    model = tiny_vqa()
    image, q, q_len = inputs()
    target = torch.tensor([0, 3, 6])
    captum = make_attributor(model, method, {})(image.clone().requires_grad_(True), target, (q, q_len))
    twin = with_rule_relus(model.module, guided)
    x = image.clone().requires_grad_(True)
    twin(x, q, q_len).gather(1, target[:, None]).sum().backward()
    assert torch.allclose(captum, x.grad, atol=1e-6)
    assert captum.abs().sum() > 0


def test_every_relu_call_site_is_its_own_non_inplace_module():
    for model, image in (
        (tiny_vqa().module, inputs()[0]),
        (tiny_vqa(backbone=ResNetBackbone(50)).module, torch.randn(1, 3, 64, 64)),
    ):
        calls = {}
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert relus and not any(m.inplace for m in relus)
        hooks = [
            m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1)) for m in relus
        ]
        _, q, q_len = inputs(batch=len(image))
        model(image, q, q_len)
        for h in hooks:
            h.remove()
        assert set(calls.values()) == {1}, "a ReLU module is applied at more than one call site"


def test_saliency_is_abs_gradient_and_all_methods_give_input_shaped_maps():
    model = tiny_vqa()
    image, q, q_len = inputs()
    target = torch.tensor([1, 2, 3])
    x = image.clone().requires_grad_(True)
    model.forward(x, (q, q_len)).gather(1, target[:, None]).sum().backward()
    saliency = make_attributor(model, "saliency", {"abs": True})(image.clone().requires_grad_(True), target, (q, q_len))
    assert torch.allclose(saliency, x.grad.abs(), atol=1e-6)
    for method in [m for m, entry in METHODS.items() if entry.kind == "model" and entry.runs_on(model.provides)]:
        out = make_attributor(model, method, {})(image.clone().requires_grad_(True), target, (q, q_len))
        if isinstance(out, tuple):  # (attributions, per-map diagnostics), e.g. IG's completeness error
            out, extras = out
            assert all(v.shape == (len(image),) for v in extras.values()), method
        assert out.shape[0] == image.shape[0] and out.shape[-2:] == image.shape[-2:], method
        assert torch.isfinite(out).all(), method


def test_unknown_method_and_layer_are_named():
    model = tiny_vqa()
    with pytest.raises(ValueError, match="method.name"):
        make_attributor(model, "lrp", {})
    with pytest.raises(ValueError, match="method.layer"):
        make_attributor(model, "ggradcam", {"layer": "backbone.layer9"})


def test_the_cam_layer_is_the_model_interfaces_and_a_dotted_path_still_names_a_module():
    model = tiny_vqa()
    image, q, q_len = inputs()
    target = torch.tensor([1, 2, 3])
    by_name = make_attributor(model, "gradcam", {"layer": "cam"})(image, target, (q, q_len))
    by_path = make_attributor(model, "gradcam", {"layer": "backbone.layer4"})(image, target, (q, q_len))
    assert model.cam_layer() is model.module.backbone.layer4
    assert torch.equal(by_name, by_path) and by_name.abs().sum() > 0


@pytest.mark.parametrize("method", ["smoothgrad", "gradshap"])
def test_a_sampling_methods_map_depends_on_neither_its_batch_nor_the_global_generators(method):
    """Captum draws SmoothGrad's noise from torch's generator and GradientShap's samples from NumPy's:
    each image is drawn from generators seeded with the method's ``seed``, so an image's map is the
    same alone, in a batch, after other draws, and the callers' generators are left as they were."""
    import numpy as np

    model = tiny_vqa(seed=2)
    image, q, q_len = inputs()
    target = torch.tensor([0, 3, 6])
    options = {**METHODS[method].options, ("nt_samples" if method == "smoothgrad" else "n_samples"): 4}
    attribute = make_attributor(model, method, options)
    torch.manual_seed(5)
    np.random.seed(5)
    batch = attribute(image.clone().requires_grad_(True), target, (q, q_len))
    torch.manual_seed(99)
    np.random.seed(99)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy())
    alone = attribute(image[1:2].clone().requires_grad_(True), target[1:2], (q[1:2], q_len[1:2]))
    assert torch.equal(before[0], torch.get_rng_state()) and np.array_equal(before[1], np.random.get_state()[1])
    torch.testing.assert_close(alone[0], batch[1], atol=1e-6, rtol=1e-5)
    other = make_attributor(model, method, {**options, "seed": 1})(
        image[1:2].clone().requires_grad_(True), target[1:2], (q[1:2], q_len[1:2])
    )
    assert not torch.allclose(other, alone)  # the seed is what the samples depend on
