"""A run ended by SIGTERM is KILLED with its maps kept; a run whose process died (SIGKILL) is marked
KILLED the next time the tool runs."""

import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import python

pytestmark = pytest.mark.slow
SLOW_RUN = [
    "method=occlusion",
    "data.limit=40",
    "preprocessing.size=32",
    "analysis.baselines=false",
    "attribution.batch_size=2",
]


def _start(env, cwd, cache):
    return subprocess.Popen(
        [python(), "-m", "vqa_interp.run", *SLOW_RUN, f"paths.cache={cache}"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_run(process) -> str:
    deadline = time.time() + 600
    for line in process.stdout:
        if line.startswith("MLflow run: "):
            return line.split()[2]
        assert time.time() < deadline
    raise AssertionError("the run never opened")


def test_sigterm_marks_the_run_killed_and_keeps_the_maps(cli_env, tmp_path):
    process = _start(cli_env, tmp_path, tmp_path / "cache")
    run_id = _wait_for_run(process)
    deadline = time.time() + 120
    while not list((tmp_path / "cache" / "maps").rglob("*.map")) and time.time() < deadline:
        time.sleep(0.2)  # signal once some maps exist
    made = len(list((tmp_path / "cache" / "maps").rglob("*.map")))
    assert made and process.poll() is None
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)  # stderr goes to the same pipe
    assert process.returncode == 143  # as a shell reports SIGTERM, not Ctrl-C's 130
    assert "Traceback" not in output and f"MLflow run {run_id} ends KILLED" in output
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags["error"]
    assert len(list((tmp_path / "cache" / "maps").rglob("*.map"))) >= made  # the maps made are kept


def test_a_run_whose_process_died_is_closed_at_the_next_start(cli_env, tmp_path):
    process = _start(cli_env, tmp_path, tmp_path / "cache")
    run_id = _wait_for_run(process)
    time.sleep(3)  # its forked scoring process is at work
    process.kill()
    process.wait(timeout=60)
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    assert client.get_run(run_id).info.status == "RUNNING"
    scratch = list(Path(tempfile.gettempdir()).glob(f"vqa-interp-scratch-{process.pid}-*"))
    again = subprocess.run(
        [python(), "-m", "vqa_interp.run", "data.limit=4", "preprocessing.size=32", "analysis.baselines=false"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    closed = client.get_run(run_id)
    assert closed.info.status == "KILLED" and "ended without closing" in closed.data.tags["error"]
    assert closed.data.tags["process_id"].isdigit() and closed.data.tags["process_host"]
    # its children died with it (PR_SET_PDEATHSIG) and the next run removed its scratch folder
    assert not [p for p in scratch if p.exists()]
    leftovers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    assert not leftovers.stdout.strip()


def test_ctrl_c_ends_a_run_with_one_line_and_no_traceback(cli_env, tmp_path):
    """Ctrl-C in a terminal signals the whole process group (the run and its forked processes): the
    run ends KILLED and the user reads one line saying so, not a traceback."""
    import os

    # all 300 questions: the run is still computing maps when the signal comes, however loaded the machine
    process = subprocess.Popen(
        [python(), "-m", "vqa_interp.run", *SLOW_RUN, "data.limit=300", f"paths.cache={tmp_path / 'cache'}"],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as from a terminal: a pytest-xdist worker ignores SIGINT, and a child
        # started with SIGINT ignored would ignore it too (Python keeps SIG_IGN)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 600
    for line in process.stdout:
        if line.startswith("MLflow run: "):
            run_id = line.split()[2]
            break
        assert time.time() < deadline
    deadline = time.time() + 120
    while not list((tmp_path / "cache" / "maps").rglob("*.map")) and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line.strip() and "WARNING" not in line and "INFO" not in line]
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"interrupted: MLflow run {run_id} ends KILLED")
    assert MlflowClient(cli_env["MLFLOW_TRACKING_URI"]).get_run(run_id).info.status == "KILLED"
