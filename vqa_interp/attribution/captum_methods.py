"""Captum's attribution methods as one table: a row per method names the Captum class, whether it
takes a layer, and which options go to ``attribute()``. Adding a Captum method is one row here
plus one ``conf/method/<name>.yaml``.

Every method runs on the model interface (:class:`~vqa_interp.models.base.VqaModel`): Captum's
forward is the model's scorer (``model.scorer(pixels, *question, *target) -> [B]``: a classifier's
target logit, a generative model's answer log-probability), the question and target encodings
travel as ``additional_forward_args`` (so Captum's ``target`` is None), a layer method reads
``model.layer(options["layer"])`` (``cam``: the model's CAM layer), and the black image is the
model's own (``model.black``).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

from vqa_interp.attribution.registry import Method, register

INF = float("inf")


@dataclass(frozen=True)
class CaptumRow:
    """``captum.attr.<cls>(model[, layer]).attribute(x, target, additional_forward_args, **attribute)``."""

    name: str
    cls: str
    attribute: dict = field(default_factory=dict)  # attribute() options and their defaults
    layer: str | None = None  # default layer for layer-based methods
    description: str = ""
    reference: str = ""
    aliases: tuple[str, ...] = ()
    relu: bool = False  # modifies ReLU backward passes (needs relu_units)


TABLE = (
    CaptumRow(
        "saliency",
        "Saliency",
        {"abs": True},
        description="|gradient| of the target logit w.r.t. the pixels",
        reference="Simonyan et al. 2014",
        aliases=("salien",),
    ),
    CaptumRow(
        "gbackp",
        "GuidedBackprop",
        description="Guided Backpropagation",
        reference="Springenberg et al. 2015",
        relu=True,
    ),
    CaptumRow("deconv", "Deconvolution", description="DeconvNet", reference="Zeiler & Fergus 2014", relu=True),
    CaptumRow(
        "ggradcam",
        "GuidedGradCam",
        {"interpolate_mode": "nearest"},
        layer="cam",
        description="Guided Backprop x upsampled ReLU(Grad-CAM) on the backbone's last block",
        reference="Selvaraju et al. 2017",
        aliases=("ggrdcm",),
        relu=True,
    ),
    CaptumRow("inputxgrad", "InputXGradient", description="input x gradient", reference="Shrikumar et al. 2016"),
)


def _builder(row: CaptumRow):
    def build(model, options):
        import captum.attr

        cls = getattr(captum.attr, row.cls)
        explainer = cls(model.scorer, model.layer(options["layer"])) if row.layer else cls(model.scorer)
        kwargs = {key: options[key] for key in row.attribute}

        def attribute(x, target, question):
            with warnings.catch_warnings():
                # Captum warns on every Guided Backprop / DeconvNet call that it hooks the ReLU modules:
                # that is the method working as intended (one ReLU module per call site), not a problem
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
                return explainer.attribute(x, additional_forward_args=(*question, *target), **kwargs)

        return attribute

    return build


for _row in TABLE:
    register(
        Method(
            _row.name,
            _builder(_row),
            {**_row.attribute, **({"layer": _row.layer} if _row.layer else {})},
            _row.description,
            _row.reference,
            _row.aliases,
            needs=("pixels", *(("cam_layer",) if _row.layer else ()), *(("relu_units",) if _row.relu else ())),
        )
    )


# ------------------------------------------------------------------ methods beyond the paper
def _target_scores(model, x, target, question):
    import torch

    with torch.no_grad():
        return model.target_scores(x, question, target)


def _integrated_gradients(model, options):
    """Integrated Gradients from a black image (Sundararajan et al. 2017), with the completeness
    error ``|sum(attr) - (f(x) - f(black))| / |f(x) - f(black)|`` of each map (f: the target's score)."""
    from captum.attr import IntegratedGradients

    explainer = IntegratedGradients(model.scorer)

    def ig(x, target, question):
        return explainer.attribute(
            x,
            baselines=model.black(x),
            additional_forward_args=(*question, *target),
            n_steps=options["n_steps"],
            method="gausslegendre",
            internal_batch_size=options["internal_batch_size"],
            return_convergence_delta=True,
        )

    def attribute(x, target, question):
        from vqa_interp.attribution.question import in_chunks
        from vqa_interp.models.base import take

        baseline = model.black(x)
        # at most internal_batch_size images a call: below that, Captum warns and raises its batch
        attr, delta = in_chunks(
            lambda rows: ig(x[rows], take(target, rows), take(question, rows)), len(x), options["internal_batch_size"]
        )
        gap = (_target_scores(model, x, target, question) - _target_scores(model, baseline, target, question)).abs()
        return attr, {"completeness_error": (delta.detach().abs() / gap.clamp_min(1e-12)).cpu()}

    return attribute


@contextlib.contextmanager
def seeded(seed: int, device):
    """Inside, torch's generators (the CPU's and ``device``'s) and NumPy's global one start from
    ``seed``; their states are restored after. Captum's sampling methods draw from the global
    generators (NoiseTunnel: ``torch.normal``; GradientShap: ``np.random``), so without this an
    image's map would depend on what was drawn before it: its batch, the batch size the memory
    budget chose, the run's other work."""
    import numpy as np
    import torch

    device = torch.device(device)
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _smoothgrad(model, options):
    """SmoothGrad (Smilkov et al. 2017): |gradient| averaged over noisy copies of the input, noise
    sd = ``noise`` x the image's value range. Each image is drawn on its own from generators seeded
    with ``seed`` (:func:`seeded`): a map does not depend on its batch."""
    import torch
    from captum.attr import NoiseTunnel, Saliency

    from vqa_interp.models.base import take

    explainer = NoiseTunnel(Saliency(model.scorer))

    def attribute(x, target, question):
        out = []
        for i in range(len(x)):
            image = x[i : i + 1]
            sd = float(options["noise"]) * float((image.max() - image.min()).item())
            with seeded(int(options["seed"]), x.device):
                # nt_samples_batch_size: set by the run's memory budget (vqa_interp.pipeline.memory)
                out.append(
                    explainer.attribute(
                        image,
                        nt_type="smoothgrad",
                        nt_samples=options["nt_samples"],
                        nt_samples_batch_size=options.get("nt_samples_batch_size", options["nt_samples"]),
                        stdevs=sd,
                        additional_forward_args=(*take(question, [i]), *take(target, [i])),
                        abs=True,
                    )
                )
        return torch.cat(out)

    return attribute


def _gradcam(model, options):
    """Grad-CAM (Selvaraju et al. 2017) on ``layer``: ReLU of the gradient-weighted channel sum,
    upsampled bilinearly to the input; on a model without a spatial CAM layer, over the image tokens of
    a transformer layer (:func:`vqa_interp.attribution.transformer_methods.token_gradcam`)."""
    from captum.attr import LayerAttribution, LayerGradCam

    if "cam_layer" not in model.provides:
        from vqa_interp.attribution.transformer_methods import token_gradcam

        model.token_layer(options["layer"])  # an unknown layer is refused before any work
        return lambda x, target, question: token_gradcam(model, x, target, question, options["layer"])

    explainer = LayerGradCam(model.scorer, model.layer(options["layer"]))

    def attribute(x, target, question):
        cam = explainer.attribute(x, additional_forward_args=(*question, *target), relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")

    return attribute


def _gradient_shap(model, options):
    """GradientShap (Lundberg & Lee 2017) with two baselines per image: a black image and the image
    blurred with a Gaussian of sigma ``blur`` x the side; ``n_samples`` random points between them
    and the input, drawn for each image from generators seeded with ``seed`` (:func:`seeded`)."""
    import torch
    from captum.attr import GradientShap
    from torchvision.transforms.functional import gaussian_blur

    from vqa_interp.models.base import take

    explainer = GradientShap(model.scorer)

    def attribute(x, target, question):
        sigma = max(0.5, float(options["blur"]) * x.shape[-1])
        kernel = 2 * int(3 * sigma) + 1
        blurred = gaussian_blur(x, [kernel, kernel], [sigma, sigma])
        out = []
        for i in range(len(x)):  # each image has its own blurred baseline
            baselines = torch.cat([model.black(x[i : i + 1]), blurred[i : i + 1]])
            with seeded(int(options["seed"]), x.device):
                out.append(
                    explainer.attribute(
                        x[i : i + 1],
                        baselines=baselines,
                        n_samples=options["n_samples"],
                        stdevs=0.0,
                        additional_forward_args=(*take(question, [i]), *take(target, [i])),
                    )
                )
        return torch.cat(out)

    return attribute


def _occlusion(model, options):
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a ``window`` x ``window``
    pixel patch is blacked out, sliding by ``stride`` pixels; ``perturbations_per_eval`` patches per
    forward pass."""
    from captum.attr import Occlusion

    explainer = Occlusion(model.scorer)

    def attribute(x, target, question):
        w, s = int(options["window"]), int(options["stride"])
        return explainer.attribute(
            x,
            sliding_window_shapes=(3, w, w),
            strides=(3, s, s),
            baselines=model.black(x),
            additional_forward_args=(*question, *target),
            perturbations_per_eval=int(options["perturbations_per_eval"]),
        )

    return attribute


for _method in (
    Method(
        "ig",
        _integrated_gradients,
        {"n_steps": 64, "internal_batch_size": 64},
        "Integrated Gradients from a black image",
        "Sundararajan et al. 2017",
        ranges={"n_steps": (1, INF), "internal_batch_size": (1, INF)},
    ),
    Method(
        "smoothgrad",
        _smoothgrad,
        {"nt_samples": 16, "noise": 0.15, "seed": 0},
        "SmoothGrad: |gradient| averaged over noisy inputs",
        "Smilkov et al. 2017",
        ranges={"nt_samples": (1, INF), "noise": (0.0, INF), "seed": (0, 2**32 - 1)},
    ),
    Method(
        "gradcam",
        _gradcam,
        {"layer": "cam"},
        "Grad-CAM on the model's CAM layer (the backbone's last block), "
        "upsampled; on a generative VLM over the image tokens of a language-model layer (default its middle)",
        "Selvaraju et al. 2017",
        needs=("pixels", "cam_layer|token_states"),
    ),
    Method(
        "gradshap",
        _gradient_shap,
        {"n_samples": 16, "blur": 0.0625, "seed": 0},
        "GradientShap with a black and a blurred-image baseline",
        "Lundberg & Lee 2017",
        ranges={"n_samples": (1, INF), "blur": (0.0, INF), "seed": (0, 2**32 - 1)},
    ),
    Method(
        "occlusion",
        _occlusion,
        {"window": 8, "stride": 4, "perturbations_per_eval": 64},
        "Occlusion: target-score drop under a sliding black patch",
        "Zeiler & Fergus 2014",
        ranges={"window": (1, INF), "stride": (1, INF), "perturbations_per_eval": (1, INF)},
    ),
):
    register(_method)
