"""Shared fixtures. The embedded data and model live in the project's default home
(``.vqa-interp``, or ``$VQA_INTERP_HOME``), so they are built once and reused across tests and
by the README's main command."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def home() -> Path:
    return Path(os.environ.get("VQA_INTERP_HOME", ROOT / ".vqa-interp")).resolve()


@pytest.fixture(scope="session")
def embedded_root(home):
    from hydra import compose, initialize_config_dir

    from vqa_interp.pipeline import prepare_data_root

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.home={home}"])
    return prepare_data_root(cfg)


@pytest.fixture
def cli_env(tmp_path, home):
    """Environment for a CLI test: its own tracking store, the shared home."""
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "VQA_INTERP_HOME": str(home),
                "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)})
    return env


def python() -> str:
    return sys.executable
