"""``python -m vqa_interp.merge PARENT_RUN_ID``: merge a sweep's shard runs into one analysis run
(see :mod:`vqa_interp.tracking.merge`)."""

import sys

from vqa_interp.tracking.merge import main

if __name__ == "__main__":
    sys.exit(main())
