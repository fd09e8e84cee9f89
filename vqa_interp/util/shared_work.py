"""Work split into numbered items that several takers share: threads of this process, and a
process forked from it, each claim the next unclaimed item from one counter until none is left.

A run scores its questions in a forked child while it explains the model; when the explain stage
ends before the scoring, the run itself takes the questions the child has not claimed yet, so
both cores score the rest (:func:`vqa_interp.pipeline.execute`). Each item is a pure function of
the inputs, so which taker computed it does not change its result; :meth:`SharedWork.complete`
puts the results back in item order.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from vqa_interp.util.progress import tqdm


class SharedCounter:
    """An integer in shared memory, counted from 0 by every taker: the threads of this process and
    the processes forked after it was made (it lives in a shared mapping, its lock is a process-shared
    semaphore)."""

    def __init__(self):
        try:
            context = multiprocessing.get_context("fork")
        except ValueError:  # no fork here (Windows): the default context's value serves the threads
            context = multiprocessing.get_context()
        self._value = context.Value("q", 0)

    def claim(self) -> int:
        """The next number; each number is handed out once, whoever asks."""
        with self._value.get_lock():
            number = self._value.value
            self._value.value = number + 1
        return number


@dataclass
class SharedWork:
    """``items[i]()`` computes item i; ``finish(results)`` (the results in item order) makes the
    outcome. ``label`` names the progress bar."""

    items: Sequence[Callable[[], Any]]
    finish: Callable[[list], Any]
    label: str = "work"

    def take(self, claim: Callable[[], int], threads: int = 1) -> dict[int, Any]:
        """Compute the items ``claim`` hands out until it hands out one past the last; ``threads``
        > 1: that many threads take items from the same ``claim``. Returns item index -> result."""
        if not self.items:
            return {}
        bar = tqdm(total=len(self.items), desc=self.label, leave=False)

        def loop() -> dict[int, Any]:
            done = {}
            while (index := claim()) < len(self.items):
                done[index] = self.items[index]()
                bar.update()
            return done

        try:
            if threads <= 1:
                return loop()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(lambda _: loop(), range(threads)))
            return {index: result for part in parts for index, result in part.items()}
        finally:
            bar.close()

    def complete(self, *parts: dict[int, Any]) -> Any:
        """``finish`` of every item's result, gathered from the takers' ``parts``; an item no part
        holds is an error (a taker lost its share)."""
        done: dict[int, Any] = {}
        for part in parts:
            done.update(part)
        missing = [i for i in range(len(self.items)) if i not in done]
        if missing:
            raise RuntimeError(
                f"{self.label}: {len(missing)} of {len(self.items)} items were claimed but never "
                f"returned (first: item {missing[0]})"
            )
        return self.finish([done[i] for i in range(len(self.items))])

    def run(self, threads: int = 1) -> Any:
        """Every item here (``threads`` threads), then ``finish``."""
        return self.complete(self.take(SharedCounter().claim, threads))
