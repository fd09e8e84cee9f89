"""Scale-out on the engines a cluster uses: sharded sweeps on joblib and on submitit's local executor,
a real `mlflow server` on a throwaway PostgreSQL, many writers on one SQLite store."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import NO_EXPLAIN, free_port, running_mlflow_server

pytestmark = pytest.mark.slow
# the plumbing under test is the launchers' and the stores': the explain stage is left out
COMMON = [
    "data.limit=10",
    "preprocessing.size=64",
    "analysis.bootstrap=50",
    "analysis.n_panels=1",
    "tracking.log_maps=false",
    *NO_EXPLAIN,
]
METRIC_COLUMNS = ["rank_corr", "intersect", "disc_intersect", "iou", "dice", "precision", "recall", "f1"]


def _table(client, run_id, tmp_path):
    path = client.download_artifacts(run_id, "tables/per_example.csv", str(tmp_path))
    return pd.read_csv(path).sort_values(["question_id", "target"]).reset_index(drop=True)


def _runs_by_kind(client) -> tuple[list, dict]:
    runs = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id], max_results=1000)
    kinds: dict[str, list] = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("run_kind"), []).append(r)
    return runs, kinds


def assert_merged_equals_unsharded(client, merged, unsharded, folder: Path) -> None:
    """The merged shards' per-example table, floors and ceiling are the unsharded run's."""
    expected = _table(client, unsharded.info.run_id, folder / "unsharded")
    got = _table(client, merged.info.run_id, folder / "merged")
    assert list(got["question_id"]) == list(expected["question_id"])
    pd.testing.assert_frame_equal(got[METRIC_COLUMNS], expected[METRIC_COLUMNS], check_exact=False, atol=1e-12)
    assert merged.data.metrics["count/questions"] == unsharded.data.metrics["count/questions"]
    for metric in ("norm/rank_corr", "norm/iou", "baseline/human_ceiling/iou"):
        assert merged.data.metrics[metric] == pytest.approx(unsharded.data.metrics[metric], abs=1e-9), metric


# ------------------------------------------------------------------ PostgreSQL behind the server
PG_BIN = Path(os.environ.get("VQA_INTERP_PG_BIN", "/usr/lib/postgresql/15/bin"))


@contextlib.contextmanager
def postgres_cluster():
    """A throwaway PostgreSQL cluster (initdb in a temp folder, a free port on 127.0.0.1, trust
    authentication, database ``mlflow``), started and stopped by the postmaster's PID; yields its
    SQLAlchemy URI. As root it runs as the ``postgres`` user (the server refuses root)."""
    import pwd
    import shutil
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL's server binaries in {PG_BIN} (Debian: postgresql-15)")
    user = None
    if os.geteuid() == 0:  # the server refuses root: run it as the package's system user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root needs the postgres system user (Debian's postgresql-15 creates it)")
    as_user = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    folder = Path(tempfile.mkdtemp(prefix="vqa-interp-pg-"))
    data = folder / "data"
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    port = free_port()
    process = None
    try:
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            **as_user,
        )
        log = open(folder / "postgres.log", "w")
        process = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=100",
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
        deadline = time.time() + 60
        while (
            subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("postgres did not start:\n" + (folder / "postgres.log").read_text()[-3000:])
            time.sleep(0.3)
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown, by the postmaster's PID
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _artifact_paths(client, run_id: str, folder: str = "") -> set[str]:
    paths = set()
    for item in client.list_artifacts(run_id, folder or None):
        paths |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return paths


def assert_everything_arrived(client, run, folder: Path) -> None:
    """Every param, metric, tag and artifact the run's tracker sent is in the store (its
    ``tracking/logged.json``, written as the run ended), and nothing else was made up."""
    import json

    from vqa_interp.tracking.store import LOGGED_FILE

    sent = json.loads(Path(client.download_artifacts(run.info.run_id, LOGGED_FILE, str(folder))).read_text())
    assert set(sent["params"]) == set(run.data.params)
    assert set(sent["metrics"]) == set(run.data.metrics)
    assert set(sent["tags"]) <= set(run.data.tags)
    assert _artifact_paths(client, run.info.run_id) == set(sent["artifacts"]) | {LOGGED_FILE}
    assert sent["metrics"] and sent["artifacts"]


def test_four_shard_jobs_at_once_on_a_postgresql_backed_server(cli_env, tmp_path):
    """A server on a real PostgreSQL, 4 shard jobs at once (joblib: four writers at the same time; one
    round, where 8 jobs 4 at a time paid every job's start-up twice for no other writer): nothing lost
    or doubled, the parent and the merged run FINISHED, the merged table the unsharded run's; nothing
    left running."""
    args = ["data.limit=8", *COMMON[1:]]
    with postgres_cluster() as database, running_mlflow_server(tmp_path, database, workers=2) as url:
        env = {**cli_env, "MLFLOW_TRACKING_URI": url}

        def run(extra):
            return subprocess.run(
                [sys.executable, "-m", "vqa_interp.run", *extra, *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=1200,
            )

        single = run([])
        assert single.returncode == 0, single.stderr[-3000:]
        sharded = run(
            ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "data.num_shards=4", "data.shard=range(4)"]
        )
        assert sharded.returncode == 0, sharded.stderr[-3000:]
        client = MlflowClient(url)
        runs, kinds = _runs_by_kind(client)
        shards = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "4"]
        unsharded = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "1"]
        assert len(kinds["sweep"]) == 1 and len(kinds["merged"]) == 1 and len(unsharded) == 1
        assert sorted(int(r.data.params["data.shard"]) for r in shards) == list(range(4))  # none lost, none twice
        assert all(r.info.status == "FINISHED" for r in runs)
        for r in shards + unsharded:
            assert_everything_arrived(client, r, tmp_path / r.info.run_id)
        merged, parent = kinds["merged"][0], kinds["sweep"][0]
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in shards + [merged])
        assert set(merged.data.tags["merged_from"].split(",")) == {r.info.run_id for r in shards}
        assert merged.data.metrics["count/shards"] == 4 and merged.data.metrics["count/questions"] == 8
        assert_merged_equals_unsharded(client, merged, unsharded[0], tmp_path)
        # the server kept them in PostgreSQL: 7 runs in its runs table
        import sqlalchemy

        with sqlalchemy.create_engine(database).connect() as connection:
            assert connection.execute(sqlalchemy.text("select count(*) from runs")).scalar() == len(runs) == 7
    assert not (tmp_path / "artifacts").is_symlink()


def test_four_concurrent_writers_on_one_sqlite_store_lose_nothing(cli_env, tmp_path):
    """The default store (SQLite, no server) with 4 jobs at once logging metrics and artifacts."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vqa_interp.run",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            "data.num_shards=4",
            "data.shard=range(4)",
            *COMMON,
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    runs, kinds = _runs_by_kind(MlflowClient(cli_env["MLFLOW_TRACKING_URI"]))
    client, shards = MlflowClient(cli_env["MLFLOW_TRACKING_URI"]), kinds["evaluation"]
    assert sorted(int(r.data.params["data.shard"]) for r in shards) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == 6  # + parent + merged
    for r in shards:
        assert_everything_arrived(client, r, tmp_path / r.info.run_id)


def test_submitit_local_runs_a_sharded_sweep_whose_payload_a_compute_node_can_run(cli_env, tmp_path):
    """submitit's local executor (real jobs, pickled payloads, result files): the parent merges the
    shards as with joblib, and the pickled job names no path outside what a cluster shares (the
    project folder, the folder the sweep was started in, the Python installation)."""
    import re

    from conftest import ROOT

    def run(extra):
        return subprocess.run(
            [sys.executable, "-m", "vqa_interp.run", *extra, *COMMON],
            env=cli_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1200,
        )

    single = run([])
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run(
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30", "data.num_shards=2", "data.shard=0,1"]
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    payloads = list(tmp_path.glob("multirun/*/*/.submitit/*/*_submitted.pkl"))
    results = list(tmp_path.glob("multirun/*/*/.submitit/*/*_result.pkl"))
    assert len(payloads) == 2 and len(results) == 2
    allowed = (str(ROOT), str(tmp_path), sys.prefix, sys.base_prefix)
    for payload in payloads:
        paths = {p.decode() for p in re.findall(rb"(?<![\w.])/[\w.+-]+(?:/[\w.+:-]+)+", payload.read_bytes())}
        absolute = {p for p in paths if Path(p).parts[1] in {"root", "home", "tmp", "work", "opt", "usr", "var", "srv"}}
        assert absolute and all(p.startswith(allowed) for p in absolute), sorted(absolute)
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    runs, kinds = _runs_by_kind(client)
    assert all(r.info.status == "FINISHED" for r in runs) and len(kinds["merged"]) == 1 and len(kinds["sweep"]) == 1
    shards = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "2"]
    unsharded = [r for r in kinds["evaluation"] if r.data.params["data.num_shards"] == "1"]
    assert sorted(r.data.params["data.shard"] for r in shards) == ["0", "1"]
    assert all(r.data.tags["hydra_output_dir"].startswith(str(tmp_path)) for r in shards)
    assert_merged_equals_unsharded(client, kinds["merged"][0], unsharded[0], tmp_path)
