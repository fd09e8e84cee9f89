"""Maps per second for the paper's model (ResNet-152 at 448 + Kazemi net) on a GPU, per method,
and the estimated time for the whole VQA-HAT val set; the explain stage's maps per second (token
attributions, image/question share, deletion/insertion); ViLT-B/32-sized maps per second (attention,
rollout, Chefer, saliency); then, separately, scoring: pairs per second
of the torch scorer on the device (every default metric, 448x448, batched) next to the NumPy scorer
on this machine's CPU for the same pairs.

    python -m benchmarks.gpu [--batch 16] [--repeats 5] [--device cuda] [--json OUT.json]

Random weights (speed does not depend on them). With ``--device cpu`` it runs anywhere (slowly),
which is how it is checked on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

VQA_HAT_VAL_QUESTIONS = 1374
TARGETS_PER_QUESTION = 1.4  # label always + prediction when wrong (~40% wrong at VQA 1.0 accuracy)


def main(argv=None) -> int:
    from vqa_interp.attribution import make_attributor
    from vqa_interp.models import KazemiNetwork, Net, ResNetBackbone

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument(
        "--depth",
        type=int,
        default=152,
        choices=[50, 101, 152],
        help="ResNet depth of the paper model (152: the paper's; a smaller one checks the script)",
    )
    parser.add_argument("--json")
    parser.add_argument("--score-pairs", type=int, default=64, help="pairs per scoring batch")
    parser.add_argument("--score-size", type=int, default=448, help="side of the maps scored")
    parser.add_argument(
        "--vilt-size",
        default="b32",
        choices=["b32", "embedded"],
        help="ViLT maps per second at this size (b32: ViLT-B/32 at 384 px, 117 M parameters)",
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu to check the script", file=sys.stderr)
        return 2
    began = time.perf_counter()
    torch.manual_seed(0)
    from benchmarks.run import kazemi_interface

    model = kazemi_interface(
        KazemiNetwork(ResNetBackbone(args.depth), Net(15193, max_answers=3000, drop=0.0)).eval(), args.size
    ).to(args.device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    q = torch.randint(1, 15193, (args.batch, 12), device=args.device)
    q_len = torch.full((args.batch,), 12)
    targets = torch.randint(0, 3000, (args.batch,), device=args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    results = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "batch": args.batch,
        "size": args.size,
        "resnet_depth": args.depth,
    }
    options = {"saliency": {"abs": True}, "ggradcam": {"layer": "cam"}}
    with torch.backends.cudnn.flags(enabled=not args.device.startswith("cuda")):  # LSTM backward in eval mode
        for method in ("saliency", "gbackp", "deconv", "ggradcam"):
            attribute = make_attributor(model, method, options.get(method, {}))
            attribute(images.clone().requires_grad_(True), targets, (q, q_len))  # warm-up
            sync()
            start = time.perf_counter()
            for _ in range(args.repeats):
                attribute(images.clone().requires_grad_(True), targets, (q, q_len))
            sync()
            per_second = args.batch * args.repeats / (time.perf_counter() - start)
            results[f"maps_per_second.{method}"] = per_second
            results[f"vqahat_val_minutes.{method}"] = VQA_HAT_VAL_QUESTIONS * TARGETS_PER_QUESTION / per_second / 60
        results.update(bench_explain(model, images, q, q_len, targets, sync))
    results.update(bench_vilt(args.device, args.vilt_size, args.batch, args.repeats, sync))
    results.update(bench_scoring(args.device, args.score_pairs, args.score_size, sync))
    results.update(projection(results))
    results["seconds"] = time.perf_counter() - began
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


PAPER_METHODS = ("saliency", "gbackp", "deconv", "ggradcam")
REFERENCE_MAPS = 4  # maps a question also scores besides the method's: random, centre, image, each loo mean


def projection(results: dict, questions: int = VQA_HAT_VAL_QUESTIONS) -> dict:
    """The paper-scale study on this device, from the rates above: the paper's four methods, each
    run over ``questions`` (x1.4 maps) with its explain stage (token attributions, image share,
    deletion/insertion of the method's and the random map, once per question) and its scoring
    (the maps and the references against the human maps, at the scorer's measured pairs/s).
    Minutes per part, summed over the methods; ``paper_scale_minutes`` is their sum."""
    maps = questions * TARGETS_PER_QUESTION
    attribution = sum(maps / results[f"maps_per_second.{m}"] for m in PAPER_METHODS) / 60
    explain = (
        len(PAPER_METHODS)
        * sum(questions / results[f"explain_maps_per_second.{part}"] for part in ("tokens", "share", "faithfulness"))
        / 60
    )
    scoring = len(PAPER_METHODS) * (maps + questions * REFERENCE_MAPS) / results["scoring_pairs_per_second.device"] / 60
    vilt = sum(maps / results[f"vilt_maps_per_second.{m}"] for m in ("attention", "rollout", "chefer", "saliency")) / 60
    return {
        "projection.questions": questions,
        "projection.methods": len(PAPER_METHODS),
        "projection.attribution_minutes": attribution,
        "projection.explain_minutes": explain,
        "projection.scoring_minutes": scoring,
        "paper_scale_minutes": attribution + explain + scoring,
        "projection.vilt_four_methods_minutes": vilt,
    }


def bench_explain(model, images, q, q_len, targets, sync) -> dict:
    """Maps per second of each explain part (``explain.*`` defaults: 32 IG steps, 10 deletion steps;
    faithfulness counts the method's map and the random map a run also scores)."""
    import numpy as np

    from vqa_interp.attribution.faithfulness import curves_for_map_sets
    from vqa_interp.attribution.question import image_question_share, token_attributions

    maps = np.random.default_rng(0).random((len(images), images.shape[-1], images.shape[-1]))
    calls = {
        "tokens": lambda: token_attributions(model, images, (q, q_len), targets, n_steps=32),
        "share": lambda: image_question_share(model, images, (q, q_len), targets, n_steps=32),
        "faithfulness": lambda: curves_for_map_sets(
            model, images, {"method": maps, "random": maps[::-1]}, (q, q_len), targets
        ),
    }
    out = {}
    for name, call in calls.items():
        call()  # warm-up
        sync()
        start = time.perf_counter()
        call()
        sync()
        out[f"explain_maps_per_second.{name}"] = len(images) / (time.perf_counter() - start)
    return out


def bench_vilt(device: str, size: str, batch: int, repeats: int, sync) -> dict:
    """ViLT maps per second (random weights of the named size, ``benchmarks.vilt.SIZES``) for the
    transformer-native methods and saliency, and the VQA-HAT val projection for each."""
    from benchmarks.vilt import random_vilt
    from vqa_interp.attribution import make_attributor

    model, pixels, question, targets = random_vilt(size)
    pixels = pixels[:1].expand(batch, -1, -1, -1).contiguous().to(device)
    question = tuple(q[:1].expand(batch, -1).contiguous().to(device) for q in question)
    targets = targets[:1].expand(batch).contiguous().to(device)
    model.to(device)
    out = {"vilt_size": size}
    for method in ("attention", "rollout", "chefer", "saliency"):
        attribute = make_attributor(model, method, {})
        attribute(pixels.clone().requires_grad_(True), targets, question)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            attribute(pixels.clone().requires_grad_(True), targets, question)
        sync()
        per_second = batch * repeats / (time.perf_counter() - start)
        out[f"vilt_maps_per_second.{method}"] = per_second
        out[f"vilt_vqahat_val_minutes.{method}"] = VQA_HAT_VAL_QUESTIONS * TARGETS_PER_QUESTION / per_second / 60
    return out


def bench_scoring(device: str, pairs: int, size: int, sync) -> dict:
    """Pairs per second: the torch scorer on ``device`` (one batch of ``pairs`` maps against 4 human
    maps, every default metric) and the NumPy scorer on the CPU (``score()``), same pairs."""
    import numpy as np

    from vqa_interp.metrics import run_metrics, score
    from vqa_interp.metrics.batch import score_batch
    from vqa_interp.metrics.prepare import ScoringOptions, resize_maps

    rng = np.random.default_rng(0)
    maps = resize_maps(rng.random((pairs, 28, 28)).astype(np.float32), size)
    humans = resize_maps(rng.random((4, 28, 28)).astype(np.float32), size)
    pair_human = np.arange(pairs) % 4
    options, names = ScoringOptions(size=size), run_metrics()
    score_batch(maps[:2], humans, pair_human[:2], options, names, device=device)  # warm-up
    sync()
    start = time.perf_counter()
    score_batch(maps, humans, pair_human, options, names, device=device)
    sync()
    device_s = time.perf_counter() - start
    start = time.perf_counter()
    score(maps, humans[pair_human], size=size, metrics=names)
    cpu_s = time.perf_counter() - start
    return {
        "scoring_pairs_per_second.device": pairs / device_s,
        "scoring_pairs_per_second.numpy_cpu": pairs / cpu_s,
        "scoring_pairs": pairs,
        "scoring_size": size,
    }


if __name__ == "__main__":
    sys.exit(main())
