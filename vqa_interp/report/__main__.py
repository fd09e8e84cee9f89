"""``python -m vqa_interp.report RUN_ID [RUN_ID ...] --out DIR``: a report that cites its runs
(:mod:`vqa_interp.report.build`). A sweep's parent run ID stands for the whole sweep. Reads any
tracking store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the first of
``sqlite:///mlruns/mlflow.db`` and the stores this project has written to that holds the run
(:mod:`vqa_interp.tracking.stores`); a read never creates a store."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from vqa_interp.errors import VqaInterpError
from vqa_interp.tracking.report_source import build_report
from vqa_interp.tracking.store import find_run, quiet_artifact_downloads
from vqa_interp.tracking.stores import default_home, locate_run, reading_client
from vqa_interp.tracking.ui_view import ui_base


def main(argv: list[str] | None = None) -> int:
    quiet_artifact_downloads()
    parser = argparse.ArgumentParser(prog="python -m vqa_interp.report", description=__doc__.split("\n")[0])
    parser.add_argument(
        "run_ids",
        nargs="+",
        metavar="RUN",
        help="MLflow run IDs, 8-character short IDs or run names (a sweep parent = its sweep)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<first run's name>)")
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="the store the runs were logged in (default: the first of sqlite:///mlruns/mlflow.db "
        "and the stores this project has written to that holds the first run)",
    )
    parser.add_argument(
        "--ui-url",
        help="base URL of the MLflow UI for run links (default: the tracking server, "
        "or http://127.0.0.1:5000 where `mlflow ui` serves a local store)",
    )
    args = parser.parse_args(argv)
    try:
        uri = locate_run(args.run_ids[0], args.tracking_uri, default_home())
        client = reading_client(uri)
        out = args.out
        if out is None:
            first = find_run(client, args.run_ids[0])
            out = Path("reports") / (
                re.sub(r"[^A-Za-z0-9._=-]+", "_", first.info.run_name).strip("_") or first.info.run_id
            )
        html_path, md_path = build_report(client, args.run_ids, out, args.ui_url or ui_base(uri))
    except VqaInterpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    explorer_path = html_path.parent / "explorer.html"
    print(f"wrote {html_path} and {md_path}" + (f" (explorer: {explorer_path})" if explorer_path.exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
