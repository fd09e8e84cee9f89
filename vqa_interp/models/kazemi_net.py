"""The Kazemi & Elqursh (2017) network with pytorch-vqa's module names (``text``, ``attention``,
``classifier``), so that pytorch-vqa checkpoints load as they are: an LSTM over the question, a
two-glimpse attention over the backbone's grid ``[B, C, h, w]``, a classifier over the answers."""

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
        packed = pack_padded_sequence(
            embedded, q_len.detach().cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
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
    weights = torch.softmax(attention.flatten(2), dim=-1)  # [B, g, hw]
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

    def __init__(
        self,
        embedding_tokens: int,
        *,
        v_features: int = 2048,
        embedding_features: int = 300,
        lstm_features: int = 1024,
        mid_features: int = 512,
        glimpses: int = 2,
        classifier_mid: int = 1024,
        max_answers: int = 3000,
        drop: float = 0.5,
    ):
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


class KazemiNetwork(nn.Module):
    """Pixels to answers: ``image [B, 3, S, S]``, ``q [B, T]``, ``q_len [B]`` -> logits ``[B, A]``."""

    def __init__(self, backbone: nn.Module, net: Net):
        super().__init__()
        self.backbone = backbone
        self.net = net

    def forward(self, image: torch.Tensor, q: torch.Tensor, q_len: torch.Tensor) -> torch.Tensor:
        return self.net(self.backbone(image), q, q_len)


# ------------------------------------------------------------------ the model interface
