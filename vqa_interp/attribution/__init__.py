"""Attribution maps w.r.t. the image pixels: a registry of methods (Captum's, as one table),
batched computation and a content-addressed cache. Every method takes the model interface
(:class:`vqa_interp.models.base.VqaModel`).

To add a method: one row in :data:`vqa_interp.attribution.captum_methods.TABLE` (or a
:func:`register` call with your own builder) plus one ``conf/method/<name>.yaml``.
"""

from vqa_interp.attribution import captum_methods  # noqa: F401, I001  (registers Captum's methods)
from vqa_interp.attribution import baselines  # noqa: F401, I001  (registers the model-free baselines)
from vqa_interp.attribution import transformer_methods  # noqa: F401, I001  (attention, rollout, chefer)
from vqa_interp.attribution.compute import CHANNEL_REDUCTIONS, MapRequest, compute_maps, reduce_channels
from vqa_interp.attribution.registry import METHODS, AttributeFn, Method, make_attributor, register

__all__ = [
    "METHODS",
    "Method",
    "AttributeFn",
    "register",
    "make_attributor",
    "MapRequest",
    "compute_maps",
    "reduce_channels",
    "CHANNEL_REDUCTIONS",
]
