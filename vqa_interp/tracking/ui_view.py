"""What the MLflow UI shows first: a saved view of the experiment's runs table with the headline
columns, the parent's ranking as metrics, and tables the UI's table viewer can show.

MLflow 3's runs table shows no metric or parameter column until a user picks them; a saved view
(an experiment tag ``mlflow.sharedViewState.<key>``, the UI's own "Save as new view") holds the
columns, and ``#/experiments/ID?viewStateShareKey=<key>`` opens on it. Every link this project
prints to the experiment carries that key.
"""

from __future__ import annotations

import json
import math
import re
import time

import pandas as pd

from vqa_interp.metrics.registry import headline_metrics

VIEW_KEY = "vqa-interp-headline"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "vqa-interp: headline"
COLUMN_PARAMS = ("model.name", "method.name", "k")


def headline_columns() -> list[str]:
    """The runs table's columns in the UI's own keys (``params.`k```, ``metrics.`score/iou```)."""
    metrics = [
        "model/accuracy",
        *(f"score/{m}" for m in headline_metrics()),
        "norm/rank_corr",
        "baseline/human_ceiling/rank_corr",
        "baseline/centre/rank_corr",
    ]
    return [f"params.`{p}`" for p in COLUMN_PARAMS] + [f"metrics.`{m}`" for m in metrics]


def view_state() -> dict:
    """The view: the headline columns, newest run first, every run shown (none folded away)."""
    return {
        "selectedColumns": headline_columns(),
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "runsHiddenMode": "SHOW_ALL",
    }


def ensure_view(client, experiment_id: str, tags: dict) -> None:
    """Write the saved view on the experiment unless its current form is there."""
    state = json.dumps(view_state(), sort_keys=True)
    current = tags.get(VIEW_TAG)
    if current is not None:
        try:
            if json.loads(current).get("state") == state:
                return
        except (ValueError, AttributeError):
            pass
    now = int(time.time() * 1000)
    client.set_experiment_tag(
        experiment_id, VIEW_TAG, json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": state})
    )


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in the headline view."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def _metric_part(text: str) -> str:
    """``text`` in the characters MLflow allows in a metric name."""
    return re.sub(r"[^A-Za-z0-9_\-. :]+", "_", str(text)).strip("_") or "_"


def ranking_metrics(ranking: pd.DataFrame, label: str = "") -> dict[str, float]:
    """A sweep parent's ranking as metrics, one per method and headline metric (``ranking/saliency/iou``;
    ``ranking/<setting>/...`` and ``.../k0.1/...`` where the sweep has several), the mean over
    questions, so that the parent's charts and columns show the answer."""
    if ranking is None or ranking.empty:
        return {}
    rows = ranking[ranking["metric"].isin(headline_metrics())]
    several_k = "k" in rows and rows["k"].nunique() > 1
    out = {}
    for row in rows.itertuples():
        parts = [
            "ranking",
            *([_metric_part(label)] if label else []),
            _metric_part(row.method),
            *([f"k{row.k:g}"] if several_k else []),
            row.metric,
        ]
        if row.mean is not None and math.isfinite(row.mean):
            out["/".join(parts)] = float(row.mean)
    return out


def viewer_table(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """``table`` as the UI's table viewer shows it: no dots in column names (``method.name`` -> ``method``,
    ``data.shard`` -> ``data_shard``), numbers to ``digits`` significant digits, text as text."""
    renamed = {c: (c.rsplit(".", 1)[0] if c.endswith(".name") else c.replace(".", "_")) for c in table.columns}
    out = table.rename(columns=renamed).copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    return out.astype(str)


UI_PORT = 5000


def ui_base(uri: str) -> str:
    """The UI's address: the tracking server itself, or ``mlflow ui`` on 127.0.0.1:5000."""
    return uri.rstrip("/") if uri.startswith("http") else f"http://127.0.0.1:{UI_PORT}"


def ui_command(uri: str) -> str:
    """The command that serves the MLflow UI on this store."""
    if uri.startswith("http"):
        return f"the tracking server at {uri} serves it"
    return f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}"


UI_VIEW = "?workflowType=machine_learning"  # MLflow 3's UI otherwise opens on its GenAI overview


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the UI, in the model-training view (not MLflow 3's GenAI overview)."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}{UI_VIEW}"


def table_url(uri: str, experiment_id: str) -> str:
    """The experiment's runs table with the headline columns (:mod:`vqa_interp.tracking.ui_view`)."""
    return experiment_url(ui_base(uri), experiment_id)
