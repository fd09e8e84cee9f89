"""The Kazemi & Elqursh (2017) "Show, Ask, Attend, and Answer" VQA model, with an image backbone.

Module and parameter names follow Cyanogenoid/pytorch-vqa (``text``, ``attention``,
``classifier.lin1`` ...), so that its released checkpoint loads into :class:`Net` unchanged.
:class:`VQAModel` puts an image backbone in front of it so that attributions can be taken with
respect to the image pixels.

Guided Backprop and DeconvNet (Captum) override ``nn.ReLU`` *modules*; so every ReLU call site
here is its own non-inplace ``nn.ReLU`` (never ``F.relu``), backbones included.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class TextProcessor(nn.Module):
    """Question encoder: ``[B, T]`` token ids (0 = padding/unknown) -> ``[B, lstm_features]``
    final LSTM cell state."""

    def __init__(self, embedding_tokens: int, embedding_features: int, lstm_features: int, drop: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(embedding_tokens, embedding_features, padding_idx=0)
        self.drop = nn.Dropout(drop)
        self.tanh = nn.Tanh()
        self.lstm = nn.LSTM(input_size=embedding_features, hidden_size=lstm_features, num_layers=1)
        self.lstm_features = lstm_features

    def forward(self, q: torch.Tensor, q_len: torch.Tensor) -> torch.Tensor:
        embedded = self.tanh(self.drop(self.embedding(q)))
        packed = pack_padded_sequence(embedded, q_len.detach().cpu().clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        _, (_, c) = self.lstm(packed)
        return c.squeeze(0)


class Attention(nn.Module):
    """``v [B, V, h, w]``, ``q [B, Q]`` -> attention logits ``[B, glimpses, h, w]``."""

    def __init__(self, v_features: int, q_features: int, mid_features: int, glimpses: int, drop: float = 0.0):
        super().__init__()
        self.v_conv = nn.Conv2d(v_features, mid_features, 1, bias=False)
        self.q_lin = nn.Linear(q_features, mid_features)
        self.x_conv = nn.Conv2d(mid_features, glimpses, 1)
        self.drop = nn.Dropout(drop)
        self.relu = nn.ReLU()

    def forward(self, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        v = self.v_conv(self.drop(v))
        q = self.q_lin(self.drop(q))
        x = self.relu(v + q[:, :, None, None].expand_as(v))
        return self.x_conv(self.drop(x))


def apply_attention(v: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Softmax over positions per glimpse, then weighted sums: ``[B, V, h, w]`` -> ``[B, glimpses*V]``."""
    n, c = v.shape[:2]
    glimpses = attention.shape[1]
    weights = torch.softmax(attention.flatten(2), dim=-1)           # [B, g, hw]
    weighted = torch.einsum("bgs,bcs->bgc", weights, v.flatten(2))  # [B, g, V]
    return weighted.reshape(n, glimpses * c)


class Classifier(nn.Sequential):
    def __init__(self, in_features: int, mid_features: int, out_features: int, drop: float = 0.0):
        super().__init__()
        self.add_module("drop1", nn.Dropout(drop))
        self.add_module("lin1", nn.Linear(in_features, mid_features))
        self.add_module("relu", nn.ReLU())
        self.add_module("drop2", nn.Dropout(drop))
        self.add_module("lin2", nn.Linear(mid_features, out_features))


class Net(nn.Module):
    """pytorch-vqa's ``Net``: image features ``[B, V, h, w]`` + question -> answer logits ``[B, A]``."""

    def __init__(self, embedding_tokens: int, *, v_features: int = 2048, embedding_features: int = 300,
                 lstm_features: int = 1024, mid_features: int = 512, glimpses: int = 2,
                 classifier_mid: int = 1024, max_answers: int = 3000, drop: float = 0.5):
        super().__init__()
        self.text = TextProcessor(embedding_tokens, embedding_features, lstm_features, drop)
        self.attention = Attention(v_features, lstm_features, mid_features, glimpses, drop)
        self.classifier = Classifier(glimpses * v_features + lstm_features, classifier_mid, max_answers, drop)

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor) -> torch.Tensor:
        q = self.text(q, q_len)
        v = v / (v.norm(p=2, dim=1, keepdim=True) + 1e-8)
        a = self.attention(v, q)
        v = apply_attention(v, a)
        return self.classifier(torch.cat([v, q], dim=1))


def net_dims_from_weights(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """Derive :class:`Net`'s sizes from a (prefix-free) state_dict, so any checkpoint loads."""
    lin1 = weights["classifier.lin1.weight"]
    lstm_features = weights["text.lstm.weight_hh_l0"].shape[1]
    v_features = weights["attention.v_conv.weight"].shape[1]
    return {
        "embedding_tokens": weights["text.embedding.weight"].shape[0],
        "embedding_features": weights["text.embedding.weight"].shape[1],
        "lstm_features": lstm_features,
        "v_features": v_features,
        "mid_features": weights["attention.v_conv.weight"].shape[0],
        "glimpses": weights["attention.x_conv.weight"].shape[0],
        "classifier_mid": lin1.shape[0],
        "max_answers": weights["classifier.lin2.weight"].shape[0],
    }


# ---------------------------------------------------------------- backbones
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


class ResNetBackbone(nn.Module):
    """torchvision ResNet up to ``layer4``: ``[B, 3, 448, 448]`` -> ``[B, 2048, 14, 14]`` (ResNet-152)."""

    def __init__(self, depth: int = 152):
        super().__init__()
        import torchvision

        resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, nn.ReLU(), resnet.maxpool
        for name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(resnet, name)
            setattr(self, name, nn.Sequential(*[SeparateReluBottleneck(b) for b in layer]))
        self.out_channels = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision ``resnetN`` state_dict (its ``fc.*`` keys are ignored)."""
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.load_state_dict(state, strict=True)


def build_backbone(spec: dict) -> nn.Module:
    """``{"type": "small_cnn", "channels": 128}`` or ``{"type": "resnet", "depth": 152}``."""
    kind = spec.get("type")
    if kind == "small_cnn":
        return SmallConvBackbone(int(spec.get("channels", 128)))
    if kind == "resnet":
        return ResNetBackbone(int(spec.get("depth", 152)))
    raise ValueError(f"model.backbone.type: unknown backbone {kind!r}; expected 'small_cnn' or 'resnet'.")


class VQAModel(nn.Module):
    """Pixels to answers: ``image [B, 3, S, S]``, ``q [B, T]``, ``q_len [B]`` -> logits ``[B, A]``."""

    def __init__(self, backbone: nn.Module, net: Net):
        super().__init__()
        self.backbone = backbone
        self.net = net

    def forward(self, image: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor) -> torch.Tensor:
        return self.net(self.backbone(image), q, q_len)
