"""Models behind one interface (:mod:`~vqa_interp.models.base`), registered by kind
(:mod:`~vqa_interp.models.registry`): the Kazemi & Elqursh net (pytorch-vqa names) with its image
backbones, pytorch-vqa checkpoints, and the training of a model on the embedded benchmark
(:mod:`vqa_interp.models.training`)."""

from vqa_interp.models import kazemi  # noqa: F401, I001  (registers model.kind=kazemi)
from vqa_interp.models import vilt  # noqa: F401, I001  (registers model.kind=vilt)
from vqa_interp.models import hf_vlm  # noqa: F401, I001  (registers model.kind=hf_vlm)
from vqa_interp.models.backbones import ResNetBackbone, SmallConvBackbone, build_backbone
from vqa_interp.models.base import ATTACHMENTS, VqaModel, take
from vqa_interp.models.checkpoint import read_checkpoint, save_checkpoint
from vqa_interp.models.kazemi import KazemiModel, load_model
from vqa_interp.models.kazemi_net import KazemiNetwork, Net, net_dims_from_weights
from vqa_interp.models.registry import MODELS, ModelKind, check_method, model_kind, register_model

__all__ = [
    "VqaModel",
    "ATTACHMENTS",
    "take",
    "MODELS",
    "ModelKind",
    "register_model",
    "model_kind",
    "check_method",
    "KazemiModel",
    "Net",
    "KazemiNetwork",
    "net_dims_from_weights",
    "load_model",
    "SmallConvBackbone",
    "ResNetBackbone",
    "build_backbone",
    "read_checkpoint",
    "save_checkpoint",
]
