"""Reports from run IDs, and the analysis recomputed from a run's own per-example table."""

import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from mlflow.tracking import MlflowClient

from conftest import python

pytestmark = pytest.mark.slow


def _runs(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("vqa-interp").experiment_id], max_results=100)
    return client, runs


def test_report_from_a_parent_run_id_cites_every_run(two_by_two_sweep, tmp_path):
    env = two_by_two_sweep["env"]
    client, runs = _runs(env)
    parent = [r for r in runs if r.data.tags.get("run_kind") == "sweep"][0]
    out = tmp_path / "report"
    result = subprocess.run(
        [python(), "-m", "vqa_interp.report", parent.info.run_id, "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (out / "report.html").read_text()
    for run in runs:
        if run.data.tags.get("run_kind") in ("sweep", "evaluation"):
            assert run.info.run_id in page and run.info.run_id in (out / "report.md").read_text()
    sources = re.findall(r"<img[^>]*src=[\"']([^\"']*)[\"']", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # opens offline
    assert "Method comparison" in page and "Significance" in page and "Provenance" in page
    assert "p_holm" in page and "correct_vs_wrong" in page
    # the answers and one figure first (each method against the floors and the ceiling), then the findings
    assert (
        page.index("<h2>The answer</h2>")
        < page.index("each method against chance and a human")
        < page.index("<h2>Findings</h2>")
        < page.index("<h2>Runs</h2>")
        < page.index("<h2>Details</h2>")
    )
    assert "Which method looks most like humans" in page[: page.index("<h2>Findings</h2>")]
    # each picture once on the page; each run's figures on a page of its own, linked; Figure 2 as a table
    sources = re.findall(r"<img[^>]*src=[\"']([^\"']*)[\"']", page)
    assert len(sources) == len(set(sources)) and len(sources) <= 8
    children = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"]
    for child in children:
        assert (
            f'href="run_{child.info.run_id[:8]}.html"' in page and (out / f"run_{child.info.run_id[:8]}.html").exists()
        )
    assert "the paper&#39;s Figure 2" in page or "the paper's Figure 2" in page
    assert "Closest to humans on rank_corr" in page and "of the way from the random floor" in page
    assert "Downloading artifacts" not in result.stdout + result.stderr
    assert re.search(r"#/experiments/\d+/runs/" + parent.info.run_id, page)
    # the explorer beside the report, linked from its Findings: one column per child, every question
    assert page.index('<a href="explorer.html">Explorer</a>') < page.index("<h2>Runs</h2>")
    assert "[Explorer](explorer.html)" in (out / "report.md").read_text()
    explored = (out / "explorer.html").read_text()
    # a k sweep: one map column per method (k changes the scores, not the maps), k-dependent metrics per k
    assert len(children) == 4 and explored.count("name='col' value=") == 2
    assert explored.count("<article class='card'") == 10 and "method=<wbr>ggradcam<" in explored
    assert "iou_k0.05" in explored and "iou_k0.1" in explored and "rank_corr_k" not in explored


def test_report_takes_short_ids_and_names_and_defaults_its_folder(two_by_two_sweep, tmp_path):
    """A run by its short ID or its name; the short ID without a store named (no MLFLOW_TRACKING_URI):
    the report looks in the stores this project wrote to, and creates no default store by looking."""
    env = two_by_two_sweep["env"]
    client, runs = _runs(env)
    child = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"][0]
    unnamed = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    for reference, environment in ((child.info.run_id[:8], unnamed), (child.info.run_name, env)):
        result = subprocess.run(
            [python(), "-m", "vqa_interp.report", reference],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        written = list((tmp_path / "reports").glob("*/report.html"))
        assert written and child.info.run_id in written[0].read_text()
    assert not (tmp_path / "mlruns").exists()  # the default store was looked for, not made


def test_unknown_run_id_is_named(two_by_two_sweep, tmp_path):
    result = subprocess.run(
        [python(), "-m", "vqa_interp.report", "0123456789abcdef", "--out", str(tmp_path)],
        env=two_by_two_sweep["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "0123456789abcdef" in result.stderr


def test_the_sweep_ends_with_its_report_command_and_a_missing_store_is_not_created(two_by_two_sweep, tmp_path):
    """The sweep's last line is its report command; a store that does not exist is one line and is
    not created."""
    last = two_by_two_sweep["stdout"].strip().splitlines()[-1]
    store = two_by_two_sweep["env"]["MLFLOW_TRACKING_URI"]
    assert last.startswith("report: python -m vqa_interp.report ") and last.endswith(f"--tracking-uri {store}")
    env = {k: v for k, v in two_by_two_sweep["env"].items() if k != "MLFLOW_TRACKING_URI"}
    client, runs = _runs(two_by_two_sweep["env"])
    child = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"][0]
    missing = tmp_path / "elsewhere" / "mlflow.db"
    result = subprocess.run(
        [python(), "-m", "vqa_interp.report", child.info.run_id[:8], "--tracking-uri", f"sqlite:///{missing}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(missing) in result.stderr and "tracking.uri" in result.stderr and not missing.parent.exists()


def test_logged_statistics_recompute_from_the_runs_own_table(two_by_two_sweep, tmp_path):
    client, runs = _runs(two_by_two_sweep["env"])
    child = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"][0]
    table = pd.read_csv(client.download_artifacts(child.info.run_id, "tables/per_example.csv", str(tmp_path)))
    significance = pd.read_csv(client.download_artifacts(child.info.run_id, "tables/significance.csv", str(tmp_path)))
    examples = table[table["on_prediction"]].drop_duplicates("question_id")
    x = examples.loc[examples["correct"], "iou"].dropna().to_numpy()
    y = examples.loc[~examples["correct"], "iou"].dropna().to_numpy()
    row = significance[(significance.comparison == "correct_vs_wrong") & (significance.metric == "iou")].set_index(
        "test"
    )
    min_group = int(child.data.params["analysis.min_group"])
    if len(x) >= min_group and len(y) >= min_group:
        assert row.loc["welch", "p_value"] == pytest.approx(scipy.stats.ttest_ind(x, y, equal_var=False).pvalue)
        assert "p.welch.correct_vs_wrong.iou" not in child.data.metrics  # test statistics live in the tables
    else:  # underpowered: reported, not tested
        assert not row["testable"].any() and row["reason"].str.startswith("underpowered").all()
    # the headline metrics: one value per question (the map that stands for it), not one per map
    assert child.data.metrics["score/rank_corr"] == pytest.approx(np.nanmean(examples["rank_corr"]))
    assert child.data.metrics["score_median/iou"] == pytest.approx(np.nanmedian(examples["iou"]))


def test_the_sweep_parents_explorer_works_in_a_real_browser(two_by_two_sweep, tmp_path, browser):
    """The page the design-card sweep's parent logged: one map column per method (the k sweep's runs
    share their maps), the wrong-prediction
    filter shows exactly the questions some child got wrong, a card opens to its full view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    client, runs = _runs(two_by_two_sweep["env"])
    parent = [r for r in runs if r.data.tags.get("run_kind") == "sweep"][0]
    page = client.download_artifacts(parent.info.run_id, "explorer.html", str(tmp_path))
    child = [r for r in runs if r.data.tags.get("run_kind") == "evaluation"][0]
    predictions = pd.read_csv(client.download_artifacts(child.info.run_id, "tables/predictions.csv", str(tmp_path)))
    wrong = set(predictions.loc[~predictions["correct"].astype(bool), "question_id"].astype(int))
    browser.get("file://" + page)
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.body.dataset.ready === '1'"))

    def shown():
        return {
            int(c.get_attribute("data-qid"))
            for c in browser.find_elements(By.CSS_SELECTOR, ".card")
            if c.is_displayed()
        }

    assert len(shown()) == 10 and len(browser.find_elements(By.CSS_SELECTOR, "input[name='col']")) == 2
    Select(browser.find_element(By.NAME, "correct")).select_by_value("wrong")
    assert shown() == wrong  # every child has the same predictions (one model)
    Select(browser.find_element(By.NAME, "correct")).select_by_value("all")
    card = browser.find_elements(By.CSS_SELECTOR, ".card")[0]
    card.find_element(By.TAG_NAME, "summary").click()
    full = card.find_element(By.CSS_SELECTOR, ".full")
    assert full.is_displayed() and "Floors and ceiling" in full.text and "annotator 1" in full.text
