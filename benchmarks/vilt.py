"""ViLT's methods against the model's own floors (``python -m benchmarks.run --only vilt``).

Two sizes, random weights (speed does not depend on them): the embedded ViLT (hidden 128, 4
layers, patch 16 at 112 px, batch 16) and a ViLT-B/32-sized one (hidden 768, 12 layers, 12 heads,
patch 32 at 384 px: 117 M parameters, batch 2). Floors, timed in the same rounds as the methods:

- ``forward``: one forward pass with every layer's attention returned (``torch.no_grad``);
- ``backward``: one forward + backward of the target logits to the pixels (``autograd.grad``).

``attention`` and ``rollout`` are one forward each (their ratio is to ``forward``); ``chefer``,
``saliency``, ``inputxgrad`` and ``gradcam`` are one forward + backward (ratio to ``backward``);
``ig`` is its ``n_steps`` forward + backward passes in internal batches (ratio to ``n_steps x
backward``, the same batch per pass).
"""

from __future__ import annotations

import time

ONE_FORWARD = ("attention", "rollout")
ONE_BACKWARD = ("chefer", "saliency", "inputxgrad", "gradcam")
SIZES = {
    "embedded": dict(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        patch_size=16,
        image_size=112,
        batch=16,
    ),
    "b32": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        patch_size=32,
        image_size=384,
        batch=2,
    ),
}
TARGETS = {
    "vilt_overhead.attention": ("<=", 1.2),
    "vilt_overhead.rollout": ("<=", 1.2),
    "vilt_overhead.chefer": ("<=", 1.3),
    "vilt_overhead.saliency": ("<=", 1.3),
    "vilt_overhead.inputxgrad": ("<=", 1.3),
    "vilt_overhead.ig": ("<=", 1.3),
    "vilt_default_run_seconds": ("<=", 60.0),
}


def random_vilt(size: str, n_words: int = 40, n_answers: int = 100, tokens: int = 16):
    """A ViLT of the named size with random weights behind the model interface, and its
    ``(pixels [B, 3, S, S], question, targets [B])``."""
    import torch
    from transformers import BertTokenizer, ViltConfig, ViltForQuestionAnswering

    from vqa_interp.data.images import InputGeometry
    from vqa_interp.models.vilt import SPECIAL_TOKENS, ViltModel, ViltNet

    s = dict(SIZES[size])
    batch = s.pop("batch")
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(n_words)]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate([*SPECIAL_TOKENS, *words])})
    labels = [f"a{i}" for i in range(n_answers)]
    config = ViltConfig(
        vocab_size=len(SPECIAL_TOKENS) + n_words,
        num_labels=n_answers,
        id2label=dict(enumerate(labels)),
        label2id={a: i for i, a in enumerate(labels)},
        max_position_embeddings=tokens,
        max_image_length=-1,
        attn_implementation="eager",
        **s,
    )
    model = ViltModel(
        ViltNet(ViltForQuestionAnswering(config).eval()),
        tokenizer,
        labels,
        InputGeometry(s["image_size"], 1.0),
        max_tokens=tokens,
    ).eval()
    question = model.encode([" ".join(words[i % n_words] for i in range(b, b + 8)) for b in range(batch)])
    pixels = torch.randn(batch, 3, s["image_size"], s["image_size"])
    return model, pixels, question, torch.randint(0, n_answers, (batch,))


def floors_and_methods(model, pixels, question, targets, repeats: int, ig_steps: int = 8) -> dict:
    """Seconds of both floors and each method's time as a multiple of its floor; interleaved rounds,
    each keeping its best (round 0 is the warm-up)."""
    import torch

    from vqa_interp.attribution import make_attributor

    def forward():
        with torch.no_grad():
            model.attentions(pixels, question)

    def backward():
        x = pixels.clone().requires_grad_(True)
        torch.autograd.grad(model.forward(x, question).gather(1, targets[:, None]).sum(), x)

    calls = {"forward": forward, "backward": backward}
    options = {"ig": {"n_steps": ig_steps, "internal_batch_size": len(pixels) * ig_steps}}
    for method in ONE_FORWARD + ONE_BACKWARD + ("ig",):
        attribute = make_attributor(model, method, options.get(method, {}))
        calls[method] = (lambda a: lambda: a(pixels.clone().requires_grad_(True), targets, question))(attribute)
    best = {name: float("inf") for name in calls}
    for round_ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:
                best[name] = min(best[name], time.perf_counter() - start)
    out = {"forward_s": best["forward"], "backward_s": best["backward"]}
    for method in ONE_FORWARD:
        out[method] = best[method] / best["forward"]
    for method in ONE_BACKWARD:
        out[method] = best[method] / best["backward"]
    out["ig"] = best["ig"] / (ig_steps * best["backward"])
    return out


def bench_vilt(quick: bool) -> dict:
    """``vilt_overhead.<method>.<size>`` and the worse of the two sizes as ``vilt_overhead.<method>``;
    the floors per map; ViLT-B/32-sized maps per second on this CPU."""
    results = {}
    for size, repeats in (("embedded", 3 if quick else 10), ("b32", 1 if quick else 3)):
        model, pixels, question, targets = random_vilt(size)
        out = floors_and_methods(model, pixels, question, targets, repeats)
        results[f"vilt_floor_forward_seconds_per_map.{size}"] = out.pop("forward_s") / len(pixels)
        results[f"vilt_floor_backward_seconds_per_map.{size}"] = out.pop("backward_s") / len(pixels)
        for method, ratio in out.items():
            results[f"vilt_overhead.{method}.{size}"] = ratio
    for method in ONE_FORWARD + ONE_BACKWARD + ("ig",):
        if method != "gradcam":  # Captum's LayerGradCam on the patch grid: reported, no target in the issue
            results[f"vilt_overhead.{method}"] = max(
                results[f"vilt_overhead.{method}.embedded"], results[f"vilt_overhead.{method}.b32"]
            )
    results["vilt_b32_chefer_maps_per_second.cpu"] = 1 / (
        results["vilt_floor_backward_seconds_per_map.b32"] * results["vilt_overhead.chefer.b32"]
    )
    return results


def bench_vilt_run(quick: bool = False) -> dict:
    """A warm ``model=embedded_vilt`` default run (300 questions, every table and figure): the model
    trained and the data generated by a first run of 4 questions, then the timed run on a fresh map
    cache, as ``default_run_seconds`` is for the CNN; with each of its stages against its floor
    (:func:`benchmarks.floors.bench_floors` on the ViLT run: ``vilt_floors.stages_floor_s`` is what
    the run's work costs at the model's measured pass costs, whatever the code around it)."""
    from benchmarks.floors import bench_floors

    floors = bench_floors(quick, overrides=("model=embedded_vilt",))
    return {
        "vilt_default_run_seconds": floors["floors.default_run_wall_s"],
        "vilt_default_run_peak_rss_kib": floors["floors.default_run_peak_rss_kib"],
        **{f"vilt_default_run.{k[len('floors.run.') :]}": v for k, v in floors.items() if k.startswith("floors.run.")},
        **{f"vilt_{k}": v for k, v in floors.items() if not k.startswith("floors.run.")},
    }
