"""Scoring beside the model's stages: the one place that decides which process does what.

Scoring (NumPy, one core) runs in a forked process while this one runs the model for the sanity
checks and the explain stage (torch, on the other core); one after the other where it cannot
(not Linux, a GPU, ``scoring.fork=false``, nothing to run beside it). Whichever process ends its
own stage first takes the other's unclaimed items (:mod:`vqa_interp.util.shared_work`): the run
scores the questions the forked process has not claimed, and the forked process (one torch
thread, as the run's explain stage) runs explain batches where two processes fit the memory budget.
Every item is computed the same way in either process, so the tables do not depend on the split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from vqa_interp.pipeline.explain import explain_needed, two_can_explain
from vqa_interp.pipeline.sanity import run_sanity_checks
from vqa_interp.util import forked
from vqa_interp.util.allocator import one_blas_thread, torch_threads
from vqa_interp.util.memory import GIB, peak_rss
from vqa_interp.util.shared_work import SharedCounter, SharedWork


@dataclass
class Scheduled:
    """What the scoring and the model's stages produced, and who did what."""

    table: pd.DataFrame
    skipped: dict
    references: pd.DataFrame | None
    hits: dict
    explained: object | None  # the explain stage's tables (None: nothing to explain)
    sanity: pd.DataFrame | None
    process: str  # who scored and explained (the run's ``scoring_process`` tag)
    timings: dict = field(default_factory=dict)


def score_and_explain(
    settings, work: SharedWork, explaining: SharedWork | None, sanity_inputs: tuple, n_targets: int
) -> Scheduled:
    """Run the scoring ``work`` and the model's stages (the sanity checks on ``sanity_inputs`` =
    ``(model, dataset, examples, load_images, question)`` when ``analysis.sanity``; the ``explaining``
    batches), the scoring in a forked process where it can. Timings: ``time/scoring_s``,
    ``time/explain_s`` (each the seconds both processes spent on it), ``time/sanity_s``,
    ``time/scoring_wait_s`` (what the run waited for the forked process) and the shares taken over."""
    scoring_counter, explain_counter = SharedCounter(), SharedCounter()
    fork_scoring = bool(
        settings.scoring.fork
        and len(work.items)
        and not settings.device.startswith("cuda")
        and (settings.analysis.sanity or explain_needed(settings))
    )
    fork_explains_too = (
        fork_scoring and explaining is not None and len(explaining.items) > 0 and two_can_explain(settings)
    )
    timings: dict[str, float] = {}

    def score() -> tuple:  # the questions this process claims: the method's maps, the floors and ceiling
        start = time.perf_counter()
        with one_blas_thread():
            done = work.take(scoring_counter.claim, settings.scoring.workers)
        return done, time.perf_counter() - start, peak_rss()

    def explain() -> tuple:  # the explain batches this process claims
        start = time.perf_counter()
        done = explaining.take(explain_counter.claim) if explaining is not None else {}
        return done, time.perf_counter() - start

    def forked_process() -> tuple:
        scored = score()
        if not fork_explains_too:
            return (*scored, {}, 0.0)
        with torch_threads(1):
            return (*scored, *explain())

    scoring = forked.start(forked_process, fork=fork_scoring)
    try:
        # one torch thread for the whole stage while scoring is forked, whenever the scoring ends: the
        # thread count changes float32 sums, and a run's tables must not depend on timing
        with torch_threads(1 if scoring.pid is not None else None):
            sanity = None
            if settings.analysis.sanity:
                start = time.perf_counter()
                sanity = run_sanity_checks(sanity_inputs[0], settings, *sanity_inputs[1:])
                timings["time/sanity_s"] = time.perf_counter() - start
            explained_by_run, explain_by_run_s = explain()
        waited = time.perf_counter()
        # the questions the forked process has not claimed yet are scored here too, on the freed core
        scored_by_run, score_by_run_s, _ = score()
        scored_by_fork, score_by_fork_s, fork_rss, explained_by_fork, explain_by_fork_s = scoring.result()
        if scoring.pid is not None:
            timings["time/scoring_wait_s"] = time.perf_counter() - waited
            if scored_by_run:
                timings["time/scoring_shared_s"] = score_by_run_s
        explained = _complete_explaining(
            explaining, (explained_by_run, explain_by_run_s), (explained_by_fork, explain_by_fork_s), n_targets, timings
        )
        finishing = time.perf_counter()
        with one_blas_thread():
            table, skipped, references, hits = work.complete(scored_by_fork, scored_by_run)
        timings["time/scoring_s"] = (
            score_by_fork_s + (score_by_run_s if scored_by_run else 0.0) + time.perf_counter() - finishing
        )
    except BaseException:
        scoring.cancel()
        raise
    process = _who(
        scoring.pid is not None,
        fork_rss,
        len(scored_by_run),
        work,
        (len(explained_by_fork), len(explaining.items)) if fork_explains_too else None,
    )
    return Scheduled(table, skipped, references, hits, explained, sanity, process, timings)


def _complete_explaining(explaining, by_run: tuple, by_fork: tuple, n_targets: int, timings: dict):
    """The explain stage's tables from the batches each process took (``(results, seconds)`` of the
    run and of the forked process), and ``time/explain_s`` (both processes' seconds) with the share
    the forked process took (``time/explain_shared_s``); None when nothing was to explain."""
    (run_results, run_s), (fork_results, fork_s) = by_run, by_fork
    if explaining is None:
        if n_targets:
            timings["time/explain_s"] = run_s  # every part off: nothing to explain
        return None
    finishing = time.perf_counter()
    explained = explaining.complete(run_results, fork_results)
    timings["time/explain_s"] = run_s + fork_s + time.perf_counter() - finishing
    if fork_results:
        timings["time/explain_shared_s"] = fork_s
    return explained


def _who(forked_scoring: bool, fork_rss: int, scored_by_run: int, work: SharedWork, explained: tuple | None) -> str:
    """The run's ``scoring_process`` tag: who scored, and who explained what."""
    if not forked_scoring:
        return "the run's"
    return (
        f"forked, beside the explain stage (peak RSS {fork_rss / GIB:.2f} GB); {scored_by_run} of "
        f"{len(work.items)} {work.label} items then taken by the run's"
        + (f"; {explained[0]} of {explained[1]} explain batches taken by the forked process" if explained else "")
    )
