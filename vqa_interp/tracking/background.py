"""A run's figures drawn in a forked process while the run (or the next job of a sweep) goes on.

Drawing and saving a run's figures (PNG + SVG) is single-threaded matplotlib work, ~6-10 s of a
run on the embedded default, and everything around it is single-threaded too; on a 2-core machine
the second core sat idle. :func:`draw_figures` forks: the child draws every figure into a
temporary folder (and keeps the k-independent ones in the figure cache) and exits; the parent goes
on with the rest of the run. The run's figures are then logged, and the run ended, by
:func:`finish`: at once in a single run, or, inside a sweep whose jobs run in this process
(Hydra's basic launcher), at the next job's figure stage or at the end of the sweep
(:func:`defer` / :func:`finish_deferred`), so that one job's figures are drawn while the next
job computes. A run stays RUNNING until its figures are in.

The child only draws with matplotlib (Agg, SVG) and writes files; it never touches the MLflow
store, torch or the parent's open files, and leaves with ``os._exit`` (no ``atexit`` hook, no
buffer flush). Where ``fork`` is missing (Windows), the figures are drawn in this process.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from vqa_interp.util.forked import can_fork, die_with_parent, exit_code_if_ended, kill_and_reap, wait_for
from vqa_interp.util.scratch import scratch_dir

log = logging.getLogger(__name__)

Makers = dict[str, Callable[[], "object"]]   # artifact name -> a function that draws that matplotlib Figure


def _draw(makers: Makers, folder: Path, keep_in: Callable[[str], Path | None]) -> None:
    """Draw and save every figure into ``folder``, one at a time, in order; copy those ``keep_in``
    names a folder for into it, the PNG last (it marks the pair complete). Once the kept ones
    (which come first) are written, :data:`KEPT_FILE` says so."""
    from vqa_interp.analysis.figures import save_figure
    from vqa_interp.util.locking import write_atomic

    start = time.perf_counter()
    for name, make in makers.items():
        keep = keep_in(name)
        if keep is None and not (folder / KEPT_FILE).exists():
            (folder / KEPT_FILE).touch()
        png = folder / f"{name}.png"
        save_figure(make(), png)
        if keep is not None:
            for file in (png.with_suffix(".svg"), png):
                write_atomic(Path(keep) / file.name, lambda tmp, file=file: shutil.copyfile(file, tmp))
    (folder / KEPT_FILE).touch()
    (folder / SECONDS_FILE).write_text(f"{time.perf_counter() - start:.3f}")


SECONDS_FILE, ERROR_FILE, KEPT_FILE = "draw_seconds.txt", "draw_error.txt", "kept_written"


@dataclass
class FigureJob:
    """A run's figures being drawn: by process ``pid`` (None: already drawn in this process) into
    ``folder``; ``keeps`` is the figure-cache folder it writes into (None if it renders no
    k-independent figure), ``cached`` the PNGs of figures taken from that cache."""
    pid: int | None
    folder: Path
    keeps: Path | None = None
    cached: list[Path] = field(default_factory=list)
    status: int | None = None

    def done(self) -> bool:
        """Whether the drawing has ended (never blocks)."""
        if self.pid is not None and self.status is None:
            self.status = exit_code_if_ended(self.pid)
        return self.pid is None or self.status is not None

    def kept(self) -> bool:
        """Whether the figures it keeps in the figure cache are written (or it has ended)."""
        return (self.folder / KEPT_FILE).exists() or self.done()

    def wait(self) -> None:
        """Block until the drawing has ended."""
        if self.pid is not None and self.status is None:
            self.status = wait_for(self.pid, self.cancel)

    def collect(self) -> tuple[list[Path], float]:
        """Wait; the PNGs to log (each with its SVG beside it) and the seconds the drawing took.
        Raises ``RuntimeError`` with the child's traceback when the drawing failed."""
        self.wait()
        if self.status not in (None, 0) or (self.folder / ERROR_FILE).exists():
            error = (self.folder / ERROR_FILE).read_text() if (self.folder / ERROR_FILE).exists() else \
                f"the drawing process ended with status {self.status}"
            raise RuntimeError(f"drawing the run's figures failed:\n{error}")
        seconds = float((self.folder / SECONDS_FILE).read_text())
        return sorted(self.folder.glob("*.png")) + list(self.cached), seconds

    def cancel(self) -> None:
        """Stop the drawing (the run failed): end the child and reap it."""
        if self.pid is not None and self.status is None:
            kill_and_reap(self.pid)
            self.status = -9

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextlib.contextmanager
    def cancelled_on_error(self) -> Iterator["FigureJob"]:
        """The drawing is stopped (and its folder removed) when the block raises."""
        try:
            yield self
        except BaseException:
            self.cancel()
            self.remove()
            raise


