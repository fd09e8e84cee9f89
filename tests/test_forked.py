"""A call in a forked process (vqa_interp.util.forked): what the run's scoring beside its explain
stage rests on."""

import os
import signal
import time

import numpy as np
import pytest

from vqa_interp.util import forked


def test_the_call_runs_in_another_process_and_its_result_comes_back():
    values = np.random.default_rng(0).random((300, 300))
    job = forked.start(lambda: (os.getpid(), values * 2))
    pid, doubled = job.result()
    assert job.pid == pid != os.getpid()
    np.testing.assert_array_equal(doubled, values * 2)
    assert not job.path.exists()


def test_without_fork_the_call_is_made_here():
    job = forked.start(os.getpid, fork=False)
    assert job.pid is None and job.result() == os.getpid()


def test_the_childs_exception_is_raised_here_with_its_traceback():
    def fails():
        raise ValueError("scoring.k=0.7 leaves no region")

    job = forked.start(fails)
    with pytest.raises(ValueError, match="leaves no region") as raised:
        job.result()
    assert any("forked process" in note and "in fails" in note for note in raised.value.__notes__)


def test_a_child_that_dies_without_a_result_is_an_error():
    job = forked.start(lambda: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(RuntimeError, match="no result"):
        job.result()


def test_the_child_does_not_run_this_processs_signal_handlers(tmp_path):
    """A SIGTERM meant for the run must not make the child run the run's handler (which marks the
    MLflow run KILLED)."""
    before = signal.signal(signal.SIGTERM, lambda *_: (tmp_path / "handled").touch())
    try:
        job = forked.start(lambda: signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        assert job.result() is True
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not (tmp_path / "handled").exists()


def test_a_cancelled_call_leaves_no_process():
    job = forked.start(lambda: time.sleep(60))
    job.cancel()
    with pytest.raises(ProcessLookupError):
        os.kill(job.pid, 0)
    assert not job.path.exists()


def test_torch_gets_its_threads_back_when_the_block_ends():
    import torch

    from vqa_interp.util.allocator import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
