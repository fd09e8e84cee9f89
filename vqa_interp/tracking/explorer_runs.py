"""The question explorer's data in MLflow: each run logs ``explorer/explorer.json`` and the page
(:mod:`vqa_interp.report.explorer` builds both); a sweep parent, a merged run and a report read its
children's entries back."""

from __future__ import annotations

import json

from vqa_interp.report import explorer
from vqa_interp.report.explorer import EXPLORER_HTML, EXPLORER_JSON
from vqa_interp.report.explorer_page import render
from vqa_interp.tracking.store import download_artifact


def log(tracker, data: dict | None) -> None:
    """Log ``explorer/explorer.json`` (for parents and reports) and ``explorer.html``."""
    if not data:
        return
    tracker.log_text(json.dumps(data), EXPLORER_JSON)
    tracker.log_text(render(data), EXPLORER_HTML)


def download(client, run_id: str, tmp: str) -> dict | None:
    """A run's explorer entry (None when it logged none)."""
    path = download_artifact(client, run_id, EXPLORER_JSON, tmp + f"/explorer-{run_id}")
    return json.loads(path.read_text()) if path is not None else None


def for_runs(client, runs, tmp: str, title: str) -> dict | None:
    """One page's data for ``runs`` (see :func:`~vqa_interp.report.explorer.page_runs`), each column labelled by what sets its
    run apart (:func:`~vqa_interp.report.explorer.column_labels`), runs that differ in ``k`` alone folded into one (:func:`~vqa_interp.report.explorer.fold_k`)."""
    runs = explorer.page_runs(runs)
    data = explorer.merge([download(client, r.info.run_id, tmp) for r in runs], title, explorer.column_labels(runs))
    return explorer.fold_k(data) if data else data
