"""Faults a hostile but fair user meets: a copied project, SIGTERM and SIGKILL in a sweep, a job
that fails before it opens its run, bad images and text in the data, two runs sharing a cache.
After each fault, nothing is left RUNNING once the tool has run again, and nothing computed is lost."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST_ARGS, ROOT, cli_environment, python

QUICK = [
    "data.limit=3",
    "preprocessing.size=32",
    "analysis.baselines=false",
    "analysis.bootstrap=50",
    "analysis.n_panels=1",
    "tracking.log_maps=false",
]


def _run(args, env, cwd, timeout=900):
    return subprocess.run(
        [python(), "-m", "vqa_interp.run", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _run_id(stdout: str) -> str:
    return re.findall(r"MLflow run: (\w+)", stdout)[0]


# ------------------------------------------------------------------ a copied or moved project
@pytest.mark.slow
def test_a_copied_project_records_into_its_own_tree(tmp_path, home):
    env = cli_environment(tmp_path, home)
    env.pop("MLFLOW_TRACKING_URI")  # the default store: ./mlruns/mlflow.db of the project
    first = tmp_path / "project"
    first.mkdir()
    done = _run(QUICK, env, first)
    assert done.returncode == 0, done.stderr[-3000:]
    old_run = _run_id(done.stdout)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy, symlinks=True)
    before = sorted(p.name for p in (first / "mlruns" / "artifacts").rglob("*") if p.is_dir())
    again = _run(QUICK, env, copy)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "moved" in said and str(first / "mlruns") in said  # it says what it did
    client = MlflowClient(f"sqlite:///{copy}/mlruns/mlflow.db")
    new_run = client.get_run(_run_id(again.stdout))
    for run in (new_run, client.get_run(old_run)):
        assert run.info.artifact_uri.startswith((copy / "mlruns").as_uri()), run.info.artifact_uri
    assert client.list_artifacts(old_run, "tables")  # the copied artifacts are found
    after = sorted(p.name for p in (first / "mlruns" / "artifacts").rglob("*") if p.is_dir())
    assert after == before  # the original tree is untouched


def test_an_experiment_whose_artifacts_are_elsewhere_stops_with_the_fix(tmp_path):
    from vqa_interp.errors import ConfigError
    from vqa_interp.tracking.store import client_for, ensure_experiment

    client = client_for(f"sqlite:///{tmp_path}/a/mlflow.db")
    experiment = ensure_experiment(client, "vqa-interp", str(tmp_path / "a" / "artifacts"))
    client.create_run(experiment)
    # the same store read with an artifact root that holds none of its runs: not a move, a mistake
    with pytest.raises(ConfigError, match=r"tracking.artifact_root"):
        ensure_experiment(client, "vqa-interp", str(tmp_path / "elsewhere"))
    # an experiment without runs simply follows the configured root
    empty = client_for(f"sqlite:///{tmp_path}/b/mlflow.db")
    ensure_experiment(empty, "vqa-interp", str(tmp_path / "b" / "artifacts"))
    ensure_experiment(empty, "vqa-interp", str(tmp_path / "b2"))
    assert empty.get_experiment_by_name("vqa-interp").artifact_location == (tmp_path / "b2" / "vqa-interp").as_uri()


# ------------------------------------------------------------------ signals in a sweep
SLOW_SWEEP = [
    "-m",
    "method=occlusion,saliency",
    "data.limit=40",
    "preprocessing.size=32",
    "analysis.baselines=false",
    "attribution.batch_size=2",
]


def _start_sweep(env, cwd):
    return subprocess.Popen(
        [python(), "-m", "vqa_interp.run", *SLOW_SWEEP, f"paths.cache={cwd / 'cache'}"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(process, prefix: str) -> str:
    deadline = time.time() + 600
    for line in process.stdout:
        if line.startswith(prefix):
            return line.split()[len(prefix.split())]
        assert time.time() < deadline
    raise AssertionError(f"never saw {prefix!r}")


@pytest.mark.slow
def test_sigterm_ends_a_sweep_parent_and_child_killed(cli_env, tmp_path):
    process = _start_sweep(cli_env, tmp_path)
    parent = _wait_for(process, "MLflow parent run:")
    child = _wait_for(process, "MLflow run:")
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=300)
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    assert client.get_run(child).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"


@pytest.mark.slow
def test_the_sweep_command_closes_a_killed_sweeps_parent_and_children(cli_env, tmp_path):
    process = _start_sweep(cli_env, tmp_path)
    parent = _wait_for(process, "MLflow parent run:")
    child = _wait_for(process, "MLflow run:")
    process.kill()  # SIGKILL: nothing can close the runs
    process.wait(timeout=60)
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    assert client.get_run(child).info.status == client.get_run(parent).info.status == "RUNNING"
    result = subprocess.run(
        [python(), "-m", "vqa_interp.sweep", parent, "--status", "KILLED"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert client.get_run(child).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"
    assert child in result.stdout + result.stderr  # it says which it closed


@pytest.mark.slow
def test_a_job_that_fails_before_opening_its_run_is_counted_by_the_parent(cli_env, tmp_path):
    result = _run(["-m", "k=0.1,2", *FAST_ARGS, "analysis.baselines=false"], cli_env, tmp_path)
    assert result.returncode != 0
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(re.findall(r"MLflow parent run: (\w+)", result.stdout)[0])
    assert parent.info.status == "FAILED"
    failed = parent.data.tags["failed_children"]
    assert failed != "none" and "k=2" in failed and "out of range" in failed
    assert parent.data.metrics["count/children_failed"] == 1


# ------------------------------------------------------------------ bad data, named before any run
def _copy_embedded(embedded_root, tmp_path) -> Path:
    copy = tmp_path / "embedded"
    shutil.copytree(embedded_root, copy)
    return copy


def _first_val_image(root: Path) -> Path:
    from vqa_interp.data.vqa import image_path_of, read_records, resolve_paths

    paths = resolve_paths(root)
    first = min(int(p.stem.split("_")[0]) for p in paths.human_maps.glob("*.png"))
    record = next(r for r in read_records(paths) if r.question_id == first)
    return image_path_of(paths, record.image_id)


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "not_an_image"])
def test_a_bad_image_is_named_or_skipped_and_counted(embedded_root, tmp_path, damage):
    from vqa_interp.data.selection import load_examples
    from vqa_interp.data.vqa import resolve_paths
    from vqa_interp.errors import DataError

    root = _copy_embedded(embedded_root, tmp_path)
    image = _first_val_image(root)
    data = image.read_bytes()
    image.write_bytes({"zero_bytes": b"", "truncated": data[: len(data) // 2], "not_an_image": b"hello" * 100}[damage])
    with pytest.raises(DataError, match=re.escape(str(image)) + r".*skip_bad_images"):
        load_examples(resolve_paths(root), limit=5)
    selection = load_examples(resolve_paths(root), limit=5, skip_bad_images=True)
    assert selection.skipped["bad_image"] >= 1 and len(selection.examples) == 5 - selection.skipped["bad_image"]


def test_a_human_map_holding_nan_is_named_before_any_work(embedded_root, tmp_path):
    """A 32-bit float map (TIFF bytes behind a .png name: PIL reads files by their content) with NaN:
    named, never silently dropped from the floors and the ceiling."""
    import numpy as np
    from PIL import Image

    from vqa_interp.data.selection import load_examples
    from vqa_interp.data.vqa import resolve_paths
    from vqa_interp.errors import DataError

    root = _copy_embedded(embedded_root, tmp_path)
    target = sorted(resolve_paths(root).human_maps.glob("*.png"))[0]
    values = np.asarray(Image.open(target).convert("L"), np.float32) / 255
    values[3, 3] = np.nan
    Image.fromarray(values, mode="F").save(target, format="TIFF")
    with pytest.raises(DataError, match=re.escape(str(target)) + r" holds 1 NaN or infinite value"):
        load_examples(resolve_paths(root))


@pytest.mark.slow
def test_the_cli_names_a_truncated_image_before_opening_a_run(embedded_root, cli_env, tmp_path):
    root = _copy_embedded(embedded_root, tmp_path)
    image = _first_val_image(root)
    image.write_bytes(image.read_bytes()[:300])
    result = _run([f"data.root={root}", *QUICK], cli_env, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(image) in result.stderr and "truncated" in result.stderr
    assert "MLflow run:" not in result.stdout
    # the embedded benchmark asks 3 questions about each image: all 3 are skipped, the next 3 are run
    skipped = _run([f"data.root={root}", "data.skip_bad_images=true", *QUICK, "data.limit=6"], cli_env, tmp_path)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    run = MlflowClient(cli_env["MLFLOW_TRACKING_URI"]).get_run(_run_id(skipped.stdout))
    assert run.data.metrics["count/skipped_bad_image"] == 3 and run.data.metrics["count/questions"] == 3


def _edit_json(path: Path, edit) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize("fault", ["lone_surrogate", "answer_not_a_string", "question_not_a_string"])
def test_bad_text_in_the_json_is_named(embedded_root, tmp_path, fault):
    from vqa_interp.data.selection import load_examples
    from vqa_interp.data.vqa import resolve_paths
    from vqa_interp.errors import DataError

    root = _copy_embedded(embedded_root, tmp_path)
    paths = resolve_paths(root)
    first = min(int(p.stem.split("_")[0]) for p in paths.human_maps.glob("*.png"))

    def questions(payload):
        q = next(q for q in payload["questions"] if q["question_id"] == first)
        q["question"] = "Is there a \ud800 circle?" if fault == "lone_surrogate" else 42

    def annotations(payload):
        a = next(a for a in payload["annotations"] if a["question_id"] == first)
        a["answers"][0]["answer"] = 7

    if fault == "answer_not_a_string":
        _edit_json(paths.annotations, annotations)
    else:
        _edit_json(paths.questions, questions)
    with pytest.raises(DataError, match=rf"{first}"):
        load_examples(resolve_paths(root), limit=3)


# ------------------------------------------------------------------ the map cache, per map
@pytest.mark.slow
def test_maps_are_reused_across_selections(cli_env, tmp_path):
    cache = tmp_path / "cache"
    small = _run([*QUICK, f"paths.cache={cache}"], cli_env, tmp_path)
    assert small.returncode == 0, small.stderr[-3000:]
    larger = _run(
        [*[a for a in QUICK if not a.startswith("data.limit")], "data.limit=5", f"paths.cache={cache}"],
        cli_env,
        tmp_path,
    )
    assert larger.returncode == 0, larger.stderr[-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    first, second = (client.get_run(_run_id(r.stdout)).data.metrics for r in (small, larger))
    assert second["count/map_cache_hits"] == first["count/maps"]  # the 3 questions' maps reused
    assert second["count/map_cache_misses"] == second["count/maps"] - first["count/maps"]


@pytest.mark.slow
def test_two_identical_runs_at_once_compute_each_map_once(cli_env, tmp_path):
    args = [
        "method=occlusion",
        "data.limit=12",
        "preprocessing.size=32",
        "analysis.baselines=false",
        "attribution.batch_size=2",
        "tracking.log_maps=false",
        f"paths.cache={tmp_path / 'cache'}",
    ]
    runs = [
        subprocess.Popen(
            [python(), "-m", "vqa_interp.run", *args],
            env=cli_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=900) for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs[0][1][-3000:] + outputs[1][1][-3000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    metrics = [client.get_run(_run_id(out)).data.metrics for out, _ in outputs]
    assert metrics[0]["count/maps"] == metrics[1]["count/maps"]
    assert metrics[0]["count/map_cache_misses"] + metrics[1]["count/map_cache_misses"] == metrics[0]["count/maps"]
    tables = [
        client.download_artifacts(_run_id(out), "tables/per_example.csv", str(tmp_path / f"t{i}"))
        for i, (out, _) in enumerate(outputs)
    ]
    assert Path(tables[0]).read_text() == Path(tables[1]).read_text()


# ------------------------------------------------------------------ processes that die as PID 1 of a container
def _in_new_pid_namespace(code: str, tmp_path: Path) -> subprocess.Popen:
    """``code`` run by Python as PID 1 of a new PID (and user) namespace, as a container's main
    process; SIGKILL to the returned process kills it (``--kill-child``)."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--pid", "--fork", "true"], capture_output=True
        ).returncode
    ):
        pytest.skip("unshare cannot make a PID namespace here (needs util-linux and user namespaces)")
    return subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child=SIGKILL", python(), "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _first_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, "the process in the namespace printed nothing"
    return line


