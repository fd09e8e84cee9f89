"""Generative vision-language models behind the model interface: any ``AutoModelForImageTextToText``
``save_pretrained`` folder with its processor whose pixel input the tool can build
(``model=hf_vlm model.pretrained=DIR``), and the embedded LLaVA trained here (``model=embedded_llava``).

What a method explains is the **teacher-forced log-probability of a target answer's tokens** (then the
end-of-sequence token, so that the probabilities of complete answers are comparable) after the
prompt: :class:`VlmScore`, ``forward(pixels, input_ids, attention_mask, answer_ids, answer_mask) ->
[B]``. Nothing is differentiated through ``generate()``: predictions are decoded first, then scored.

- **The same image.** Every model gets the tool's square ``[B, 3, S, S]`` input (ImageNet-normalised,
  :mod:`vqa_interp.data.images`); the family's pixel input is built from it by a differentiable
  function (:class:`Family.pixel_inputs`: back to [0, 1], resized to the processor's size where it
  differs, normalised with the processor's mean and std), so a map covers exactly the image the human
  maps cover. A family whose pixel input the tool cannot build is refused in one line.
- **Prompt.** The processor's chat template around one image and the question (``model.prompt``, a
  format string with ``{question}``, overrides it); the processor expands the image tokens. Prompts
  are padded on the left, answers on the right, and the positions are counted over the real tokens
  only, so an example scores the same alone and in a padded batch.
- **Prediction.** ``model.answer_mode=open``: greedy decoding of at most ``model.max_new_tokens``
  tokens, normalised as the VQA evaluation does; ``multiple_choice``: the candidate with the highest
  score. The confidence is the answer's probability normalised over the question's multiple-choice
  candidates (VQA 1.0 ships 18) and the answer itself, so the paper's p < 0.25 / p > 0.75 bands keep
  their meaning; without candidates, the answer's own probability.
- **Token layout** for transformer-native maps: the rows that predict the answer's tokens (their
  mean), the image-token columns of each example, laid out on the vision grid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from vqa_interp.data.answers import normalize_answer
from vqa_interp.data.images import IMAGENET_MEAN, IMAGENET_STD, InputGeometry
from vqa_interp.errors import ConfigError
from vqa_interp.models.base import VqaModel
from vqa_interp.models.vlm_families import Family

ANSWER_MODES = ("open", "multiple_choice")


class VlmScore(nn.Module):
    """``forward(pixels, input_ids, attention_mask, answer_ids, answer_mask) -> [B]``: the
    teacher-forced log-probability of each example's answer tokens after its prompt."""

    def __init__(self, owner: "GenerativeVlm"):
        super().__init__()
        self.hf = owner.module
        self.owner = owner

    def forward(self, pixels, input_ids, attention_mask, answer_ids, answer_mask):
        return self.owner.run(pixels, (input_ids, attention_mask), (answer_ids, answer_mask))[0]


