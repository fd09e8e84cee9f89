"""Models: the Kazemi & Elqursh net (pytorch-vqa names), image backbones, pytorch-vqa checkpoints and
the training of the embedded model (:mod:`vqa_interp.models.training`)."""
from vqa_interp.models.backbones import ResNetBackbone, SmallConvBackbone, build_backbone
from vqa_interp.models.checkpoint import LoadedModel, load_model, read_checkpoint, save_checkpoint
from vqa_interp.models.kazemi import Net, VQAModel, net_dims_from_weights

__all__ = ["Net", "VQAModel", "net_dims_from_weights", "SmallConvBackbone", "ResNetBackbone", "build_backbone",
           "LoadedModel", "load_model", "read_checkpoint", "save_checkpoint"]
