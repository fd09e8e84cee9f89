"""Process-wide allocator and thread settings, applied by the command-line entry points and the
scoring stage only (never on import)."""

from __future__ import annotations

import contextlib
from typing import Iterator

M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -3, -1  # glibc's mallopt parameters
KEPT_MMAP, KEPT_TRIM = 32 * 1024 * 1024, 1024 * 1024 * 1024
_KEPT = False


def _mallopt(option: int, value: int) -> bool:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(option, value))
    except (OSError, AttributeError):
        return False


def keep_freed_buffers() -> bool:
    """Ask glibc to keep freed multi-MB buffers in the heap instead of returning them to the OS.

    Scoring a 448x448 map makes about a dozen multi-MB arrays; with glibc's defaults the freed ones
    go back to the OS and the next map faults its pages in again. The mmap threshold is raised to
    32 MB and the trim threshold to 1 GB, above what one question's maps, floors and ceiling pairs
    at the four k of a k sweep hold (docs/research/speed.md, "Measurements behind the code").
    Returns False where glibc's ``mallopt`` is not available (a no-op there).
    """
    global _KEPT
    _KEPT = _mallopt(M_MMAP_THRESHOLD, KEPT_MMAP) and _mallopt(M_TRIM_THRESHOLD, KEPT_TRIM)
    return _KEPT


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS on one thread for the block (threadpoolctl; torch's own threads are untouched).

    Scoring calls BLAS for many short dot products (a map's region against another map's
    features); OpenBLAS then keeps a second thread busy-waiting between calls, taking the core the
    process drawing an earlier job's figures needs (:mod:`vqa_interp.report.drawing`; measured in
    docs/research/speed.md, "Measurements behind the code").
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (None: left as they are). A run that
    scores in a forked process on one core explains the model on one thread beside it, for the
    whole stage: two torch threads would share the other core with the scoring, and giving the
    second thread back when the scoring ends made the explain columns depend on timing (the thread
    count changes float32 sums). The cost, the explain stage on one thread, is won back by the forked
    process taking explain batches (on one thread too) once its scoring is done."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
