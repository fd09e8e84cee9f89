"""``python -m vqa_interp.report RUN_ID [RUN_ID ...] --out DIR``: a report that cites its runs
(see :mod:`vqa_interp.tracking.report`)."""
import sys

from vqa_interp.tracking.report import main

if __name__ == "__main__":
    sys.exit(main())
