"""A sweep killed half-way (SIGKILL: a preemption, a lost node) and re-run with the same command:
its parent is reopened, the children that FINISHED are reused, the leftover is closed and computed
again, and the parent's tables equal those of a sweep that was never interrupted."""

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST_ARGS, python
from vqa_interp.tracking.resume import config_signature, sweep_signature
from vqa_interp.tracking.store import child_runs

pytestmark = pytest.mark.slow
SWEEP = ["-m", "method=saliency,ggradcam", "k=0.05,0.1", *FAST_ARGS]  # the two_by_two_sweep fixture's command
COMPARED_TABLES = ("method_ranking", "method_pairs", "fig2_method_means")


def _runs(client):
    experiment = client.get_experiment_by_name("vqa-interp")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


def _parent_table(client, parent, name, folder):
    frame = pd.read_csv(client.download_artifacts(parent.info.run_id, f"tables/{name}.csv", str(folder)))
    frame = frame[[c for c in frame.columns if "run_id" not in c and c not in ("run_name", "run")]]
    assert len(frame), name
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def test_signatures_ignore_order_launchers_paths_and_the_tracking_store():
    assert sweep_signature(["k=0.1", "method=a,b"]) == sweep_signature(
        ["method=a,b", "k=0.1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]
    )
    assert sweep_signature(["k=0.1"]) != sweep_signature(["k=0.2"])
    params = {
        "method.name": "saliency",
        "k": "0.1",
        "tracking.uri": "sqlite:///a.db",
        "paths.home": "/x",
        "memory.budget": "auto",
    }
    moved = {**params, "tracking.uri": "http://server:5000", "paths.home": "/shared/y", "memory.budget": "2GB"}
    assert config_signature(params) == config_signature(moved)
    assert config_signature(params) != config_signature({**params, "k": "0.05"})


def test_a_sweep_killed_after_two_children_resumes_with_the_same_command(two_by_two_sweep, cli_env, tmp_path):
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(
        [python(), "-m", "vqa_interp.run", *SWEEP],
        env=cli_env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 900
    finished = []
    while len(finished) < 2:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "the first sweep did not finish two children"
        time.sleep(0.3)
        finished = [
            r for r in _runs(client) if r.data.tags.get("run_kind") == "evaluation" and r.info.status == "FINISHED"
        ]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    before = {r.info.run_id for r in finished}
    assert 2 <= len(before) < 4

    again = subprocess.run(
        [python(), "-m", "vqa_interp.run", *SWEEP],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-4000:]
    runs = _runs(client)
    parents = [r for r in runs if r.data.tags.get("run_kind") == "sweep"]
    assert len(parents) == 1  # the interrupted parent, reopened
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["resumed"] == "1"
    assert parent.data.tags["failed_children"] == "none"
    children = child_runs(client, parent.info.run_id)
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    reused = {r.info.run_id for r in children if r.data.tags.get("reused") == "1"}
    assert reused == before and "reused: it FINISHED with the same config" in again.stdout
    assert len({r.data.tags["config_signature"] for r in children}) == 4
    # the job the kill cut off: its run is closed and tagged, never reused, and not compared
    leftovers = [r for r in child_runs(client, parent.info.run_id, superseded=True) if r.data.tags.get("superseded")]
    assert all(r.info.status != "FINISHED" and r.info.run_id not in before for r in leftovers)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parent.data.metrics["count/children"] == 4 and parent.data.metrics["count/children_failed"] == 0

    # the same comparison as the sweep that ran without interruption
    reference = MlflowClient(two_by_two_sweep["env"]["MLFLOW_TRACKING_URI"])
    uninterrupted = [r for r in _runs(reference) if r.data.tags.get("run_kind") == "sweep"][0]
    for name in COMPARED_TABLES:
        pd.testing.assert_frame_equal(
            _parent_table(client, parent, name, tmp_path / "resumed"),
            _parent_table(reference, uninterrupted, name, tmp_path / "reference"),
            check_exact=False,
            rtol=1e-9,
            atol=1e-12,
        )
