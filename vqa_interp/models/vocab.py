"""Questions to token tensors and the vocabularies of a pytorch-vqa checkpoint (its tokenisation and
conventions: question tokens indexed from 1, 0 = padding/unknown)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch

from vqa_interp.data.answers import normalize_answer, tokenize_question


def build_question_vocab(questions: Iterable[str]) -> dict[str, int]:
    """Tokens by descending frequency (ties alphabetical), indexed from 1 (0 = padding/unknown)."""
    counts = Counter(tok for q in questions for tok in tokenize_question(q))
    ordered = sorted(counts, key=lambda t: (-counts[t], t))
    return {tok: i + 1 for i, tok in enumerate(ordered)}


def build_answer_vocab(answer_lists: Iterable[Sequence[str]], max_answers: int) -> dict[str, int]:
    """The ``max_answers`` most frequent normalised answers (over all 10 per question), index from 0."""
    counts = Counter(normalize_answer(a) for answers in answer_lists for a in answers)
    ordered = sorted(counts, key=lambda a: (-counts[a], a))[:max_answers]
    return {a: i for i, a in enumerate(ordered)}


def encode_questions(questions: Sequence[str], vocab: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q [B, T] int64, q_len [B] int64)``; unknown tokens map to 0 like pytorch-vqa."""
    encoded = [[vocab.get(t, 0) for t in tokenize_question(q)] for q in questions]
    length = max(1, max((len(e) for e in encoded), default=1))
    q = torch.zeros(len(encoded), length, dtype=torch.long)
    for i, e in enumerate(encoded):
        q[i, : len(e)] = torch.tensor(e, dtype=torch.long)
    return q, torch.tensor([max(1, len(e)) for e in encoded], dtype=torch.long)


def answer_lookup(answers: Sequence[str]) -> dict[str, int]:
    """The answer vocabulary (``answers`` by logit index) keyed by the official normalisation of each
    answer, so that a label ("2") finds the model's answer under whatever spelling the vocabulary
    used ("two"). Where two entries normalise alike, the more frequent one (lower index) wins."""
    lookup: dict[str, int] = {}
    for index, answer in enumerate(answers):
        lookup.setdefault(normalize_answer(answer), index)
    return lookup
