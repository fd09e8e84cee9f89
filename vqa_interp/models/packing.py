"""Training a generative VLM on all the questions of an image in one sequence: the prompt's shared
prefix (up to and including the image tokens) once, then each question's remainder and answer as a
segment that sees the prefix and itself only.

With a block mask (a segment's tokens attend to the prefix and, causally, to their own segment) and
each segment's positions counted on from the prefix's end, every answer token is computed as it is in
the question's own sequence (the same attention rows over the same keys, at the same positions), so
the per-question log-probabilities equal :meth:`GenerativeVlm.run`'s (tested): the training objective
is unchanged. What changes is the work: the vision tower runs once per image instead of once per
question, and the LM reads an image's ~64 image tokens once for its ~5 questions instead of five times.

Families whose positions or extra inputs depend on the whole sequence (Qwen2-VL's 3-D rotary
positions, PaliGemma's prefix-LM token types) are not packed (:attr:`Family.packs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class PackedBatch:
    """Rows of packed sequences. ``input_ids [R, T]``, ``attention_mask [R, 1, T, T]`` (additive:
    0 where a query may attend, the dtype's minimum elsewhere), ``position_ids [R, T]``; ``answer_at``:
    for each question, ``(row, first answer index, answer token ids)``: its answer tokens are read at
    ``first .. first + n - 1``, each predicted by the logits one position before."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    answer_at: list[tuple[int, int, list[int]]]


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """The length of the longest common prefix of token-id lists."""
    first = prompts[0]
    n = min(len(p) for p in prompts)
    for i in range(n):
        if any(p[i] != first[i] for p in prompts):
            return i
    return n


def pack(
    groups: Sequence[Sequence[tuple[list[int], list[int]]]], image_token_id: int, pad_id: int, dtype=torch.float32
) -> PackedBatch:
    """One packed row per group (an image's questions): each ``(prompt ids, answer ids)`` with the
    image tokens expanded in the prompt. Raises ``ValueError`` where a group's prompts differ before
    their last image token (nothing to share)."""
    rows = []
    for group in groups:
        prompts = [prompt for prompt, _ in group]
        shared = shared_prefix(prompts)
        last_image = max(i for i, t in enumerate(prompts[0]) if t == image_token_id)
        if shared <= last_image:
            raise ValueError("the prompts of one image differ before their image tokens: nothing to share")
        shared = last_image + 1
        rows.append((prompts[0][:shared], [(prompt[shared:], answer) for prompt, answer in group]))
    length = max(len(prefix) + sum(len(rest) + len(answer) for rest, answer in segments) for prefix, segments in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    allowed = torch.zeros((len(rows), length, length), dtype=torch.bool)
    causal = torch.ones((length, length), dtype=torch.bool).tril()
    answer_at = []
    for r, (prefix, segments) in enumerate(rows):
        p = len(prefix)
        ids[r, :p] = torch.tensor(prefix)
        positions[r, :p] = torch.arange(p)
        allowed[r, :p, :p] = causal[:p, :p]
        start = p
        for rest, answer in segments:
            n = len(rest) + len(answer)
            end = start + n
            ids[r, start:end] = torch.tensor(rest + answer)
            positions[r, start:end] = torch.arange(p, p + n)
            allowed[r, start:end, :p] = True
            allowed[r, start:end, start:end] = causal[:n, :n]
            answer_at.append((r, start + len(rest), list(answer)))
            start = end
        allowed[r, range(start, length), range(start, length)] = True  # padding sees itself: no empty row
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return PackedBatch(ids, mask[:, None], positions, answer_at)


def packed_scores(model, pixels: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """``[Q]``: each question's teacher-forced answer log-probability (as
    :meth:`~vqa_interp.models.generative.GenerativeVlm.run`), one row of ``pixels [R, 3, S, S]`` per
    packed row."""
    out = model.module(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        **model.image_inputs(pixels),
    )
    rows, reads, tokens, owner = [], [], [], []
    for q, (r, first, answer) in enumerate(batch.answer_at):
        rows += [r] * len(answer)
        reads += range(first - 1, first - 1 + len(answer))
        tokens += answer
        owner += [q] * len(answer)
    logits = out.logits[torch.tensor(rows), torch.tensor(reads)].float()
    chosen = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens)[:, None])[:, 0]
    return torch.zeros(len(batch.answer_at), dtype=chosen.dtype).index_add(0, torch.tensor(owner), chosen)
