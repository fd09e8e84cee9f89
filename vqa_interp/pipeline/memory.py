"""Batches sized from one memory budget (``memory.budget``), measured for the loaded model.

A batch's memory is mostly its activations, and those scale with the samples in it: ResNet-152 at
448x448 keeps a hundred times more per sample for the input gradient than the embedded model.
A batch size fixed in the config (``explain.ig_batch_size=128``: 128 full backward passes at once)
is harmless for one model and kills the other, so every stage that batches takes its size from:

- the **budget**: ``memory.budget`` (``auto``: a quarter of the memory available when the run
  starts, at most 1 GiB of working set, on the CPU, where a larger batch is no faster; 80% of the
  free memory of a CUDA device), or a size such as ``4GB``;
- the **cost of one sample**, counted on the loaded model before any stage runs (:func:`measure`):
  one forward pass (predictions, occlusion, the deletion/insertion curves) and one forward with
  the input gradient (every gradient method, each scaled input of Integrated Gradients, each noisy
  copy of SmoothGrad, the sanity checks, the explain stage's IG passes);
- the configured sizes as upper bounds (``attribution.batch_size``, a method's
  ``internal_batch_size`` / ``nt_samples`` / ``perturbations_per_eval``, ``explain.ig_batch_size``,
  ``explain.batch_size``), so a small model keeps its configured batches.

Batch sizes change no result: every map and score is the same at any budget (tested), because
Captum's internal batches split the same sum and every other batch is a set of independent rows.
On CUDA an out-of-memory error halves the batch and retries once, saying so.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from vqa_interp.errors import ConfigError
from vqa_interp.models.base import take
from vqa_interp.util.memory import GIB, MIB, Batching, available_memory, budget_problem, parse_size

log = logging.getLogger(__name__)

AUTO_CPU_SHARE = 0.25
AUTO_CPU_CAP = 1 * GIB
AUTO_CUDA_SHARE = 0.8


def budget_bytes(value, device: str) -> tuple[int, str]:
    """``(bytes, how it was set)`` for ``memory.budget``."""
    problem = budget_problem(value)
    if problem:
        raise ConfigError(problem)
    if str(value).strip().lower() != "auto":
        return int(parse_size(value)), f"memory.budget={value}"
    room = available_memory(device)
    if device.startswith("cuda"):
        return int(AUTO_CUDA_SHARE * room), f"auto: 80% of the {room / GIB:.1f} GiB free on {device}"
    return (
        int(min(AUTO_CPU_SHARE * room, AUTO_CPU_CAP)),
        f"auto: a quarter of the {room / GIB:.1f} GiB available, at most {AUTO_CPU_CAP / GIB:.0f} GiB",
    )


def _storage(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def measure(model, pixels: torch.Tensor, question, device: str) -> tuple[int, int]:
    """``(forward, backward)`` bytes per sample for ``model`` on one example (``pixels [1, ...]``,
    ``question`` its encoding), counted, not sampled, so that every run of the same model on the
    same machine or another sizes the same batches (two runs at once computed different batch
    sizes from noisy resident-set readings, and IG's float sums then differed in the 7th digit):

    - backward (a gradient method: a forward with the input's gradient): the distinct storages
      autograd saves for the backward, the model's parameters and buffers excepted, plus twice the
      largest activation (the gradient flowing back through it);
    - forward (no gradient kept): twice the largest input + output of any module (what is alive
      while one module runs).
    """
    pixels = pixels[:1].to(device)
    question = model.to_device(take(question, [0]), device)
    fixed = {t.untyped_storage().data_ptr() for t in [*model.module.parameters(), *model.module.buffers()]}
    largest = {"out": 0, "in_out": 0}

    def sizes(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.untyped_storage().nbytes() if value.untyped_storage().data_ptr() not in fixed else 0
        if isinstance(value, (tuple, list)):
            return sum(sizes(v) for v in value)
        return 0

    def hook(module, inputs, output):
        out = sizes(output)
        largest["out"] = max(largest["out"], out)
        largest["in_out"] = max(largest["in_out"], out + sizes(inputs))

    handles = [m.register_forward_hook(hook) for m in model.module.modules()]
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        pointer, size = _storage(t)
        if pointer not in fixed:
            saved[pointer] = size
        return t

    context = torch.backends.cudnn.flags(enabled=False) if device.startswith("cuda") else contextlib.nullcontext()
    probe = getattr(model, "probe", None) or model.forward  # VqaModel.probe: one pass as the stages run it
    try:
        with context:
            with torch.no_grad():
                probe(pixels, question)
            forward = 2 * largest["in_out"]
            x = pixels.clone().requires_grad_(True)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                probe(x, question)
            backward = sum(saved.values()) + 2 * largest["out"]
    finally:
        for handle in handles:
            handle.remove()
    return max(forward, MIB), max(backward, forward, MIB)


def plan(settings, model, pixels: torch.Tensor, question) -> Batching:
    """The run's :class:`Batching`: ``memory.budget`` and the costs measured on one example."""
    budget, source = budget_bytes(settings.memory.budget, settings.device)
    forward, backward = measure(model, pixels, question, settings.device)
    batching = Batching(budget, forward, backward, source)
    if backward > budget:
        log.warning(
            "memory.budget: one sample's backward pass needs %.2f GiB, more than the budget of %.2f GiB "
            "(%s); batches hold one sample",
            backward / GIB,
            budget / GIB,
            source,
        )
    return batching
