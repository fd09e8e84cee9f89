"""What people read: the report (:mod:`~vqa_interp.report.build`, ``python -m vqa_interp.report``),
the question explorer (:mod:`~vqa_interp.report.explorer`), the colours of maps drawn over images,
and the forked processes that draw a run's figures (:mod:`~vqa_interp.report.drawing`). Nothing here
reads or writes the MLflow store: :mod:`vqa_interp.tracking` logs these pages and reads them back."""
