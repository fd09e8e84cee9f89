"""``python -m vqa_interp.run``: one run (or, with ``-m``, a sweep) of attribution vs human attention.

Config errors and missing inputs are reported before any model work and before any MLflow run
is opened; once the run is open, a failure marks it FAILED (the map cache keeps what was made).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vqa_interp")


def run_name(cfg: DictConfig) -> str:
    name = f"{cfg.method.name}-k{cfg.k}-{cfg.model.name}"
    return name if cfg.data.num_shards == 1 else f"{name}-shard{cfg.data.shard}of{cfg.data.num_shards}"


def write_maps_archive(path: Path, cache, keys) -> None:
    """The run's maps as one compressed ``.npz`` (key ``{question_id}_{answer_index}``), written
    entry by entry so that the maps are never all in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in dict.fromkeys(keys):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, cache.load(key))


def record_outputs(tracker, cfg: DictConfig, outputs, timings: dict) -> None:
    """Log a finished run's tables, analysis, figures and maps."""
    from vqa_interp import analysis, figures

    start = time.perf_counter()
    tracker.set_tags(outputs.tags)
    tracker.log_table(outputs.table, "per_example")
    results = analysis.analyse(outputs.table, low=cfg.confidence.low, high=cfg.confidence.high,
                               map_for_example=cfg.analysis.map_for_example, alpha=cfg.analysis.alpha,
                               n_bootstrap=cfg.analysis.bootstrap, seed=cfg.seed)
    for name, frame in results.tables.items():
        tracker.log_table(frame, name)
    tracker.log_metrics({**outputs.counts, **results.metrics})
    timings["time_analysis_s"] = time.perf_counter() - start
    for name, figure in figures.run_figures(outputs, results, cfg).items():
        tracker.log_figure(figure, f"figures/{name}.png")
    if cfg.tracking.log_maps and len(outputs.table):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "maps.npz"
            write_maps_archive(archive, outputs.cache, outputs.table["map_key"])
            tracker.log_file(archive, "maps")
    timings["time_logging_s"] = time.perf_counter() - start - timings["time_analysis_s"]


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.config import validate
    from vqa_interp.errors import DataError
    from vqa_interp.pipeline import execute, preflight_model_files, prepare_data_root, select_examples, timed
    from vqa_interp.tracking import (flatten, parent_run_id_for_job, resolve_tracking_uri, tracked_run,
                                     ui_command)

    global _START
    job_start = time.perf_counter()
    # start-up (interpreter, imports, Hydra) is paid once per process, by its first job
    timings: dict[str, float] = {"time_startup_s": job_start - _START if _START else 0.0}
    _START = 0.0
    validate(cfg)
    preflight_model_files(cfg)
    with timed(timings, "data"):
        data_root = prepare_data_root(cfg)
        _, selection = select_examples(cfg, data_root)
    if not selection.examples:
        raise DataError(f"data: the selection is empty (skipped: {dict(selection.skipped)}); check data.limit, "
                        "data.question_ids, data.shard and the human maps folder.")
    hydra_cfg = HydraConfig.get()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = {"run_kind": "evaluation", "hydra_output_dir": str(Path(hydra_cfg.runtime.output_dir).resolve()),
            "hydra_overrides": " ".join(hydra_cfg.overrides.task), "method": cfg.method.name}
    with tracked_run(cfg, run_name(cfg), parent_run_id=parent_run_id_for_job(), tags=tags) as tracker:
        print(f"MLflow run: {tracker.run_id} ({run_name(cfg)})", flush=True)
        tracker.log_params(flatten(resolved))
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/resolved.yaml")
        tracker.log_text("\n".join(hydra_cfg.overrides.task) + "\n", "config/overrides.txt")
        outputs = execute(cfg, selection, data_root, timings,
                          on_predictions=lambda frame: tracker.log_table(frame, "predictions"))
        record_outputs(tracker, cfg, outputs, timings)
        timings["time_total_s"] = time.perf_counter() - job_start + timings["time_startup_s"]
        tracker.log_metrics(timings)
    uri = resolve_tracking_uri(cfg.tracking.uri)
    print(f"MLflow run {tracker.run_id} finished: {len(outputs.table)} rows, model accuracy "
          f"{outputs.counts['model_accuracy']:.3f}, {timings['time_total_s']:.1f} s.\n"
          f"Open the UI: {ui_command(uri)}", flush=True)
    return tracker.run_id


_START = time.perf_counter()

if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("VQA_INTERP_LOG", "INFO"))
    main()
