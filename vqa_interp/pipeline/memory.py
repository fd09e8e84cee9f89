"""Batches sized from one memory budget (``memory.budget``), measured for the loaded model.

A batch's memory is mostly its activations, and those scale with the samples in it: ResNet-152 at
448x448 keeps ~1-2 GB of activations per sample for the input gradient, the embedded model ~10 MB.
A batch size fixed in the config (``explain.ig_batch_size=128``: 128 full backward passes at once)
is harmless for one model and kills the other, so every stage that batches takes its size from:

- the **budget**: ``memory.budget`` (``auto``: a quarter of the memory available when the run
  starts, at most 2 GiB of working set, on the CPU; 80% of the free memory of a CUDA device), or a
  size such as ``4GB``;
- the **cost of one sample**, measured on the loaded model before any stage runs: one forward pass
  (predictions, occlusion, the deletion/insertion curves) and one forward with the input gradient
  (every gradient method, each scaled input of Integrated Gradients, each noisy copy of
  SmoothGrad, the sanity checks, the explain stage's IG passes), read as the growth of the peak
  resident set (CPU) or of torch's peak allocation (CUDA) over one sample;
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
from vqa_interp.util.allocator import large_buffers_mapped
from vqa_interp.util.memory import (GIB, MIB, Batching, available_memory, budget_problem, current_rss, parse_size,
                                    peak_rss, reset_peak_rss)

log = logging.getLogger(__name__)

AUTO_CPU_SHARE = 0.25
AUTO_CPU_CAP = 2 * GIB
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
    return (int(min(AUTO_CPU_SHARE * room, AUTO_CPU_CAP)),
            f"auto: a quarter of the {room / GIB:.1f} GiB available, at most {AUTO_CPU_CAP / GIB:.0f} GiB")


def _grown(run, device: str) -> int:
    """Bytes of memory ``run()`` needs beyond what is held now (its peak minus the current use)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - base)
    with large_buffers_mapped():
        reset = reset_peak_rss()
        base = current_rss()
        before = peak_rss()
        run()
        after = peak_rss()
    # without a resettable peak, a pass that stays below an earlier peak shows no growth: count the
    # pass's whole current footprint instead (an over-estimate, which only makes batches smaller)
    return max(0, after - base) if reset or after > before else max(0, current_rss() - base)


def measure(model, pixels: torch.Tensor, question, device: str) -> tuple[int, int]:
    """``(forward, backward)`` bytes per sample for ``model`` on one example (``pixels [1, ...]``,
    ``question`` its encoding): a forward pass, and a forward with the gradient of the top logit
    with respect to the input (what a gradient method computes)."""
    pixels = pixels[:1].to(device)
    question = model.to_device(take(question, [0]), device)

    def forward():
        with torch.no_grad():
            model.forward(pixels, question)

    def backward():
        x = pixels.clone().requires_grad_(True)
        out = model.forward(x, question)
        torch.autograd.grad(out.max(dim=1).values.sum(), x)

    context = torch.backends.cudnn.flags(enabled=False) if device.startswith("cuda") else contextlib.nullcontext()
    with context:
        fwd = _grown(forward, device)
        bwd = _grown(backward, device)
    return max(fwd, MIB), max(bwd, fwd, MIB)


def plan(settings, model, pixels: torch.Tensor, question) -> Batching:
    """The run's :class:`Batching`: ``memory.budget`` and the costs measured on one example."""
    budget, source = budget_bytes(settings.memory.budget, settings.device)
    forward, backward = measure(model, pixels, question, settings.device)
    batching = Batching(budget, forward, backward, source)
    if backward > budget:
        log.warning("memory.budget: one sample's backward pass needs %.2f GiB, more than the budget of %.2f GiB "
                    "(%s); batches hold one sample", backward / GIB, budget / GIB, source)
    return batching
