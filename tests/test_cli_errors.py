"""What a user sees when asking for help or making a config mistake."""

import re
import subprocess

import pytest

from conftest import ROOT, python

CONF = ROOT / "conf"


def _run(args, env=None, cwd=None):
    return subprocess.run(
        [python(), "-m", "vqa_interp.run", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_help_names_every_option_once_and_aliases_as_aliases():
    result = _run(["--help"])
    assert result.returncode == 0
    groups = result.stdout.split("== Config (override")[0]
    for group in ("method", "data", "model", "preprocessing", "confidence", "experiment"):
        for path in sorted((CONF / group).glob("*.yaml")):
            assert re.search(rf"\b{path.stem}\b", groups), f"{group}={path.stem} is missing from --help"
    for alias in ("salien", "ggrdcm"):
        assert f"(alias {alias})" in groups and len(re.findall(rf"\b{alias}\b", groups)) == 1


def test_the_train_command_shows_the_same_help():
    run_help = _run(["--help"]).stdout.split("== Config (override")[0]
    result = subprocess.run(
        [python(), "-m", "vqa_interp.train", "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("== Config (override")[0] == run_help


# Through the CLI: one error of each origin (Hydra's parser and choices, the config's validation, the
# store's checks, the data a run selects), each one line, exit 2, no traceback, no run opened
CLI_ERRORS = [
    ("k=abc", "k='abc' is not a number"),
    ("data.skip_missing_images=no", "data.skip_missing_images='no'; expected true or false"),
    ("attribution.target_policy=label", "analysis.map_for_example=label"),
    ("method=ig method.n_steps=0", "method.n_steps=0 is out of range for method=ig"),
    ("scoring.human=annotator scoring.annotator=7", "scoring.annotator=7: none of the"),
    ("tracking.uri=file:./mlruns", "tracking.uri=file:./mlruns: a file store"),
    ("tracking.uri=sqlite:////proc/nowhere/mlflow.db", "the folder /proc/nowhere cannot be created"),
    ("method=nosuch", "method=nosuch is not a config of the method group"),
    ("model=vlit", "did you mean model=vilt?"),
]
# The config's other checks: the same validation (vqa_interp.settings.from_config) the CLI turns into
# that one line, run here on the composed config
CONFIG_ERRORS = [
    ("k=1e-9", "top-k region of"),
    ("scoring.tie_policy=exact", "scoring.tie_policy=fractional"),
    ("data.question_ids=abc", "data.question_ids='abc'"),
    ("+method.nope=1", "unknown option"),
    ("scoring.metrics=[rank_corr,nope]", "scoring.metrics[]"),
    ("method=occlusion method.stride=0", "method.stride=0 is out of range"),
    ("memory.budget=lots", "memory.budget='lots'"),
    ("analysis.test=ttest", "analysis.test"),
    ("data.question_ids=[900001000,900001000,900001000]", "data.question_ids lists [900001000] more than once"),
    ("seed=abc", "seed='abc'"),
    ("analysis.baselines=off", "analysis.baselines='off'; expected true or false"),
    ("explain.steps=0", "explain.steps=0; expected an integer >= 1"),
]


@pytest.mark.parametrize("override,message", CLI_ERRORS)
def test_a_config_error_is_one_line_exit_2_and_no_traceback(override, message, cli_env, tmp_path):
    result = _run([*override.split(), "data.limit=5"], env=cli_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    from mlflow.tracking import MlflowClient  # no run was opened

    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


@pytest.mark.parametrize("override,message", CONFIG_ERRORS)
def test_every_other_config_error_is_one_line_naming_the_key(override, message):
    from hydra import compose, initialize_config_dir

    from vqa_interp.errors import ConfigError
    from vqa_interp.settings import from_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError) as caught:
            from_config(compose("config", overrides=[*override.split(), "data.limit=5"]))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreachable_tracking_server_fails_fast_in_one_line(cli_env, tmp_path):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    result = _run(["data.limit=4"], env=env, cwd=tmp_path)  # no retries: it ends within _run's timeout
    assert result.returncode == 2 and f"tracking.uri=http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_truncated_tracking_database_is_one_line_before_any_run(cli_env, tmp_path):
    """A store cut short (a full disk, a copy interrupted) is named with the fix, not two SQLAlchemy
    tracebacks."""
    import shutil
    import sqlite3

    good = tmp_path / "good.db"
    with sqlite3.connect(good) as db:
        db.executescript("create table t (x); " + "".join(f"insert into t values ({i}); " for i in range(2000)))
    truncated = tmp_path / "mlruns" / "mlflow.db"
    truncated.parent.mkdir()
    shutil.copy(good, truncated)
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    overwritten = tmp_path / "text.db"
    overwritten.write_text("not a database at all")
    for store in (truncated, overwritten):
        env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
        result = _run(["data.limit=4"], env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"{store} is not a readable SQLite database" in result.stderr and f"mv {store}" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["data.root=/data/my", "vqa"], "'data.root=\"/data/my vqa\"'"),
        (["data.root=/data/vqa (copy)"], "'data.root=\"/data/vqa (copy)\"'"),
    ],
)
def test_a_path_hydra_cannot_parse_is_named_with_the_quoting_that_works(args, message, cli_env, tmp_path):
    result = _run(args, env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_path_with_a_space_quoted_as_readme_shows_reaches_the_run(cli_env, tmp_path):
    """README's form for a path with a space: one shell word, Hydra-quoted where needed."""
    folder = tmp_path / "my data (copy)"
    folder.mkdir()
    checkpoint = ROOT / "tests" / "data" / "smoke_model_v0.3.pth"
    result = _run([f'data.root="{folder}"', "data=vqahat", f"model.checkpoint={checkpoint}"], env=cli_env, cwd=tmp_path)
    # the path arrived whole: the reader looks for the questions inside it
    assert result.returncode == 2 and f"{folder}/OpenEnded_mscoco_val2014_questions.json" in result.stderr, (
        result.stderr
    )


def test_a_sweep_into_a_store_it_cannot_use_is_one_line(cli_env, tmp_path):
    result = _run(["-m", "tracking.uri=file:./mlruns", "k=0.05,0.1", "data.limit=4"], env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and "tracking.uri=file:./mlruns: a file store" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_verbose_is_taken_before_hydra_reads_the_command_line(monkeypatch):
    """``-v`` / ``--verbose`` (which Hydra's parser refuses) is taken out and turns on full output in
    every process of the command through the environment its jobs inherit."""
    import os

    from vqa_interp.util.arguments import VERBOSE_ENV, take_verbose, verbose

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert take_verbose(["-m", "method=saliency,ig"]) == ["-m", "method=saliency,ig"] and not verbose()
    assert take_verbose(["-m", "-v", "k=0.1", "--verbose"]) == ["-m", "k=0.1"]
    assert verbose() and os.environ[VERBOSE_ENV] == "1"
    monkeypatch.setenv(VERBOSE_ENV, "0")
    assert not verbose()


def test_verbose_flag_passes_through_to_a_run(cli_env, tmp_path):
    result = subprocess.run(
        [python(), "-m", "vqa_interp.run", "-v", "--help"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "== Configuration groups" in result.stdout
