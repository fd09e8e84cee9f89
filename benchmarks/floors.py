"""Each stage of the default run against what it must cost (its floor), the floors measured in this
process on the run's own maps, human maps and model.

    python -m benchmarks.run --only floors

One default run (embedded data and model, 300 questions) on a fresh cache, then:

- ``scoring_floor_ratio`` = ``time/scoring_s`` / (maps prepared x the cost of preparing one map +
  pairs x the cost of one pair's metrics). The counts come from the run's own tables: per question,
  the method's maps (``per_example``), the floors' maps (``references_per_question``; the centre map is prepared
  once per run), the human maps (the mean, each annotator, each leave-one-out mean); every map
  (method and floors) is scored against the mean and each leave-one-out mean, and each annotator
  against its leave-one-out mean (the ceiling). The unit costs are medians over the run's own maps
  (``maps/maps.npz``) and its questions' human maps, at the run's scoring options.
- ``explain_floor_ratio`` = ``time/explain_s`` / (the stage's passes x the cost of one pass per
  sample at the stage's batch size, on the run's model): token attributions ``ig_steps``
  forward+backward per target, the image share ``ig_steps`` per question, the curves
  ``2 + 4 (steps - 1)`` forwards per target (deletion and insertion of the method's and a random
  map). A forward+backward here is the whole model's; token attributions run the question side
  only, so that part can cost less than its floor.
- ``run_floor_ratio`` = the run's own time (``time/total_s``, start-up excluded) / the sum of its
  stage floors (the two above, one forward per question to predict, one forward+backward per map
  to attribute).
- ``figures_wait_s``: what the run still waits for its figures (the timings table's
  ``figures_wait``), next to ``figures_draw_s``, the drawing's own time (``time/figures_s``): the
  figures are drawn in a forked process while the run records its tables and the explorer.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _median_seconds(call, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_setup(overrides=()):
    """``(settings, dataset, examples, model)`` of a default run (the model trained already)."""
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from vqa_interp.data.datasets import dataset_for
    from vqa_interp.pipeline import data as data_stage
    from vqa_interp.pipeline import memory as memory_stage
    from vqa_interp.pipeline import model as model_stage
    from vqa_interp.pipeline.predict import image_loader
    from vqa_interp.settings import from_config
    from vqa_interp.train import ensure_model

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config", overrides=list(overrides)))
    dataset = dataset_for(settings.data, settings.home)
    examples = data_stage.select(settings, dataset).examples
    model = model_stage.load(settings, ensure_model(settings, dataset))
    load_images = image_loader(model, examples)
    question = model.encode([e.question for e in examples])
    settings = replace(settings, batching=memory_stage.plan(settings, model, load_images([0]), question))
    return settings, dataset, examples, model, load_images, question


def scoring_floor(
    settings,
    dataset,
    examples,
    geometry,
    per_example: pd.DataFrame,
    references: pd.DataFrame,
    maps: list[np.ndarray],
    sample: int = 40,
) -> dict:
    """The scoring stage's floor (module docs): counts from the run's tables, unit costs measured as
    the run scores (freed buffers kept in the heap, NumPy's BLAS on one thread)."""
    from vqa_interp.util.allocator import keep_freed_buffers, one_blas_thread

    keep_freed_buffers()
    with one_blas_thread():
        return _scoring_floor(settings, dataset, examples, geometry, per_example, references, maps, sample)


def _scoring_floor(settings, dataset, examples, geometry, per_example, references, maps, sample) -> dict:
    from vqa_interp.metrics import prepare_map, resize_maps, run_metrics
    from vqa_interp.metrics.engine import score_at_ks
    from vqa_interp.metrics.humans import question_humans, scoring_options

    options = scoring_options(settings)
    metrics = tuple(run_metrics(settings.scoring.metrics))
    by_id = {e.question_id: e for e in examples}
    questions = sorted(int(q) for q in per_example["question_id"].unique())
    annotators = {q: len(dataset.human_maps(by_id[q], geometry, "each", 1)) for q in questions}
    floors = references[references["reference"] != "human_ceiling"]
    n_centre = int((floors["reference"] == "centre").sum())
    humans_prepared = sum(1 + n + (n if n >= 2 else 0) for n in annotators.values())
    prepared = len(per_example) + len(floors) - n_centre + (1 if n_centre else 0) + humans_prepared
    maps_per_question = (
        per_example.groupby("question_id").size().add(floors.groupby("question_id").size(), fill_value=0)
    )
    pairs = int(sum(maps_per_question[q] * (1 + (annotators[q] if annotators[q] >= 2 else 0)) for q in questions))
    pairs += sum(n for n in annotators.values() if n >= 2)  # the ceiling
    resized = [resize_maps(m[None], options.size, options.resample)[0] for m in maps[:sample]]
    humans = [question_humans(dataset, by_id[q], geometry, options).headline[0] for q in questions[: len(resized)]]
    for h in humans:  # the human maps' own sorts and sums happen once, before the timing
        score_at_ks(prepare_map(resized[0], options), [h], options, metrics, (options.k,))

    def fresh():  # a map prepared and scored once: its sort and sums (made lazily) and one pair
        for r, h in zip(resized, humans):
            score_at_ks(prepare_map(r, options), [h], options, metrics, (options.k,))

    warm_maps = [prepare_map(r, options) for r in resized]

    def warm():  # the same pairs on maps already sorted: one pair's metrics alone
        for m, h in zip(warm_maps, humans):
            score_at_ks(m, [h], options, metrics, (options.k,))

    warm()
    pair_s = _median_seconds(warm) / len(resized)
    prepare_s = max(_median_seconds(fresh) / len(resized) - pair_s, 0.0)
    return {
        "scoring.maps_prepared": prepared,
        "scoring.pairs": pairs,
        "scoring.prepare_one_map_s": prepare_s,
        "scoring.one_pair_s": pair_s,
        "scoring.floor_s": prepared * prepare_s + pairs * pair_s,
    }


def pass_costs(settings, model, load_images, question) -> dict:
    """Seconds per sample of one forward (at the curves' batch size) and one forward+backward to the
    input (at the IG batch size) of the run's model, on the run's images and questions."""
    import torch

    from vqa_interp.util.memory import batching_of

    e = settings.explain
    sizes = batching_of(settings)
    ig_batch, curve_batch = sizes.fit(sizes.backward, e.ig_batch_size), sizes.fit(sizes.forward, e.batch_size)
    n = len(question[0])

    def inputs(batch):
        rows = [i % n for i in range(batch)]
        return load_images(rows), tuple(q[rows] for q in question)

    ig_inputs, curve_inputs = inputs(ig_batch), inputs(curve_batch)  # read before the timing

    def backward(batch):
        pixels, q = ig_inputs
        pixels = pixels.clone().requires_grad_(True)
        torch.autograd.grad(model.forward(pixels, q).max(1).values.sum(), pixels)

    def forward(batch):
        pixels, q = curve_inputs
        with torch.no_grad():
            model.forward(pixels, q)

    backward(ig_batch), forward(curve_batch)  # warm-up
    return {
        "explain.ig_batch": ig_batch,
        "explain.curve_batch": curve_batch,
        "pass.forward_backward_s": _median_seconds(lambda: backward(ig_batch)) / ig_batch,
        "pass.forward_s": _median_seconds(lambda: forward(curve_batch)) / curve_batch,
    }


def explain_floor(settings, n_targets: int, n_questions: int, costs: dict) -> dict:
    e = settings.explain
    backward = (n_targets if e.tokens else 0) * e.ig_steps + (n_questions if e.share else 0) * e.ig_steps
    forward = n_targets * (2 + 4 * (e.steps - 1)) if e.faithfulness else 0
    return {
        "explain.forward_backward_passes": backward,
        "explain.forward_passes": forward,
        "explain.floor_s": backward * costs["pass.forward_backward_s"] + forward * costs["pass.forward_s"],
    }


def bench_floors(quick: bool = False, overrides: tuple[str, ...] = ()) -> dict:
    """One default run (plus ``overrides``, e.g. ``model=embedded_vilt``) on a fresh cache, then each
    stage against its floor (module docs)."""
    import os

    from mlflow.tracking import MlflowClient

    from benchmarks.run import _run_cli

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TQDM_DISABLE": "1"}
        _run_cli([*overrides, "data.limit=4", "tracking.log_maps=false"], env)  # warm: data, model, store schema
        wall, out, rss = _run_cli([*overrides, f"paths.cache={tmp}/cache"], env)
        run_id = re.findall(r"MLflow run: (\w+)", out)[0]
        client = MlflowClient(uri)
        metrics = client.get_run(run_id).data.metrics
        tables = {
            name: pd.read_csv(client.download_artifacts(run_id, f"tables/{name}.csv", tmp))
            for name in ("per_example", "timings")
        }
        tables["references"] = pd.read_csv(client.download_artifacts(run_id, "tables/references_per_question.csv", tmp))
        stages = dict(zip(tables["timings"]["stage"], tables["timings"]["seconds"]))
        archive = np.load(client.download_artifacts(run_id, "maps/maps.npz", tmp))
        maps = [archive[key] for key in list(archive.files)[:40]]
        settings, dataset, examples, model, load_images, question = run_setup(overrides)
        results = {
            "floors.default_run_wall_s": wall,
            "floors.default_run_peak_rss_kib": rss,
            **{f"floors.run.{k}": v for k, v in metrics.items() if k.startswith("time/")},
        }
        results.update(
            scoring_floor(
                settings, dataset, examples, model.geometry, tables["per_example"], tables["references"], maps
            )
        )
        costs = pass_costs(settings, model, load_images, question)
        results.update(costs)
        n_targets, n_questions = len(tables["per_example"]), tables["per_example"]["question_id"].nunique()
        results.update(explain_floor(settings, n_targets, n_questions, costs))
    results["scoring_floor_ratio"] = metrics["time/scoring_s"] / results["scoring.floor_s"]
    results["explain_floor_ratio"] = metrics["time/explain_s"] / results["explain.floor_s"]
    stage_floors = (
        results["scoring.floor_s"]
        + results["explain.floor_s"]
        + n_questions * costs["pass.forward_s"]
        + n_targets * costs["pass.forward_backward_s"]
    )
    results["floors.run.startup_s"] = stages.get("startup", 0.0)
    results["floors.stages_floor_s"] = stage_floors
    results["run_floor_ratio"] = (metrics["time/total_s"] - stages.get("startup", 0.0)) / stage_floors
    results["figures_draw_s"] = metrics.get("time/figures_s", float("nan"))
    results["figures_wait_s"] = stages.get("figures_wait", float("nan"))
    return results
