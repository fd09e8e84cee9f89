"""Benchmark: each method on a generative VLM against the same model's floor.

``python -m benchmarks.vlm [--size embedded|0.5b|7b] [--device cpu|cuda] [--batch 4] [--markdown OUT.md]``

The floors, measured in the same process on the same batch: one teacher-forced forward (prompt +
answer, attention probabilities returned), and one forward+backward to the pixels. Each method's time
per batch is divided by its floor: ``attention`` and ``rollout`` by a forward (target <= 1.3),
``chefer`` and ``saliency`` by a forward+backward (<= 1.3), ``ig`` by ``n_steps`` forward+backward
passes (<= 1.3). Sizes: ``embedded`` (the embedded LLaVA's config, random weights), ``0.5b`` (a
CLIP ViT-B/16-sized vision tower and a Qwen2-0.5B-sized LM, random weights: the size that fits this
CPU), ``7b`` (LLaVA-1.5-7B's sizes: for a GPU). Random weights cost what trained ones do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SIZES = {
    "embedded": {
        "image": 64,
        "patch": 8,
        "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
        "text": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
    },
    "0.5b": {
        "image": 224,
        "patch": 16,
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        "text": {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
        },
    },
    "7b": {
        "image": 336,
        "patch": 14,
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
        },
    },
}
TARGET = 1.3
QUESTIONS = [
    "what color is the cube ?",
    "how many balls are there ?",
    "is there a red cube ?",
    "what shape is the blue object ?",
]


def build(size: str, device: str):
    from vqa_interp.data.images import InputGeometry
    from vqa_interp.models.embedded_llava import build_llava, build_processor
    from vqa_interp.models.generative import GenerativeVlm
    from vqa_interp.models.vlm_families import FAMILIES

    spec = SIZES[size]
    words = sorted({w for q in QUESTIONS for w in q.split()} | {"red", "blue", "2", "yes", "no"})
    processor = build_processor(words, spec["image"], spec["patch"])
    torch.manual_seed(0)
    hf = build_llava(
        processor, {"patch_size": spec["patch"], "vision": spec["vision"], "text": spec["text"]}, spec["image"]
    )
    if device.startswith("cuda"):
        hf = hf.half()
    model = GenerativeVlm(hf.eval().to(device), processor, FAMILIES["llava"], InputGeometry(spec["image"], 1.0))
    return model.frozen()


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench(size: str, device: str, batch: int, repeats: int, ig_steps: int) -> dict:
    from vqa_interp.attribution import make_attributor

    model = build(size, device)
    side = SIZES[size]["image"]
    dtype = next(model.module.parameters()).dtype
    pixels = torch.randn(batch, 3, side, side, device=device, dtype=dtype)
    question = tuple(t.to(device) for t in model.encode([QUESTIONS[i % 4] for i in range(batch)]))
    target = tuple(t.to(device) for t in model.encode_targets((["red", "2", "yes", "blue"] * batch)[:batch]))

    def forward():
        with torch.no_grad():
            model.run(pixels, question, target, output_attentions=True)

    def forward_backward():
        x = pixels.clone().requires_grad_(True)
        torch.autograd.grad(model.target_scores(x, question, target).sum(), x)

    results = {
        "size": size,
        "device": device,
        "batch": batch,
        "parameters_millions": round(sum(p.numel() for p in model.module.parameters()) / 1e6, 1),
    }
    floors = {"forward": _time(forward, repeats), "forward_backward": _time(forward_backward, repeats)}
    results.update({f"floor.{k}_s": round(v, 4) for k, v in floors.items()})
    plan = {
        "attention": ("forward", 1),
        "rollout": ("forward", 1),
        "chefer": ("forward_backward", 1),
        "saliency": ("forward_backward", 1),
        "ig": ("forward_backward", ig_steps),
    }
    for method, (floor, passes) in plan.items():
        options = {"n_steps": ig_steps, "internal_batch_size": batch * ig_steps} if method == "ig" else {}
        attribute = make_attributor(model, method, options)
        seconds = _time(lambda: attribute(pixels.clone().requires_grad_(True), target, question), repeats)
        results[f"{method}_s"] = round(seconds, 4)
        results[f"{method}_ratio"] = round(seconds / (passes * floors[floor]), 3)
        results[f"{method}_maps_per_second"] = round(batch / seconds, 2)
    if device.startswith("cuda"):
        results["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return results


def to_markdown(results: dict) -> str:
    lines = [
        f"# Methods on a generative VLM against its floors ({results['size']}, "
        f"{results['parameters_millions']} M parameters, {results['device']}, batch {results['batch']})",
        "",
        f"Floors: forward {results['floor.forward_s']} s, forward+backward {results['floor.forward_backward_s']} s "
        f"per batch. Target: each ratio <= {TARGET}.",
        "",
        "| method | seconds per batch | maps per second | ratio to its floor |",
        "|---|---|---|---|",
    ]
    for method in ("attention", "rollout", "chefer", "saliency", "ig"):
        ratio = results[f"{method}_ratio"]
        lines.append(
            f"| {method} | {results[f'{method}_s']} | {results[f'{method}_maps_per_second']} | {ratio}"
            f"{' (met)' if ratio <= TARGET else ' (NOT met)'} |"
        )
    if "peak_memory_gb" in results:
        lines.append(f"\nPeak GPU memory: {results['peak_memory_gb']} GB.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    results = bench(args.size, args.device, args.batch, args.repeats, args.ig_steps)
    text = to_markdown(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return (
        0 if all(results[f"{m}_ratio"] <= TARGET for m in ("attention", "rollout", "chefer", "saliency", "ig")) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
