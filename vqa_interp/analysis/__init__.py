"""Analysis: statistics of the per-example table (splits, tests, correlations), figures, and the
report built from tracked runs."""