def test_a_map_claim_held_by_a_killed_container_process_is_taken_over(tmp_path):
    from vqa_interp.attribution.cache import MapCache

    code = (
        "import os, time\nfrom vqa_interp.attribution.cache import MapCache\n"
        f"cache = MapCache({str(tmp_path)!r}, {{'m': 1}})\nassert cache.claim('q1_0')\n"
        "print(os.getpid(), flush=True)\ntime.sleep(600)\n"
    )
    holder = _in_new_pid_namespace(code, tmp_path)
    try:
        assert _first_line(holder) == "1"  # it is PID 1 where it runs
        cache = MapCache(tmp_path, {"m": 1})
        assert not cache.claim("q1_0") and cache.claimed_by_other("q1_0")
        assert "process 1 on" in cache.claimant("q1_0")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 20
    while not cache.claim("q1_0"):  # the kernel dropped its lock
        assert time.monotonic() < deadline, "the dead process's claim was never released"
        time.sleep(0.1)
    assert not cache.claimed_by_other("q1_0")
    cache.release("q1_0")


def test_a_run_whose_container_process_was_killed_is_closed_as_killed(tmp_path):
    from vqa_interp.tracking.liveness import close_orphans, orphaned

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = f"TrackingSettings(uri={uri!r}, artifact_root={str(tmp_path / 'artifacts')!r})"
    code = (
        "import os, time\nfrom vqa_interp.settings import TrackingSettings\n"
        "from vqa_interp.tracking.store import start_run\n"
        f"tracker = start_run({tracking}, 'victim')\nprint(tracker.run_id, flush=True)\ntime.sleep(600)\n"
    )
    victim = _in_new_pid_namespace(code, tmp_path)
    try:
        run_id = _first_line(victim)
        client = MlflowClient(uri)
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and run.data.tags["process_id"] == "1" and not orphaned(run)
    finally:
        victim.kill()
        victim.wait(timeout=30)
    deadline = time.monotonic() + 20
    while not orphaned(client.get_run(run_id)):  # once the kernel has dropped its lock
        assert time.monotonic() < deadline, "the killed process is still seen alive"
        time.sleep(0.1)
    assert close_orphans(client, client.get_run(run_id).info.experiment_id) == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "ended without closing the run" in run.data.tags["error"]


