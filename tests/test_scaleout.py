"""Sharded sweeps on the joblib launcher against a real `mlflow server` on 127.0.0.1."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
COMMON = ["data.limit=10", "preprocessing.size=64", "analysis.bootstrap=50", "analysis.n_panels=1",
          "tracking.log_maps=false"]
METRIC_COLUMNS = ["rank_corr", "intersect", "disc_intersect", "iou", "dice", "precision", "recall", "f1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its workers, by the server's PID
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _table(client, run_id, tmp_path):
    path = client.download_artifacts(run_id, "tables/per_example.csv", str(tmp_path))
    return pd.read_csv(path).sort_values(["question_id", "target"]).reset_index(drop=True)


def test_sharded_joblib_sweep_against_a_server_equals_the_unsharded_run(mlflow_server, cli_env, tmp_path):
    env = {**cli_env, "MLFLOW_TRACKING_URI": mlflow_server}
    run = lambda args: subprocess.run([sys.executable, "-m", "vqa_interp.run", *args], env=env, cwd=tmp_path,
                                      capture_output=True, text=True, timeout=900)
    single = run(COMMON)
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = run(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data.num_shards=2", "data.shard=0,1",
                   *COMMON])
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id], max_results=100)
    kinds = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("run_kind"), []).append(r)
    assert len(kinds["sweep"]) == 1 and len(kinds["merged"]) == 1
    parent = kinds["sweep"][0]
    shards = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "2"]
    unsharded = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "1"]
    assert len(shards) == 2 and len(unsharded) == 1  # no lost or duplicate runs
    assert sorted(r.data.params["data.shard"] for r in shards) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in shards + kinds["merged"])
    merged = kinds["merged"][0]
    assert set(merged.data.tags["merged_from"].split(",")) == {r.info.run_id for r in shards}
    expected, got = _table(client, unsharded[0].info.run_id, tmp_path / "a"), _table(client, merged.info.run_id, tmp_path / "b")
    assert list(got["question_id"]) == list(expected["question_id"])
    pd.testing.assert_frame_equal(got[METRIC_COLUMNS], expected[METRIC_COLUMNS], check_exact=False, atol=1e-12)
    assert merged.data.metrics["count/questions"] == unsharded[0].data.metrics["count/questions"] == 10
    # the floors and the ceiling of the merged questions, read as the unsharded run reads its own
    for metric in ("norm/rank_corr", "norm/iou", "baseline/human_ceiling/iou"):
        assert merged.data.metrics[metric] == pytest.approx(unsharded[0].data.metrics[metric], abs=1e-9), metric
