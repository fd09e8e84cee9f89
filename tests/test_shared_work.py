"""Work shared by a forked process and this one (vqa_interp.util.shared_work): a run's scoring
taken by both cores once the explain stage ends."""

import multiprocessing
import os

import pytest

from vqa_interp.util import forked
from vqa_interp.util.shared_work import SharedCounter, SharedWork


def _squares(n: int, log: str | None = None) -> SharedWork:
    def item(i: int) -> tuple[int, int]:
        if log is not None:  # one line per computation, whichever process makes it
            with open(log, "a") as out:
                out.write(f"{i} {os.getpid()}\n")
        return i * i, os.getpid()

    return SharedWork([lambda i=i: item(i) for i in range(n)], lambda results: [value for value, _ in results])


def test_a_forked_child_and_this_process_share_the_items_and_each_is_computed_once(tmp_path):
    """The child claims the first item and then waits until this process has taken the rest, so
    the split is known: item 0 there, items 1..n-1 here; the outcome is in item order."""
    log = str(tmp_path / "log")
    work, counter = _squares(12, log), SharedCounter()
    context = multiprocessing.get_context("fork")
    child_claimed, parent_done = context.Event(), context.Event()
    claims = []

    def child_claim() -> int:
        number = counter.claim()
        claims.append(number)
        if len(claims) == 1:
            child_claimed.set()
            assert parent_done.wait(60)
        return number

    child = forked.start(lambda: work.take(child_claim))
    assert child_claimed.wait(60)
    here = work.take(counter.claim)
    parent_done.set()
    there = child.result()
    assert sorted(there) == [0] and sorted(here) == list(range(1, 12))
    assert {pid for _, pid in there.values()} == {child.pid} and {pid for _, pid in here.values()} == {os.getpid()}
    assert work.complete(there, here) == [i * i for i in range(12)]
    lines = open(log).read().split()
    assert sorted(int(i) for i in lines[::2]) == list(range(12))  # each item computed once, by one of the two


def test_the_counter_hands_out_each_number_once_across_threads_and_a_fork():
    counter = SharedCounter()
    child = forked.start(lambda: [counter.claim() for _ in range(200)])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        here = [n for part in pool.map(lambda _: [counter.claim() for _ in range(100)], range(3)) for n in part]
    there = child.result()
    assert sorted(here + there) == list(range(500))


def test_threads_take_the_items_and_the_outcome_keeps_their_order(tmp_path):
    log = str(tmp_path / "log")
    assert _squares(40, log).run(threads=3) == [i * i for i in range(40)] == _squares(40).run()
    assert sorted(int(i) for i in open(log).read().split()[::2]) == list(range(40))


def test_an_item_no_taker_returned_is_an_error_not_a_shorter_table():
    work = _squares(5)
    part = work.take(SharedCounter().claim)
    del part[3]
    with pytest.raises(RuntimeError, match="1 of 5 items were claimed but never returned .first: item 3"):
        work.complete(part)


def test_no_items_finish_at_once():
    work = SharedWork([], lambda results: ("cached", len(results)))
    assert work.take(SharedCounter().claim) == {} and work.complete({}) == ("cached", 0)
