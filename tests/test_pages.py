"""Pages read from a store that someone else wrote: a payload in every field the report and the
explorer read (run name, params, tags, table cells, question text and id, metric names, picture
URIs) is shown as text or left out, never run; opened in headless Chromium where it is installed."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

PAYLOAD = "<img src=x onerror=\"document.title='pwned'\">"
STYLE_PAYLOAD = "x)}</style><script>document.title='pwned'</script><style>{"


def _store_with_payloads(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("payloads", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(
        experiment,
        run_name=PAYLOAD,
        tags={"run_kind": "evaluation", "git_commit": PAYLOAD, "hydra_overrides": f"method={PAYLOAD}"},
    )
    run_id = run.info.run_id
    client.log_param(run_id, "method.name", PAYLOAD)
    client.log_param(run_id, "k", "0.1")
    client.log_metric(run_id, "score/rank_corr", 0.4)
    significance = pd.DataFrame(
        [
            {
                "comparison": PAYLOAD,
                "metric": "rank_corr",
                "test": "cluster_bootstrap",
                "role": "primary",
                "in_family": True,
                "testable": True,
                "reason": PAYLOAD,
                "n1": 10,
                "n2": 10,
                "mean1": 0.1,
                "mean2": 0.2,
                "p_value": 0.5,
                "p_holm": 0.5,
                "significant": False,
            }
        ]
    )
    folder = tmp_path / "upload"
    (folder / "tables").mkdir(parents=True)
    significance.to_csv(folder / "tables" / "significance.csv", index=False)
    client.log_artifacts(run_id, str(folder / "tables"), "tables")
    uri = "data:image/png;base64,iVBORw0KGgo="
    explorer = {
        "version": 1,
        "title": PAYLOAD,
        "questions": {
            "1": {
                "question": PAYLOAD,
                "answer": PAYLOAD,
                "answer_type": PAYLOAD,
                "question_type": PAYLOAD,
                "image_id": 1,
                "image": STYLE_PAYLOAD,
                "humans": [uri, STYLE_PAYLOAD],
            },
            PAYLOAD: {
                "question": "q",
                "answer": "a",
                "answer_type": "other",
                "question_type": "what",
                "image_id": 2,
                "image": uri,
                "humans": [],
            },
        },
        "columns": [
            {
                "id": run_id,
                "label": PAYLOAD,
                "method": PAYLOAD,
                "model": PAYLOAD,
                "k": 0.1,
                "low": 0.25,
                "high": 0.75,
                "metrics": ["rank_corr", "x' onmouseover='alert(1)"],
                "headline": ["rank_corr"],
            }
        ],
        "rows": {
            run_id: {
                "1": {
                    "prediction": PAYLOAD,
                    "target_answer": PAYLOAD,
                    "confidence": PAYLOAD,
                    "correct": True,
                    "band": PAYLOAD,
                    "split": PAYLOAD,
                    "scores": {"rank_corr": 0.4, "x' onmouseover='alert(1)": 0.1},
                    "floors": {PAYLOAD: {"rank_corr": 0.1}},
                    "map": STYLE_PAYLOAD,
                }
            }
        },
    }
    (folder / "explorer").mkdir()
    (folder / "explorer" / "explorer.json").write_text(json.dumps(explorer))
    client.log_artifacts(run_id, str(folder / "explorer"), "explorer")
    client.set_terminated(run_id, "FINISHED")
    return client, run_id


def test_payloads_in_every_field_are_text_in_the_report_and_the_explorer(tmp_path, request):
    from vqa_interp.tracking.report_source import build_report

    client, run_id = _store_with_payloads(tmp_path)
    html_path, md_path = build_report(client, [run_id], tmp_path / "report", "http://127.0.0.1:5000")
    report = html_path.read_text()
    explorer = (html_path.parent / "explorer.html").read_text()
    for page in (report, explorer):
        assert "<img src=x" not in page and "<script>document.title" not in page
        assert "onmouseover=" not in page
    assert "&lt;img src=x onerror=" in report  # the run name, shown as text
    assert "&lt;img src=x onerror=" in explorer  # the question, shown as text
    assert STYLE_PAYLOAD not in explorer  # a picture that is not a data URI is left out
    try:
        browser = request.getfixturevalue("browser")
    except pytest.skip.Exception:
        return
    for page in (html_path, html_path.parent / "explorer.html"):
        browser.get(page.as_uri())
        assert browser.title != "pwned"
        assert not browser.find_elements("css selector", "img[src='x']")


def test_a_sweeps_name_carries_no_paths_or_stores():
    from vqa_interp.tracking.callback import named_overrides

    overrides = [
        "method=saliency,ggradcam",
        "paths.home=/tmp/pytest-of-root/x",
        "tracking.uri=sqlite:////tmp/a/mlflow.db",
        "model.pretrained=/models/llava-1.5-7b-hf/",
        "+experiment=smoke",
    ]
    assert named_overrides(overrides) == [
        "method=saliency,ggradcam",
        "model.pretrained=llava-1.5-7b-hf",
        "+experiment=smoke",
    ]
