"""Regenerate every example output the documentation shows, from real runs: one command,

    python docs/generate_examples.py            # all (about 10 minutes on 2 cores)
    python docs/generate_examples.py default    # one of: default, sweep, models

Each example runs the tool's own command line in a fresh home and store, keeps what the run printed
(progress bars and MLflow's start-up lines left out) in ``docs/generated/<name>.txt`` under a header
naming the command and the commit, and copies the figures the pages show into ``docs/generated/``.
The pages include these files (``--8<--``), so no number in the documentation is one that no run
printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "generated"

# a sweep's example keeps what its parent printed: from the first line of its summary on
PARENT_SUMMARY = re.compile(r"^(Method ranking|Models compared|Runs of this sweep)")
EXAMPLES = {
    # name: (command-line arguments, {figure artifact of the last run of that kind: file name})
    "default": (["-m", "vqa_interp.run"], {("evaluation", "figures/floor_ceiling.png"): "floor-ceiling.png"}),
    "sweep": (
        ["-m", "vqa_interp.run", "-m", "+experiment=smoke", "method=saliency,ggradcam", "k=0.05,0.1"],
        {("sweep", "figures/method_ranking.png"): "method-ranking.png"},
    ),
    "models": (
        [
            "-m",
            "vqa_interp.run",
            "-m",
            "model=embedded,embedded_vilt,embedded_llava",
            "method=saliency,rollout",
            "data.limit=100",
            "explain.tokens=false",
            "explain.share=false",
            "explain.faithfulness=false",
        ],
        {},
    ),
}
NOISE = re.compile(
    r"^(.*\d+%\|.*|.*INFO mlflow.*|.*it/s\]?$|Writing model shards.*|\[\d{4}-\d\d-\d\d .*\]\[.*\]\[INFO\].*)"
)


def clean(text: str) -> str:
    """What a reader of the terminal keeps: the run's lines, progress bars and start-up noise left out,
    the temporary paths replaced by placeholders."""
    lines = []
    for raw in text.replace("\r", "\n").splitlines():
        if NOISE.match(raw) or (not raw.strip() and (not lines or not lines[-1])):
            continue  # progress bars and start-up lines; one blank line at most
        lines.append(raw.rstrip())
    out = "\n".join(lines).strip()
    out = re.sub(r"sqlite:////[^ )]*mlflow\.db", "sqlite:///mlruns/mlflow.db", out)
    # the example's store stands for the default one, which a report command does not name
    return out.replace(" --tracking-uri sqlite:///mlruns/mlflow.db\n", "\n")


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_example(name: str) -> None:
    args, figures = EXAMPLES[name]
    with tempfile.TemporaryDirectory(prefix="vqa-interp-docs-") as tmp:
        env = {
            **os.environ,
            "VQA_INTERP_HOME": str(Path(tmp) / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        }
        result = subprocess.run(
            [sys.executable, *args, f"hydra.run.dir={tmp}/hydra", f"hydra.sweep.dir={tmp}/multirun"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            sys.exit(f"{name}: the run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        command = "python " + " ".join(args)
        header = (
            f"$ {command}\n# printed by commit {commit()} on {date.today().isoformat()} (docs/generate_examples.py)\n"
        )
        text = clean(result.stdout + result.stderr)
        if "-m" in args[2:]:  # a sweep (the module's own -m is args[1])
            lines = text.splitlines()
            first = next((i for i, line in enumerate(lines) if PARENT_SUMMARY.match(line)), 0)
            text = "\n".join(lines[first:])
        (OUT / f"{name}.txt").write_text(header + text + "\n")
        if figures:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(env["MLFLOW_TRACKING_URI"])
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            for (kind, artifact), target in figures.items():
                run = next(r for r in runs if r.data.tags.get("run_kind") == kind)
                shutil.copy(client.download_artifacts(run.info.run_id, artifact, tmp), OUT / target)
    print(f"{name}: docs/generated/{name}.txt")


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names) - set(EXAMPLES))
    if unknown:
        sys.exit(f"unknown example(s) {unknown}; expected some of {sorted(EXAMPLES)}")
    for name in names or EXAMPLES:
        run_example(name)


if __name__ == "__main__":
    main(sys.argv[1:])
