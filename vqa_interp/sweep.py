"""``python -m vqa_interp.sweep PARENT_RUN_ID``: (re)build a sweep's comparison and close its parent
run, e.g. one left RUNNING by a killed multirun (see :mod:`vqa_interp.tracking.sweep`)."""

import sys

from vqa_interp.tracking.sweep import main

if __name__ == "__main__":
    sys.exit(main())
