"""A run's figures logged, and the run ended, once the forked drawing of
:mod:`vqa_interp.report.drawing` is done: at once in a single run, or, inside a sweep whose jobs run
in this process (Hydra's basic launcher), at the next job's figure stage or at the end of the sweep
(:func:`defer` / :func:`finish_deferred`). A run stays RUNNING until its figures are in."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from vqa_interp.report.drawing import FigureJob
from vqa_interp.tracking.store import ending

log = logging.getLogger(__name__)


def log_figures(tracker, job: FigureJob) -> float:
    """Wait for the drawing, then log the run's figures (``figures/``: each PNG with its SVG) and
    the seconds the drawing took (``time/figures_s``). Returns the seconds this process waited
    for the drawing (what the figures still cost the run). Raises when the drawing failed."""
    try:
        start = time.perf_counter()
        pngs, seconds = job.collect()
        waited = time.perf_counter() - start
        for png in pngs:
            tracker.log_figure_files(png, "figures")
        tracker.log_metrics({"time/figures_s": seconds})
    finally:
        job.remove()
    return waited


def finish(tracker, job: FigureJob, *, failed: str = "FAILED") -> None:
    """:func:`log_figures`, then end the run FINISHED (``failed``, with the error, if it raises)."""
    with ending(tracker, failed=failed):
        log_figures(tracker, job)


_DEFERRED: list[tuple[object, FigureJob]] = []


def defer(tracker, job: FigureJob) -> None:
    """Finish the run later (:func:`finish_deferred`), when its figures are drawn; at the latest
    when this process exits."""
    if not _DEFERRED:
        import atexit

        atexit.unregister(finish_deferred)
        atexit.register(finish_deferred)
    _DEFERRED.append((tracker, job))


def finish_deferred(*, wait: bool = True, keeps: Path | None = None, at_most: int | None = None) -> None:
    """Finish the deferred runs whose drawing has ended; with ``wait``, all of them (blocking).
    ``keeps``: first wait until those writing into that figure-cache folder have written what
    they keep there (a job about to decide which cached figures it can reuse). ``at_most``: also
    wait for the oldest until no more than that many are still drawing. A failed drawing ends its
    run FAILED (KILLED after Ctrl-C or SIGTERM) and is logged, never raised (the job that
    deferred it has already returned)."""
    from vqa_interp.tracking.signals import was_interrupted

    while keeps is not None and not all(job.kept() for _, job in _DEFERRED if job.keeps == keeps):
        time.sleep(0.05)
    for tracker, job in list(_DEFERRED):
        drawing = [j for _, j in _DEFERRED if not j.done()]
        must = wait or (at_most is not None and len(drawing) > at_most and job in drawing)
        if not (must or job.done()):
            continue
        _DEFERRED.remove((tracker, job))
        try:
            finish(tracker, job, failed="KILLED" if was_interrupted() else "FAILED")
        except Exception as exc:  # noqa: BLE001 - recorded on the run; the sweep goes on
            log.error("run %s: %s", tracker.run_id, exc)


def pending() -> int:
    """How many runs wait for their figures."""
    return len(_DEFERRED)


def pending_runs() -> list[str]:
    """The ids of the runs that wait for their figures."""
    return [tracker.run_id for tracker, _ in _DEFERRED]
