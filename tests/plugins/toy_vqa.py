"""A toy VQA model registered from outside the package: the "adding a model" recipe of
docs/design/extending.md, in one file (plus ``conf/model/toy.yaml`` beside it).

Its inputs are its own: a question is ``(token_ids [B, T] int64, mask [B, T] float32)`` with words
hashed into ``vocab`` ids (0 = padding); the image goes through two convolutions to a ``[B, 16,
S/4, S/4]`` grid (its CAM layer), which the question's mean embedding weights before the answer
head. Weights are seeded from the config (``model.seed``): no checkpoint, no training.
"""

import zlib

import torch
from torch import nn

from vqa_interp.data.answers import tokenize_question
from vqa_interp.data.images import InputGeometry
from vqa_interp.models import ModelKind, VqaModel, register_model
from vqa_interp.util.signature import signature


class ToyNet(nn.Module):
    """``pixels [B, 3, S, S]``, ``token_ids [B, T]``, ``mask [B, T]`` -> logits ``[B, A]``."""

    def __init__(self, vocab: int, answers: int, width: int = 16):
        super().__init__()
        self.grid = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, width, 3, 2, 1), nn.ReLU())
        self.embedding = nn.Embedding(vocab, width, padding_idx=0)
        self.text = nn.Linear(width, width)
        self.head = nn.Sequential(nn.Linear(2 * width, 32), nn.ReLU(), nn.Linear(32, answers))

    def forward(self, pixels, token_ids, mask):
        grid = self.grid(pixels)  # [B, C, h, w]
        words = self.embedding(token_ids) * mask[..., None]  # [B, T, C]
        q = torch.tanh(self.text(words.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)))
        weights = torch.softmax(torch.einsum("bchw,bc->bhw", grid, q).flatten(1), dim=1)
        v = torch.einsum("bcs,bs->bc", grid.flatten(2), weights)
        return self.head(torch.cat([v, q], dim=1))


class ToyModel(VqaModel):
    kind = "toy"
    provides = frozenset({"pixels", "cam_layer", "text_embedding", "blocks"})

    def __init__(self, options: dict, geometry: InputGeometry):
        torch.manual_seed(int(options["seed"]))
        self.vocab = int(options["vocab"])
        self.answers = [str(a) for a in options["answers"]]
        self.module = ToyNet(self.vocab, len(self.answers)).eval()
        self.geometry = geometry
        self.checkpoint_digest = signature({"toy": options})
        self.description = f"toy net, seed {options['seed']}"

    def tokens(self, question):
        return tokenize_question(question)

    def encode(self, questions):
        ids = [[zlib.crc32(w.encode()) % (self.vocab - 1) + 1 for w in self.tokens(q)] for q in questions]
        length = max(1, max(len(i) for i in ids))
        token_ids = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length)
        for row, words in enumerate(ids):
            token_ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
            mask[row, : len(words)] = 1.0
        return token_ids, mask

    def token_mask(self, question):
        return question[1] > 0

    def question_baseline(self, question):
        token_ids, mask = question
        return torch.zeros_like(token_ids), mask

    def cam_layer(self):
        return self.module.grid

    def text_embedding(self):
        return self.module.embedding

    def blocks(self):
        m = self.module
        return [("head", m.head), ("text", nn.ModuleList([m.embedding, m.text])), ("grid", m.grid)]


register_model(
    ModelKind(
        "toy",
        lambda settings, checkpoint: ToyModel(
            settings.options, InputGeometry(settings.input_size, settings.central_fraction)
        ),
        ToyModel.provides,
        needs_checkpoint=False,
        description="a toy CNN + bag-of-words model",
    )
)
