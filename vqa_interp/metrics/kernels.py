"""Compiled kernels for the one sort each map needs (numba, compiled once and cached on disk).

Why hand-written: a map's sort is most of the cost of scoring it, and the LSD radix sort below (four
8-bit passes over order-preserving uint32 keys, skipping a pass whose digit is the same for every
value, carrying the keys so each pass reads memory in order) is faster than NumPy's fastest exact
route (docs/research/speed.md, "Measurements behind the code"). The result is exactly
``np.argsort(values, kind="stable")`` (tests compare them on ties, zeros, signed zeros, infinities
and float64 values that round to the same float32).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _float32_keys(single):
    """Order-preserving uint32 keys of float32 values ``[n]`` (negative: all bits flipped;
    non-negative: sign bit set). ``-0.0`` must have been made ``+0.0`` by the caller."""
    bits = single.view(np.uint32)
    keys = np.empty(bits.size, np.uint32)
    for i in range(bits.size):
        b = bits[i]
        keys[i] = ~b if b & np.uint32(0x80000000) else b | np.uint32(0x80000000)
    return keys


@numba.njit(cache=True, nogil=True)
def _radix_argsort(keys):
    """Stable argsort ``[n]`` int64 of uint32 ``keys`` ``[n]`` and the sorted keys ``[n]``: LSD
    radix, four 8-bit digits."""
    n = keys.size
    order = np.arange(n)
    spare = np.empty(n, np.int64)
    k = keys.copy()
    k_spare = np.empty(n, np.uint32)
    counts = np.zeros((4, 256), np.int64)
    for i in range(n):
        v = k[i]
        counts[0, v & 255] += 1
        counts[1, (v >> 8) & 255] += 1
        counts[2, (v >> 16) & 255] += 1
        counts[3, v >> 24] += 1
    for p in range(4):
        total = 0
        constant = False
        for b in range(256):
            c = counts[p, b]
            if c == n:
                constant = True  # every value has this digit: the pass changes nothing
            counts[p, b] = total
            total += c
        if constant:
            continue
        shift = 8 * p
        for i in range(n):
            v = k[i]
            d = (v >> shift) & 255
            at = counts[p, d]
            counts[p, d] = at + 1
            spare[at] = order[i]
            k_spare[at] = v
        order, spare = spare, order
        k, k_spare = k_spare, k
    return order, k


@numba.njit(cache=True, nogil=True)
def _refine(order, keys, values):
    """Sort, in place, each run of equal ``keys`` in ``order`` by the exact ``values`` (insertion
    sort, moving only past strictly larger values, so equal values keep their index order). The
    runs are the values that round to the same float32: a few pixels each."""
    n = order.size
    start = 0
    while start < n:
        end = start + 1
        key = keys[order[start]]
        while end < n and keys[order[end]] == key:
            end += 1
        for i in range(start + 1, end):
            item = order[i]
            value = values[item]
            j = i - 1
            while j >= start and values[order[j]] > value:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = item
        start = end
    return order


@numba.njit(cache=True, nogil=True)
def centred_average_ranks(sorted_values, order):
    """Average ranks minus their mean, ``[n]`` float64, in the map's pixel order, from its sort
    (``order``, and ``sorted_values``: anything whose runs of equal neighbours are the runs of
    equal values in ``values[order]``, such as the sorted keys): a run at sorted positions
    ``s..e-1`` gets ``(s + e + 1) / 2 - (n + 1) / 2`` (``scipy.stats.rankdata(values) - (n + 1) / 2``).
    Reading the sorted values in order, not through ``order``, keeps the one random access the write."""
    n = order.size
    out = np.empty(n, np.float64)
    centre = (n + 1) / 2.0
    start = 0
    while start < n:
        value = sorted_values[start]
        end = start + 1
        while end < n and sorted_values[end] == value:
            end += 1
        rank = (start + end + 1) / 2.0 - centre
        for i in range(start, end):
            out[order[i]] = rank
        start = end
    return out


@numba.njit(cache=True, nogil=True)
def top_region(values, order, n_region, policy):
    """The top-``n_region`` region of a map from its sort, sparse: ``(index, weight)``, the pixels
    with a non-zero weight ``[m]`` int64 and their weights ``[m]`` float64 (``policy``: 0 fractional,
    1 include, 2 index; see :mod:`vqa_interp.metrics.prepare`). Only the pixels next to the
    threshold are read through ``order``."""
    n = order.size
    threshold = values[order[n - n_region]]
    first = n - n_region  # the run of values equal to the threshold: first..last-1
    while first > 0 and values[order[first - 1]] == threshold:
        first -= 1
    last = n - n_region + 1
    while last < n and values[order[last]] == threshold:
        last += 1
    free = n_region - (n - last)
    tied = last - first
    if policy == 2:  # the lowest flat indices: the stable sort keeps them first
        start, stop, tie_weight = first, first + free, 1.0
    else:
        start, stop, tie_weight = first, last, (1.0 if policy == 1 else free / tied)
    m = (stop - start) + (n - last)
    index = np.empty(m, np.int64)
    weight = np.empty(m, np.float64)
    j = 0
    for i in range(start, stop):
        index[j] = order[i]
        weight[j] = tie_weight
        j += 1
    for i in range(last, n):
        index[j] = order[i]
        weight[j] = 1.0
        j += 1
    return index, weight


def sort_map(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map's stable argsort ``[n]`` int64 and its sorted run marker ``[n]``: the sorted float32
    keys for a float32-exact map (equal keys exactly where equal values), else ``values[order]``.
    See :func:`argsort_exact`."""
    values = np.ascontiguousarray(values)
    single = values.astype(np.float32) + np.float32(0.0)  # -0.0 -> +0.0: equal values, equal keys
    keys = _float32_keys(single)
    order, sorted_keys = _radix_argsort(keys)
    if values.dtype != np.float32 and not np.array_equal(single, values):
        order = _refine(order, keys, values.astype(np.float64))
        return order, values[order]
    return order, sorted_keys


def argsort_exact(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of a flat float map ``[n]`` (int64 ``[n]``), no NaN.

    The values are rounded to float32 (monotone: ``x <= y`` gives ``f32(x) <= f32(y)``) and radix
    sorted by their order-preserving bits; a map that is not exactly float32 (a float64 map from
    NumPy) is then in order except within runs that round to the same float32, which are sorted by
    the exact values. Maps from Captum and Pillow's float resize are float32 values and skip that.
    """
    return sort_map(values)[0]