def draw_figures(makers: Makers, keep_in: Callable[[str], Path | None] = lambda name: None, *,
                 keeps: Path | None = None, cached: Iterable[Path] = ()) -> FigureJob:
    """Start drawing the figures of ``makers`` (name -> function drawing it, called in the drawing
    process, in order); ``keep_in(name)``: a folder to keep that figure's files in too, or None
    (the kept ones first). ``keeps``: that folder, for :func:`finish_deferred`; ``cached``: PNGs
    of figures drawn before, logged with the new ones. Returns at once."""
    folder = Path(tempfile.mkdtemp(prefix="figures-", dir=scratch_dir()))
    job = FigureJob(None, folder, keeps, list(cached))
    if not can_fork():
        with job.cancelled_on_error():   # a failed drawing leaves no folder behind
            _draw(makers, folder, keep_in)
        return job
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (torch's pool) may deadlock the
        # child; this child takes no lock those threads hold: it only draws and writes files
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:   # the child
        code = 0
        try:
            die_with_parent()
            _draw(makers, folder, keep_in)
        except BaseException:
            code = 1
            with contextlib.suppress(BaseException):
                (folder / ERROR_FILE).write_text(traceback.format_exc())
        os._exit(code)
    job.pid = pid
    return job


@dataclass
class FigureJobs:
    """Several :class:`FigureJob` drawing one run's figures side by side (the same interface): for a
    run that would otherwise wait for one drawing process while the other core sits idle."""
    jobs: list[FigureJob]

    @property
    def keeps(self) -> Path | None:
        return next((j.keeps for j in self.jobs if j.keeps is not None), None)

    def done(self) -> bool:
        return all([j.done() for j in self.jobs])

    def kept(self) -> bool:
        return all([j.kept() for j in self.jobs])

    def wait(self) -> None:
        for j in self.jobs:
            j.wait()

    def collect(self) -> tuple[list[Path], float]:
        """Every job's PNGs, and the drawing seconds of the slowest (they draw at the same time)."""
        pngs, seconds = [], 0.0
        try:
            for j in self.jobs:
                mine, took = j.collect()
                pngs += mine
                seconds = max(seconds, took)
        except BaseException:
            self.cancel()
            raise
        return pngs, seconds

    def cancel(self) -> None:
        for j in self.jobs:
            j.cancel()

    def remove(self) -> None:
        for j in self.jobs:
            j.remove()

    cancelled_on_error = FigureJob.cancelled_on_error


def draw_figures_split(makers: Makers, keep_in: Callable[[str], Path | None] = lambda name: None, *,
                       keeps: Path | None = None, cached: Iterable[Path] = (), workers: int = 1):
    """:func:`draw_figures` over ``workers`` processes: the first draws the kept figures (those
    ``keep_in`` names a folder for, first, as :func:`draw_figures` does), the others' share of the
    rest goes to whichever has drawn least so far, counting a kept figure twice (they hold images)."""
    if workers <= 1 or not can_fork() or len(makers) < 2:
        return draw_figures(makers, keep_in, keeps=keeps, cached=cached)
    shares: list[Makers] = [{} for _ in range(workers)]
    load = [0] * workers
    for name, make in makers.items():
        kept = keep_in(name) is not None
        i = 0 if kept else min(range(workers), key=lambda w: (load[w], -w))
        shares[i][name] = make
        load[i] += 2 if kept else 1
    jobs = [draw_figures(share, keep_in, keeps=keeps if i == 0 else None, cached=cached if i == 0 else ())
            for i, share in enumerate(shares) if share]
    return jobs[0] if len(jobs) == 1 else FigureJobs(jobs)


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
    from vqa_interp.tracking.store import ending

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
        except Exception as exc:   # noqa: BLE001 - recorded on the run; the sweep goes on
            log.error("run %s: %s", tracker.run_id, exc)


def pending() -> int:
    """How many runs wait for their figures."""
    return len(_DEFERRED)


def pending_runs() -> list[str]:
    """The ids of the runs that wait for their figures."""
    return [tracker.run_id for tracker, _ in _DEFERRED]
