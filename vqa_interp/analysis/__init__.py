"""Analysis: statistics of the per-example table (splits, tests, correlations), verdicts, comparisons
across runs and their figures; the report that people read is in :mod:`vqa_interp.report.build`."""
