"""Image backbones in front of the Kazemi & Elqursh net: ``[B, 3, S, S]`` -> ``[B, C, h, w]``.

- :class:`SmallConvBackbone`: the embedded model's small CNN (64x64 -> 8x8).
- :class:`ResNetBackbone`: ResNet up to ``layer4`` (ResNet-152 at 448x448 -> ``[2048, 14, 14]``), in
  two variants with identical state-dict keys:
  ``caffe`` (default for ``model=kazemi``): Kaiming He's Caffe ResNet-152 as converted by
  Cyanogenoid/pytorch-resnet (``resnet152-95e0e999.pth``), the network pytorch-vqa's checkpoint was
  trained on: ``maxpool = MaxPool2d(3, stride=2, padding=0, ceil_mode=True)`` and, in the first block
  of layer2-4, the stride on the 1x1 ``conv1`` (the 3x3 ``conv2`` has stride 1);
  ``torchvision``: torchvision's ResNet (``resnet152-394f9c45.pth``), a different network whose 2048
  channels do not correspond to the Caffe one's: with pytorch-vqa's checkpoint it is another,
  untrained model, kept only as a named alternative.

Guided Backprop and DeconvNet (Captum) override ``nn.ReLU`` *modules*; so every ReLU call site here is
its own non-inplace ``nn.ReLU`` (never ``F.relu``).
"""

from __future__ import annotations

import torch
from torch import nn

RESNET_VARIANTS = ("caffe", "torchvision")


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallConvBackbone(nn.Module):
    """The embedded model's image encoder: ``[B, 3, S, S]`` -> ``[B, channels, S/8, S/8]``.

    Named ``layer1..layer4`` like ResNet so that ``ggradcam``'s default layer (``backbone.layer4``)
    means the same for both backbones.
    """

    def __init__(self, channels: int = 128):
        super().__init__()
        self.layer1 = _conv_block(3, 32, 2)
        self.layer2 = _conv_block(32, 64, 2)
        self.layer3 = _conv_block(64, channels, 2)
        self.layer4 = _conv_block(channels, channels, 1)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SeparateReluBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` with one non-inplace ``nn.ReLU`` per call site.

    torchvision applies one in-place ``self.relu`` three times; this keeps its parameters (same
    state_dict keys) and gives each application its own module, as Guided Backprop needs.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.downsample = block.downsample
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.relu3(self.bn3(self.conv3(out)) + identity)


def _move_stride_to_conv1(block: nn.Module) -> None:
    """Caffe ResNet: a downsampling bottleneck strides in its 1x1 ``conv1``, not its 3x3 ``conv2``."""
    stride = block.conv2.stride
    if stride != (1, 1):
        block.conv1.stride = stride
        block.conv2.stride = (1, 1)


class ResNetBackbone(nn.Module):
    """ResNet up to ``layer4``: ``[B, 3, 448, 448]`` -> ``[B, 2048, 14, 14]`` (ResNet-152).

    ``variant="caffe"`` is the network pytorch-vqa's features came from; ``"torchvision"`` is
    torchvision's (see the module docs). Both load the same state-dict keys.
    """

    def __init__(self, depth: int = 152, variant: str = "caffe"):
        super().__init__()
        import torchvision

        if variant not in RESNET_VARIANTS:
            raise ValueError(f"model.backbone.variant: {variant!r} is unknown; expected one of {RESNET_VARIANTS}")
        self.variant = variant
        resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu = resnet.conv1, resnet.bn1, nn.ReLU()
        self.maxpool = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True) if variant == "caffe" else resnet.maxpool
        )
        for name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(resnet, name)
            if variant == "caffe":
                _move_stride_to_conv1(layer[0])
            setattr(self, name, nn.Sequential(*[SeparateReluBottleneck(b) for b in layer]))
        self.out_channels = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a ``resnetN`` state_dict of either variant (its ``fc.*`` keys are ignored)."""
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.load_state_dict(state, strict=True)


def build_backbone(spec: dict) -> nn.Module:
    """``{"type": "small_cnn", "channels": 128}`` or ``{"type": "resnet", "depth": 152, "variant": "caffe"}``."""
    kind = spec.get("type")
    if kind == "small_cnn":
        return SmallConvBackbone(int(spec.get("channels", 128)))
    if kind == "resnet":
        return ResNetBackbone(int(spec.get("depth", 152)), str(spec.get("variant", "caffe")))
    raise ValueError(f"model.backbone.type: unknown backbone {kind!r}; expected 'small_cnn' or 'resnet'.")
