"""Merge the shard runs of a sweep (``data.num_shards=N data.shard=0,..,N-1``) into one analysis run.

Automatic when a sharded multirun ends; also a command: ``python -m vqa_interp.merge PARENT_RUN_ID``.
Shards whose other params agree form one group; each complete group becomes a run (tag
``run_kind=merged``, child of the sweep's parent) with the full per-example table and the
analysis of it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from vqa_interp.report import explorer
from vqa_interp.tracking import explorer_runs
from vqa_interp.tracking.stores import DEFAULT_URI

GROUP_EXCLUDE = {"data.shard"}


def _table(client, run_id: str, name: str, tmp: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(Path(client.download_artifacts(run_id, f"tables/{name}.csv", tmp)).read_text()))


def shard_groups(runs) -> dict[tuple, list]:
    """Evaluation runs with num_shards > 1, grouped by every param but ``data.shard``."""
    groups: dict[tuple, list] = {}
    for run in runs:
        params = run.data.params
        if run.data.tags.get("run_kind") != "evaluation" or int(params.get("data.num_shards", "1")) <= 1:
            continue
        key = tuple(sorted((k, v) for k, v in params.items() if k not in GROUP_EXCLUDE))
        groups.setdefault(key, []).append(run)
    return groups


def analysis_options(params: dict):
    """The shards' ``analysis.*`` and ``confidence.*`` params, read back as the run read them."""
    from vqa_interp.settings import AnalysisSettings

    return AnalysisSettings(
        low=float(params["confidence.low"]),
        high=float(params["confidence.high"]),
        map_for_example=params.get("analysis.map_for_example", "prediction"),
        test=params.get("analysis.test", "cluster_bootstrap"),
        alpha=float(params.get("analysis.alpha", 0.05)),
        bootstrap=int(params.get("analysis.bootstrap", 2000)),
        min_group=int(params.get("analysis.min_group", 10)),
        min_images=int(params.get("analysis.min_images", 5)),
        seed=int(params.get("seed", 0)),
    )


def merge_group(client, parent_run_id: str, experiment_id: str, runs: list) -> str | None:
    """One merged run for a complete group of shard runs (None when a shard is missing/failed)."""
    from vqa_interp.analysis.run_tables import analyse_tables
    from vqa_interp.tracking.store import RunTracker, ending

    params = dict(runs[0].data.params)
    num_shards = int(params["data.num_shards"])
    shards = sorted(int(r.data.params["data.shard"]) for r in runs if r.info.status == "FINISHED")
    if shards != list(range(num_shards)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        table = pd.concat([_table(client, r.info.run_id, "per_example", tmp) for r in runs], ignore_index=True)
        predictions = pd.concat([_table(client, r.info.run_id, "predictions", tmp) for r in runs], ignore_index=True)
        from vqa_interp.tracking.store import download_table

        parts = [
            download_table(client, r.info.run_id, "references_per_question", tmp + f"/{r.info.run_id}") for r in runs
        ]
        references = (
            pd.concat(parts, ignore_index=True).drop_duplicates(["question_id", "reference"])
            if parts and all(p is not None for p in parts)
            else None
        )
    table = table.sort_values(["question_id", "method", "target"], kind="stable").reset_index(drop=True)
    predictions = predictions.sort_values("question_id", kind="stable").reset_index(drop=True)
    results = analyse_tables(table, references, analysis_options(params))
    run = _create_merged_run(client, experiment_id, parent_run_id, runs)
    with ending(RunTracker(client, run.info.run_id)) as tracker:
        tracker.log_params({**params, "data.shard": "merged"})
        tracker.log_table(table, "per_example")
        tracker.log_table(predictions, "predictions")
        for name, frame in results.tables.items():
            tracker.log_table(frame, name)
        counts = {
            "count/questions": float(predictions["question_id"].nunique()),
            "count/rows": float(len(table)),
            "count/shards": float(num_shards),
            "model/accuracy": float(predictions["correct"].mean()),
        }
        tracker.log_metrics({**counts, **results.metrics})
        with tempfile.TemporaryDirectory() as tmp:
            explorer_runs.log(
                tracker,
                explorer.merge_shards(
                    [explorer_runs.download(client, r.info.run_id, tmp) for r in runs],
                    run.info.run_id,
                    run.info.run_name,
                ),
            )
    return run.info.run_id


def _create_merged_run(client, experiment_id: str, parent_run_id: str, runs: list):
    """The merged run of ``runs`` (the shards) under the sweep's parent, tagged with where it came from."""
    from vqa_interp.tracking.store import PARENT_TAG

    shard_ids = ",".join(r.info.run_id for r in sorted(runs, key=lambda r: int(r.data.params["data.shard"])))
    return client.create_run(
        experiment_id,
        run_name=f"{runs[0].info.run_name.rsplit('-shard', 1)[0]}-merged",
        tags={
            "run_kind": "merged",
            PARENT_TAG: parent_run_id,
            "merged_from": shard_ids,
            "data_digest": ",".join(r.data.tags.get("data_digest", "") for r in runs),
            "checkpoint_digest": runs[0].data.tags.get("checkpoint_digest", ""),
            "git_commit": runs[0].data.tags.get("git_commit", ""),
        },
    )


def merge_sweep(client, parent_run_id: str) -> list[str]:
    """Merge every complete shard group among the parent's children; returns the merged run ids."""
    from vqa_interp.tracking.store import child_runs

    parent = client.get_run(parent_run_id)
    runs = [r for r in child_runs(client, parent_run_id) if r.data.tags.get("run_kind") == "evaluation"]
    merged = []
    for group in shard_groups(runs).values():
        run_id = merge_group(client, parent_run_id, parent.info.experiment_id, group)
        if run_id:
            merged.append(run_id)
    return merged


def main(argv=None) -> int:
    from vqa_interp.tracking.store import client_for

    parser = argparse.ArgumentParser(prog="python -m vqa_interp.merge", description=__doc__.split("\n")[0])
    parser.add_argument("parent_run_id")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    args = parser.parse_args(argv)
    client = client_for(args.tracking_uri)
    try:
        client.get_run(args.parent_run_id)
    except Exception:
        print(f"error: run ID {args.parent_run_id!r} is not in {args.tracking_uri}", file=sys.stderr)
        return 2
    merged = merge_sweep(client, args.parent_run_id)
    if not merged:
        print(
            "no complete group of shard runs (data.num_shards > 1, every shard FINISHED) under this parent",
            file=sys.stderr,
        )
        return 1
    print("merged runs: " + " ".join(merged))
    return 0
