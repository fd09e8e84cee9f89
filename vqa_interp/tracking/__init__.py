"""Everything MLflow: the store API (:mod:`~vqa_interp.tracking.store`), the Hydra sweep callback
(:mod:`~vqa_interp.tracking.callback`), a sweep parent's comparison (:mod:`~vqa_interp.tracking.sweep`),
the merge of shard runs (:mod:`~vqa_interp.tracking.merge`), runs ended once their figures are in
(:mod:`~vqa_interp.tracking.figure_runs`) and a report's inputs read from the store
(:mod:`~vqa_interp.tracking.report_source`). No other package imports MLflow."""

from vqa_interp.tracking.store import (
    PARENT_TAG,
    RunTracker,
    child_runs,
    client_for,
    download_table,
    ending,
    find_run,
    flatten,
    resolve_tracking_uri,
    start_run,
    tracked_run,
    training_run,
)
from vqa_interp.tracking.ui_view import ui_command

__all__ = [
    "PARENT_TAG",
    "RunTracker",
    "child_runs",
    "client_for",
    "download_table",
    "ending",
    "find_run",
    "flatten",
    "resolve_tracking_uri",
    "start_run",
    "tracked_run",
    "training_run",
    "ui_command",
]
