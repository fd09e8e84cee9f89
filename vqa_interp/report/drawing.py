"""A run's figures drawn in a forked process while the run (or the next job of a sweep) goes on.

Drawing and saving a run's figures (PNG + SVG) is single-threaded matplotlib work, and everything
around it is single-threaded too, so on a 2-core machine the second core would sit idle. :func:`draw_figures` forks: the child draws every figure into a
temporary folder (and keeps the k-independent ones in the figure cache) and exits; the parent goes
on with the rest of the run. :mod:`vqa_interp.tracking.figure_runs` logs the figures and ends the
run when the drawing is done, so that one job's figures are drawn while the next job computes.

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

Makers = dict[str, Callable[[], "object"]]  # artifact name -> a function that draws that matplotlib Figure


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
            error = (
                (self.folder / ERROR_FILE).read_text()
                if (self.folder / ERROR_FILE).exists()
                else f"the drawing process ended with status {self.status}"
            )
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


def draw_figures(
    makers: Makers,
    keep_in: Callable[[str], Path | None] = lambda name: None,
    *,
    keeps: Path | None = None,
    cached: Iterable[Path] = (),
) -> FigureJob:
    """Start drawing the figures of ``makers`` (name -> function drawing it, called in the drawing
    process, in order); ``keep_in(name)``: a folder to keep that figure's files in too, or None
    (the kept ones first). ``keeps``: that folder, for :func:`finish_deferred`; ``cached``: PNGs
    of figures drawn before, logged with the new ones. Returns at once."""
    folder = Path(tempfile.mkdtemp(prefix="figures-", dir=scratch_dir()))
    job = FigureJob(None, folder, keeps, list(cached))
    if not can_fork():
        with job.cancelled_on_error():  # a failed drawing leaves no folder behind
            _draw(makers, folder, keep_in)
        return job
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (torch's pool) may deadlock the
        # child; this child takes no lock those threads hold: it only draws and writes files
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
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


def draw_figures_split(
    makers: Makers,
    keep_in: Callable[[str], Path | None] = lambda name: None,
    *,
    keeps: Path | None = None,
    cached: Iterable[Path] = (),
    workers: int = 1,
):
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
    jobs = [
        draw_figures(share, keep_in, keeps=keeps if i == 0 else None, cached=cached if i == 0 else ())
        for i, share in enumerate(shares)
        if share
    ]
    return jobs[0] if len(jobs) == 1 else FigureJobs(jobs)