class GenerativeVlm(VqaModel):
    """A generative VLM: question encoding ``(input_ids [B, L], attention_mask [B, L])`` (the prompt,
    left-padded), target encoding ``(answer_ids [B, La], answer_mask [B, La])`` (the answer's tokens
    and the end-of-sequence token, right-padded)."""

    kind = "hf_vlm"
    generative = True
    confidence = "candidates"
    provides = frozenset({"pixels", "attentions", "blocks", "text_embedding", "token_states"})

    def __init__(
        self,
        hf,
        processor,
        family: Family,
        geometry: InputGeometry,
        *,
        prompt: str | None = None,
        answer_mode: str = "open",
        max_new_tokens: int = 4,
        checkpoint_digest: str = "",
        description: str = "",
    ):
        self.module = hf
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.family = family
        self.geometry = geometry
        self.prompt = prompt
        self.answer_mode = answer_mode
        self.max_new_tokens = int(max_new_tokens)
        self.checkpoint_digest = checkpoint_digest
        self.description = description
        self.answers = []
        self.image_token_id = int(hf.config.image_token_id)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_id = self.tokenizer.eos_token_id
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32)[None, :, None, None]
        self._imagenet = (mean, std)
        self._prompts: dict[str, list[int]] = {}

    # ------------------------------------------------------------ text
    def prompt_text(self, question: str) -> str:
        if self.prompt:
            return self.prompt.format(question=question)
        if self.family.default_prompt and not getattr(self.processor, "chat_template", None):
            return self.family.default_prompt.format(question=question)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt's token ids with the image tokens expanded (the processor's own expansion)."""
        if question not in self._prompts:
            size = self.family.render_size(self.processor, self.geometry.size)
            blank = np.zeros((*size, 3), dtype=np.uint8)
            encoded = self.processor(images=blank, text=self.prompt_text(question), return_tensors="pt")
            self._prompts[question] = encoded["input_ids"][0].tolist()
        return self._prompts[question]

    def _question_positions(self, ids: list[int], question: str) -> list[int]:
        """Where the question's own tokens sit in a prompt (its last occurrence; [] if not found)."""
        for text in (question, " " + question):
            words = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            n = len(words)
            for start in range(len(ids) - n, -1, -1):
                if n and ids[start : start + n] == words:
                    return list(range(start, start + n))
        return []

    def encode(self, questions: Sequence[str]):
        prompts = [self.prompt_ids(q) for q in questions]
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for i, p in enumerate(prompts):  # padded on the left
            ids[i, length - len(p) :] = torch.tensor(p)
            mask[i, length - len(p) :] = 1
        return ids, mask

    def encode_targets(self, answers: Sequence[str]):
        tokens = [
            self.tokenizer(str(a), add_special_tokens=False)["input_ids"]
            + ([self.eos_id] if self.eos_id is not None else [])
            for a in answers
        ]
        length = max(1, max(len(t) for t in tokens))
        ids = torch.full((len(tokens), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(tokens), length), dtype=torch.long)
        for i, t in enumerate(tokens):  # padded on the right
            ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            mask[i, : len(t)] = 1
        return ids, mask

    def tokens(self, question: str) -> list[str]:
        words = self.tokenizer(question, add_special_tokens=False)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(words)

    def token_mask(self, question) -> torch.Tensor:
        ids, mask = question
        out = torch.zeros_like(mask, dtype=torch.bool)
        question_of = {tuple(v): k for k, v in self._prompts.items()}  # prompt ids -> its question, once a call
        for i in range(len(ids)):
            real = ids[i][mask[i].bool()].tolist()
            offset = len(ids[i]) - len(real)
            text = question_of.get(tuple(real))
            if text is not None:
                for p in self._question_positions(real, text):
                    out[i, offset + p] = True
        return out

    def question_baseline(self, question):
        ids, mask = question
        return torch.where(self.token_mask(question), torch.full_like(ids, self.pad_id), ids), mask

    # ------------------------------------------------------------ the forward pass
    def image_inputs(self, pixels: torch.Tensor) -> dict:
        mean, std = (t.to(pixels.device, pixels.dtype) for t in self._imagenet)
        return self.family.pixel_inputs(self, pixels * std + mean)

    def run(self, pixels, question, target, output_attentions: bool = False):
        """``(scores [B], attentions [A_l [B, H, T, T]] or None, logits [B, T, V])`` of the prompts
        followed by the target answers."""
        ids, mask = question
        answer_ids, answer_mask = (t.to(ids.device) for t in target)
        full_ids = torch.cat([ids, answer_ids], dim=1)
        full_mask = torch.cat([mask, answer_mask], dim=1)
        first = self.family.first_position
        positions = (
            {"position_ids": (full_mask.cumsum(dim=1) - 1 + first).clamp(min=first)}
            if self.family.passes_positions
            else {}
        )
        out = self.module(
            input_ids=full_ids,
            attention_mask=full_mask,
            output_attentions=output_attentions,
            **positions,
            **self.image_inputs(pixels),
            **self.family.extra_inputs(self, full_ids, answer_mask),
        )
        length = ids.shape[1]
        # the logits at position p predict token p + 1: the answer's tokens are read at L-1 .. L+La-2
        logits = out.logits[:, length - 1 : length - 1 + answer_ids.shape[1]].float()
        chosen = torch.log_softmax(logits, dim=-1).gather(2, answer_ids[:, :, None])[:, :, 0]
        scores = (chosen * answer_mask).sum(dim=1)
        return scores, (list(out.attentions) if output_attentions else None), out.logits

    @property
    def scorer(self) -> nn.Module:
        scorer = self.__dict__.get("_scorer")
        if scorer is None:
            scorer = self.__dict__["_scorer"] = VlmScore(self)
        return scorer

    def forward(self, pixels, question):
        raise NotImplementedError("a generative model has no fixed answer list: use target_scores")

    def target_probabilities(self, pixels, question, target) -> torch.Tensor:
        return self.target_scores(pixels, question, target).float().exp()

    def probe(self, pixels, question):
        return self.target_scores(pixels, question, self.encode_targets(["yes"] * len(pixels)))

    def _candidate_scores(self, pixels, question, candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Each example's scores of its candidates, one teacher-forced batch per example."""
        from vqa_interp.models.base import take

        out = []
        with torch.no_grad():
            for i, options in enumerate(candidates):
                if not options:
                    out.append(np.zeros(0))
                    continue
                rows = [i] * len(options)
                scores = self.target_scores(pixels[rows], take(question, rows), self.encode_targets(list(options)))
                out.append(scores.cpu().numpy().astype(np.float64))
        return out

    def generate_answers(self, pixels, question) -> list[str]:
        """Greedy decoding of at most ``max_new_tokens`` tokens, normalised as the VQA evaluation does."""
        ids, mask = question
        with torch.no_grad():
            out = self.module.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_id,
                **self.image_inputs(pixels),
                **self.family.extra_inputs(self, ids),
            )
        texts = self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        return [normalize_answer(t) for t in texts]

    def predict_answers(self, pixels, question, candidates=None):
        candidates = [
            [normalize_answer(c) for c in dict.fromkeys(options or ())]
            for options in (candidates or [()] * len(pixels))
        ]
        if self.answer_mode == "multiple_choice" and all(candidates):
            answers = []
            scored = self._candidate_scores(pixels, question, candidates)
            for options, scores in zip(candidates, scored):
                answers.append(options[int(np.argmax(scores))])
        else:
            answers = self.generate_answers(pixels, question)
        pools = [list(dict.fromkeys([*options, answer])) for options, answer in zip(candidates, answers)]
        scored = self._candidate_scores(pixels, question, pools)
        confidence = []
        for pool, answer, scores in zip(pools, answers, scored):
            p = np.exp(scores - scores.max())
            confidence.append(float(p[pool.index(answer)] / p.sum()) if len(pool) > 1 else float(np.exp(scores[0])))
        return answers, torch.tensor(confidence)

    def predicted_targets(self, pixels, question):
        return self.encode_targets(self.generate_answers(pixels, question))

    # ------------------------------------------------------------ attachment points
    def attentions(self, pixels, question, target=None):
        if target is None:
            target = self.encode_targets(self.generate_answers(pixels, question))
        scores, attentions, _ = self.run(pixels, question, target, output_attentions=True)
        return scores, attentions

    def token_layout(self, pixels, question, target=None):
        """``(row weights [B, T]: the mean over the positions that predict the answer's tokens, the
        image-token columns [B, N] of each example, the grid (h, w))``."""
        ids, mask = question
        if target is None:
            target = self.encode_targets(self.generate_answers(pixels, question))
        answer_mask = target[1].to(ids.device).float()
        length = ids.shape[1]
        total = length + answer_mask.shape[1]
        rows = torch.zeros(len(ids), total, device=ids.device)
        rows[:, length - 1 : length - 1 + answer_mask.shape[1]] = answer_mask
        rows = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
        columns = torch.stack([torch.nonzero(ids[i] == self.image_token_id)[:, 0] for i in range(len(ids))])
        n = columns.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise ConfigError(
                f"model.pretrained: {n} image tokens do not make a square grid; the transformer-native maps need one"
            )
        return rows, columns, (side, side)  # row-major, as LLaVA's patches and Qwen2-VL's merged 2x2 groups

    def text_embedding(self) -> nn.Module:
        return self.module.get_input_embeddings()

    def token_layer(self, name: str) -> nn.Module:
        """``lm.layerN`` (N from 0 at the bottom), ``cam``: the language model's middle layer
        (``lm.layer{(L-1)//2}``; the last layer's image-token outputs never reach the answer positions,
        so a causal LM's Grad-CAM reads a layer below it)."""
        layers = self.family.parts(self.module)[0]
        index = (len(layers) - 1) // 2 if name == "cam" else None
        if name.startswith("lm.layer") and name[8:].isdigit():
            index = int(name[8:])
        if index is None or not 0 <= index < len(layers):
            raise ConfigError(
                f"method.layer={name!r} is not a layer of this language model; expected cam (its middle "
                f"layer) or lm.layer0 .. lm.layer{len(layers) - 1}."
            )
        return layers[index]

    def blocks(self) -> list[tuple[str, nn.Module]]:
        layers, norm, head, projector, vision = self.family.parts(self.module)
        blocks = [("lm_head", nn.ModuleList([head, norm]))]
        blocks += [(f"lm.layer{i}", layers[i]) for i in reversed(range(len(layers)))]
        blocks += [("projector", projector), ("vision_tower", vision)]
        return blocks

    def identity(self) -> dict:
        return {
            **super().identity(),
            "prompt": self.prompt,
            "answer_mode": self.answer_mode,
            "max_new_tokens": self.max_new_tokens,
        }

    def tags(self) -> dict[str, str]:
        c = self.module.config
        return {
            **super().tags(),
            "model_type": str(c.model_type),
            "backbone": f"{c.model_type} vision "
            f"{c.vision_config.model_type}, text {c.text_config.model_type} ({c.text_config.num_hidden_layers} layers)",
        }

    def save(self, path, *, config: dict, tracker: dict | None = None, name: str = "vqa-interp embedded") -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.module.save_pretrained(path)
        self.processor.save_pretrained(path)
        (path / "vqa_interp.json").write_text(
            json.dumps({"name": name, "config": config, "tracker": tracker or {}}, default=str)
        )
