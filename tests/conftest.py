"""Shared fixtures. The embedded data and model live in the project's default home
(``.vqa-interp``, or ``$VQA_INTERP_HOME``), so they are built once and reused across tests and
by the README's main command."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def settings_with(home, *overrides):
    """The tool's settings from ``conf/`` with ``paths.home=home`` and Hydra ``overrides``."""
    from hydra import compose, initialize_config_dir

    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return from_config(compose("config", overrides=[f"paths.home={home}", *overrides]))


# for CLI tests of other stages: the explain stage (tokens, share, deletion/insertion) has tests of its own
NO_EXPLAIN = ["explain.tokens=false", "explain.share=false", "explain.faithfulness=false"]


def _home() -> Path:
    return Path(os.environ.get("VQA_INTERP_HOME", ROOT / ".vqa-interp")).resolve()


def pytest_sessionstart(session):
    """Spread over workers (``-n 2``, README's test command): the controller generates the embedded
    data once, before the tests are shared out (the embedded models are shipped with the package:
    nothing is trained)."""
    if not getattr(session.config.option, "numprocesses", None) or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from hydra import compose, initialize_config_dir

    from vqa_interp.data import dataset_for
    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config", overrides=[f"paths.home={_home()}"]))
    dataset_for(settings.data, settings.home).root()


@pytest.fixture(scope="session")
def home() -> Path:
    return _home()


@pytest.fixture(scope="session")
def embedded_root(home):
    from hydra import compose, initialize_config_dir

    from vqa_interp.data import dataset_for
    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config", overrides=[f"paths.home={home}"]))
    return dataset_for(settings.data, settings.home).root()


@pytest.fixture
def cli_env(tmp_path, home):
    """Environment for a CLI test: its own tracking store, the shared home."""
    return cli_environment(tmp_path, home)


def python() -> str:
    return sys.executable


# the tables every model kind's run logs, the CNN's as any other's
EVERY_MODEL_TABLES = {
    "tables/baselines.csv",
    "tables/normalised.csv",
    "tables/significance.csv",
    "tables/faithfulness.csv",
    "tables/token_attributions.csv",
}
FAST_ARGS = ["data.limit=10", "preprocessing.size=64", "analysis.bootstrap=100", "analysis.n_panels=2"]


def cli_environment(store_dir: Path, home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{store_dir}/mlflow.db",
            "VQA_INTERP_HOME": str(home),
            "TQDM_DISABLE": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


@pytest.fixture(scope="session")
def two_by_two_sweep(tmp_path_factory, home, worker_id):
    """One `-m method=saliency,ggradcam k=0.05,0.1` sweep shared by the tests that read it: run once
    per session, by whichever worker asks first (the others wait for it and read the same store)."""
    import json
    import subprocess

    from vqa_interp.util.locking import file_lock

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's folder, above each worker's
    folder = shared / "two_by_two_sweep"
    with file_lock(shared / "two_by_two_sweep.lock"):
        done = shared / "two_by_two_sweep.json"
        if not done.exists():
            folder.mkdir(exist_ok=True)
            env = cli_environment(folder, home)
            result = subprocess.run(
                [python(), "-m", "vqa_interp.run", "-m", "method=saliency,ggradcam", "k=0.05,0.1", *FAST_ARGS],
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=1200,
            )
            assert result.returncode == 0, result.stderr[-5000:]
            done.write_text(json.dumps({"env": env, "stdout": result.stdout}))
    recorded = json.loads(done.read_text())
    return {"env": recorded["env"], "dir": folder, "stdout": recorded["stdout"]}


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by selenium (nothing downloads a browser)."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(folder: Path, backend_uri: str, workers: int = 1):
    """A real `mlflow server` on a free port of 127.0.0.1 over ``backend_uri``, its artifacts in
    ``folder/artifacts``; yields its URL; stopped by its PID (the server and its workers)."""
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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
                raise RuntimeError("mlflow server did not start:\n" + (folder / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # (a server that died at start is already gone)
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers, by the server's PID
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
