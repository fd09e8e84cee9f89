"""What the MLflow UI shows first: the runs table with the headline columns (a saved view the
printed links open), a sweep parent's ranking as metrics, tables the UI's viewer can show; the UI
itself checked in headless Chromium with a fresh profile on a real `mlflow server`."""

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import running_mlflow_server
from vqa_interp.settings import TrackingSettings
from vqa_interp.tracking.store import start_run
from vqa_interp.tracking.ui_view import VIEW_TAG, headline_columns, ranking_metrics, table_url, view_state, viewer_table


def test_a_sweeps_ranking_becomes_one_metric_per_method_and_headline_metric():
    ranking = pd.DataFrame(
        {
            "k": [0.1] * 4 + [0.05] * 2,
            "metric": ["rank_corr", "rank_corr", "kld", "iou", "iou", "iou"],
            "method": ["saliency", "ggradcam", "saliency", "saliency", "saliency", "ggradcam"],
            "mean": [0.2, 0.3, 1.5, 0.1, 0.12, np.nan],
        }
    )
    metrics = ranking_metrics(ranking)
    assert metrics == {
        "ranking/saliency/k0.1/rank_corr": 0.2,
        "ranking/ggradcam/k0.1/rank_corr": 0.3,
        "ranking/saliency/k0.1/iou": 0.1,
        "ranking/saliency/k0.05/iou": 0.12,
    }
    one_k = ranking[ranking["k"] == 0.1]
    assert ranking_metrics(one_k, "model=embedded_vilt") == {
        "ranking/model_embedded_vilt/saliency/rank_corr": 0.2,
        "ranking/model_embedded_vilt/ggradcam/rank_corr": 0.3,
        "ranking/model_embedded_vilt/saliency/iou": 0.1,
    }
    assert ranking_metrics(pd.DataFrame()) == {}


def test_the_viewers_table_has_no_dotted_names_and_meaningful_digits():
    table = pd.DataFrame(
        {
            "run_id": ["a"],
            "method.name": ["saliency"],
            "data.shard": [0],
            "score/rank_corr": [0.123456789012],
            "norm/iou": [np.nan],
        }
    )
    shown = viewer_table(table)
    assert list(shown.columns) == ["run_id", "method", "data_shard", "score/rank_corr", "norm/iou"]
    assert shown.iloc[0].tolist() == ["a", "saliency", "0", "0.1235", ""]


def test_the_saved_view_is_written_once_per_form(tmp_path):
    tracking = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    client = MlflowClient(tracking.uri)
    written = []
    for _ in range(2):
        start_run(tracking, "a run").end()
        written.append(client.get_experiment_by_name("vqa-interp").tags[VIEW_TAG])
    assert written[0] == written[1]  # not rewritten (its createdAt would change)
    experiment = client.get_experiment_by_name("vqa-interp")
    envelope = json.loads(experiment.tags[VIEW_TAG])
    assert json.loads(envelope["state"]) == view_state() and envelope["name"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_the_printed_link_opens_the_runs_table_with_the_headline_columns(tmp_path, browser):
    """A fresh profile on a real server: the link opens the runs table (not the GenAI overview)
    with the run's method, k and headline scores as columns."""
    from selenium.webdriver.support.ui import WebDriverWait

    tracking = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    tracker = start_run(tracking, "saliency k=0.1 (embedded, 10 q)")
    tracker.log_params({"method.name": "saliency", "model.name": "embedded", "k": 0.1})
    tracker.log_metrics(
        {
            "score/rank_corr": 0.4321,
            "score/iou": 0.25,
            "model/accuracy": 0.7,
            **{f"other/{i}": float(i) for i in range(40)},
        }
    )
    tracker.end()
    with running_mlflow_server(tmp_path, tracking.uri) as url:
        link = table_url(url, tracker.experiment_id)
        browser.set_window_size(2600, 1000)  # every column rendered (the grid draws only those in view)
        browser.get(link)
        WebDriverWait(browser, 90).until(lambda b: "score/rank_corr" in b.find_element("tag name", "body").text)
        browser.save_screenshot(str(tmp_path / "runs_table.png"))
        text = browser.find_element("tag name", "body").text
    for column in ("method.name", "score/rank_corr", "score/iou", "model/accuracy"):
        assert column in text, column
    assert "saliency k=0.1 (embedded, 10 q)" in text and "0.4321" in text
    assert "Model training" in text and "\nRuns\n" in text and "Overview" not in text  # not the GenAI page
    assert "other/3" not in text  # the view names its columns; the rest stay hidden
    assert len(headline_columns()) < 15
