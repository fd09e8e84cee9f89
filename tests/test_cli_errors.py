"""What a user sees when asking for help or making a config mistake."""
import re
import subprocess
import pytest

from conftest import ROOT, python

CONF = ROOT / "conf"


def _run(args, env=None, cwd=None):
    return subprocess.run([python(), "-m", "vqa_interp.run", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def test_help_names_every_option_once_and_aliases_as_aliases():
    result = _run(["--help"])
    assert result.returncode == 0
    groups = result.stdout.split("== Config (override")[0]
    for group in ("method", "data", "model", "preprocessing", "confidence", "experiment"):
        for path in sorted((CONF / group).glob("*.yaml")):
            assert re.search(rf"\b{path.stem}\b", groups), f"{group}={path.stem} is missing from --help"
    for alias in ("salien", "ggrdcm"):
        assert f"(alias {alias})" in groups and len(re.findall(rf"\b{alias}\b", groups)) == 1


@pytest.mark.parametrize("override,message", [
    ("k=abc", "k='abc' is not a number"),
    ("k=1e-9", "top-k region of"),
    ("scoring.tie_policy=exact", "scoring.tie_policy=fractional"),
    ("data.question_ids=abc", "data.question_ids='abc'"),
    ("+method.nope=1", "unknown option"),
    ("scoring.metrics=[rank_corr,nope]", "scoring.metrics[]"),
    ("scoring.human=annotator scoring.annotator=7", "scoring.annotator=7: none of the"),
    ("attribution.target_policy=label", "analysis.map_for_example=label"),
    ("analysis.test=ttest", "analysis.test"),
])
def test_a_config_error_is_one_line_exit_2_and_no_traceback(override, message, cli_env, tmp_path):
    result = _run([*override.split(), "data.limit=5"], env=cli_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    from mlflow.tracking import MlflowClient   # no run was opened

    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_an_unreachable_tracking_server_fails_fast_in_one_line(cli_env, tmp_path):
    import socket

    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    result = _run(["data.limit=4"], env=env, cwd=tmp_path)   # no retries: it ends within _run's timeout
    assert result.returncode == 2 and f"tracking.uri=http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
