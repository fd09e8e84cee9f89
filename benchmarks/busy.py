"""Benchmark: training and explaining on a busy machine.

``python -m benchmarks.busy [--steps 60] [--markdown benchmarks/RESULTS_BUSY.md]``

Each workload runs ``--steps`` steps twice in a fresh process: alone, then beside one busy process
(a Python loop that never sleeps, the "other program holding a core"). The ratio busy/alone is
reported for three ways of running torch:

- ``spin``: torch's defaults (as many threads as cores, OpenMP threads that spin while they wait)
  and the thread count fixed at start: what the tool did before;
- ``passive``: the same thread count, threads that sleep while they wait (``OMP_WAIT_POLICY=passive``);
- ``sized``: what the tool does now (:mod:`vqa_interp.util.cores`): a short spin before waiting
  threads sleep, and as many threads as free cores, measured at start and again every ``--recheck``
  steps (training re-checks once per epoch).

Workloads: ``training`` (embedded CNN+LSTM training steps, batches of 32 images with all their
questions), ``explain`` (Integrated Gradients on the same model: one forward+backward over 32 scaled
inputs a step). Target (checked here, never in a test): busy/alone <= 2.2 for ``sized``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 2.2
POLICIES = ("spin", "passive", "sized")
WAITING = {"spin": {}, "passive": {"OMP_WAIT_POLICY": "passive"}, "sized": None}
WORKLOADS = ("training", "explain")


def _busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _worker(workload: str, policy: str, steps: int, recheck: int) -> dict:
    """Run in a fresh process (the OpenMP wait policy is read when torch loads)."""
    from vqa_interp.util.cores import quiet_waiting

    if WAITING[policy] is None:
        quiet_waiting()
    os.environ.update(WAITING[policy] or {})
    import torch

    from vqa_interp.util.cores import size_torch_threads

    torch.manual_seed(0)
    from benchmarks.busy_model import batches, model_and_data

    model, split, question, targets = model_and_data()
    work = list(batches(split, steps))
    optimiser = torch.optim.Adam(model.module.parameters(), lr=1e-3) if workload == "training" else None
    if workload == "explain":
        model.frozen()
    counts = []
    start = time.perf_counter()
    for step, (images, idx, image_of) in enumerate(work):
        if policy.startswith("sized") and step % recheck == 0:
            counts.append(size_torch_threads())
        from vqa_interp.models.base import take
        from vqa_interp.models.training import _normalise_batch

        pixels = _normalise_batch(split.images[images])
        if workload == "training":
            model.module.train()
            logits = model.training_logits(pixels, image_of, take(question, idx))
            loss = (-torch.log_softmax(logits, 1) * targets[idx] / 10).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        else:
            model.module.eval()
            one = pixels[:1]
            alphas = torch.linspace(0, 1, 32)[:, None, None, None]
            scaled = (alphas * one).requires_grad_()
            q = take(question, idx[:1].repeat(32))
            out = model.forward(scaled, q)[:, 0].sum()
            torch.autograd.grad(out, scaled)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "threads": counts or [torch.get_num_threads()]}


def measure(workload: str, policy: str, steps: int, recheck: int, busy: bool) -> dict:
    loop = _busy_loop() if busy else None
    try:
        if loop is not None:
            time.sleep(1.0)  # let the loop take its core
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.busy",
                "--worker",
                workload,
                "--policy",
                policy,
                "--steps",
                str(steps),
                "--recheck",
                str(recheck),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)},
            check=True,
        )
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(steps: int, recheck: int, workloads=WORKLOADS, policies=POLICIES) -> dict:
    results = {}
    for workload in workloads:
        for policy in policies:
            alone = measure(workload, policy, steps, recheck, busy=False)
            beside = measure(workload, policy, steps, recheck, busy=True)
            results[f"{workload}.{policy}"] = {
                "alone_s": round(alone["seconds"], 2),
                "busy_s": round(beside["seconds"], 2),
                "ratio": round(beside["seconds"] / alone["seconds"], 2),
                "threads_alone": sorted(set(alone["threads"])),
                "threads_busy": sorted(set(beside["threads"])),
            }
    return results


def to_markdown(results: dict, steps: int) -> str:
    from benchmarks.run import machine

    m = machine()
    lines = [
        "# Training and explaining beside a busy process",
        "",
        f"`python -m benchmarks.busy --steps {steps}` on {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{time.strftime('%Y-%m-%d')}. Each row: the same steps alone and beside one busy loop, each in a fresh "
        f"process, side by side in one run. Target: busy/alone <= {TARGET} for `sized` (the tool's way).",
        "",
        "| workload | policy | alone (s) | beside a busy loop (s) | busy/alone | threads alone | threads busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        workload, policy = key.split(".")
        verdict = "" if policy != "sized" else (" (met)" if r["ratio"] <= TARGET else " (NOT met)")
        lines.append(
            f"| {workload} | {policy} | {r['alone_s']} | {r['busy_s']} | {r['ratio']}{verdict} | "
            f"{r['threads_alone']} | {r['threads_busy']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--recheck", type=int, default=20, help="steps between two thread sizings (sized)")
    parser.add_argument("--worker", choices=WORKLOADS)
    parser.add_argument("--policy", choices=POLICIES, default="sized")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.policy, args.steps, args.recheck)))
        return 0
    results = bench(args.steps, args.recheck, args.workloads.split(","), args.policies.split(","))
    text = to_markdown(results, args.steps)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0 if all(r["ratio"] <= TARGET for k, r in results.items() if k.endswith(".sized")) else 1


if __name__ == "__main__":
    sys.exit(main())
