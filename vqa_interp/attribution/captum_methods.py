"""Captum's attribution methods as one table: a row per method names the Captum class, whether it
takes a layer, and which options go to ``attribute()``. Adding a Captum method is one row here
plus one ``conf/method/<name>.yaml``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from vqa_interp.attribution.registry import Method, register, resolve_layer



@dataclass(frozen=True)
class CaptumRow:
    """``captum.attr.<cls>(model[, layer]).attribute(x, target, additional_forward_args, **attribute)``."""
    name: str
    cls: str
    attribute: dict = field(default_factory=dict)     # attribute() options and their defaults
    layer: str | None = None                          # default layer for layer-based methods
    description: str = ""
    reference: str = ""
    aliases: tuple[str, ...] = ()


TABLE = (
    CaptumRow("saliency", "Saliency", {"abs": True}, description="|gradient| of the target logit w.r.t. the pixels",
              reference="Simonyan et al. 2014", aliases=("salien",)),
    CaptumRow("gbackp", "GuidedBackprop", description="Guided Backpropagation",
              reference="Springenberg et al. 2015"),
    CaptumRow("deconv", "Deconvolution", description="DeconvNet", reference="Zeiler & Fergus 2014"),
    CaptumRow("ggradcam", "GuidedGradCam", {"interpolate_mode": "nearest"}, layer="backbone.layer4",
              description="Guided Backprop x upsampled ReLU(Grad-CAM) on the backbone's last block",
              reference="Selvaraju et al. 2017", aliases=("ggrdcm",)),
    CaptumRow("inputxgrad", "InputXGradient", description="input x gradient", reference="Shrikumar et al. 2016"),
)


def _builder(row: CaptumRow):
    def build(model, options):
        import captum.attr

        cls = getattr(captum.attr, row.cls)
        explainer = cls(model, resolve_layer(model, options["layer"])) if row.layer else cls(model)
        kwargs = {key: options[key] for key in row.attribute}

        def attribute(x, t, q, ql):
            with warnings.catch_warnings():
                # Captum warns on every Guided Backprop / DeconvNet call that it hooks the ReLU modules:
                # that is the method working as intended (one ReLU module per call site), not a problem
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
                return explainer.attribute(x, target=t, additional_forward_args=(q, ql), **kwargs)
        return attribute
    return build


for _row in TABLE:
    register(Method(_row.name, _builder(_row), {**_row.attribute, **({"layer": _row.layer} if _row.layer else {})},
                    _row.description, _row.reference, _row.aliases))