def test_an_interrupt_during_the_sweeps_comparison_ends_the_parent_killed_and_keeps_finished_children(
    tmp_path, monkeypatch
):
    from vqa_interp.tracking import signals, sweep
    from vqa_interp.tracking.store import RunTracker

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, run_name="sweep: method=a,b", tags={"run_kind": "sweep"}).info.run_id
    drawing = client.create_run(experiment, run_name="b", tags={"mlflow.parentRunId": parent}).info.run_id

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "summarize_sweep", interrupted)
    monkeypatch.setattr(signals, "_INTERRUPTED", [])
    finished = []

    def finish():  # the last job's figures, logged after the comparison: its run ends FINISHED
        client.set_terminated(drawing, "FINISHED")
        finished.append(drawing)

    status = sweep.close_parent(RunTracker(client, parent, experiment), "FINISHED", [drawing], finish)
    assert status == "KILLED" and client.get_run(parent).info.status == "KILLED"
    assert finished and client.get_run(drawing).info.status == "FINISHED"
    assert signals.was_interrupted() and signals.exit_code() == 130


def test_a_description_longer_than_a_tag_holds_is_cut_at_a_paragraph_and_kept_whole(home, tmp_path, caplog):
    """MLflow truncates a tag value over 8000 characters mid-line with a warning (a 3x2 sweep's
    description was 12,298): the tool cuts it at a paragraph, says where the whole text is, and logs
    that text as an artifact, with no warning."""
    import logging

    from conftest import settings_with
    from vqa_interp.tracking.store import DESCRIPTION_FILE, DESCRIPTION_TAG, start_run

    settings = settings_with(home, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    paragraphs = [f"**The answer**\n\n- line {i}: " + "x" * 300 for i in range(40)]
    text = "\n\n".join(paragraphs)
    tracker = start_run(settings.tracking, "long")
    with caplog.at_level(logging.WARNING):
        tracker.set_description(text)
        tracker.set_description("short")  # a short one is the tag itself, unchanged
        short = tracker.client.get_run(tracker.run_id).data.tags[DESCRIPTION_TAG]
        tracker.set_description(text)
    assert short == "short"
    described = tracker.client.get_run(tracker.run_id).data.tags[DESCRIPTION_TAG]
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(described) <= 8000 and described.startswith("**The answer**")
    kept, pointer = described.rsplit("\n\n", 1)
    assert text.startswith(kept + "\n\n") and DESCRIPTION_FILE in pointer
    whole = tracker.client.download_artifacts(tracker.run_id, DESCRIPTION_FILE, str(tmp_path))
    assert open(whole).read() == text
    tracker.client.set_terminated(tracker.run_id, "FINISHED")
