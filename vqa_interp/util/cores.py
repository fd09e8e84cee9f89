"""How many cores this process may use and how many of them are free, and torch's threads sized from
that, so that a busy machine slows a stage down by at most the cores it took.

Torch's intra-op threads meet at the end of every parallel region. When another program holds one of
the cores, the thread on that core runs in slices and the others wait for it at each meeting, so a
stage slowed down by more than the core it lost (docs/research/speed.md, "Measurements behind the
code"). Two things fix it:

- **as many threads as free cores** (:func:`free_cores`: the cores in this process's affinity mask,
  less the ones other programs keep busy, read from ``/proc/stat`` over a short window; the load
  average lags by a minute and counts waiting processes), checked again between epochs and between
  sweep jobs (:func:`size_torch_threads`);
- **threads that soon stop spinning while they wait** (:func:`quiet_waiting`: ``GOMP_SPINCOUNT``
  for the GNU OpenMP runtime torch's Linux wheels use; it must be set before torch is imported), so
  that load arriving between two checks costs little. Fully passive waiting
  (``OMP_WAIT_POLICY=passive``) slows the small models' many short parallel regions on a quiet
  machine; a short spin keeps the quiet speed (``benchmarks/busy.py`` measures all three).

A float32 sum depends on how many threads share it, so a stage sized from the load computes bits
that depend on the load. Training is sized (``model.train.threads: auto``; a number fixes it for a
bit-identical retrain, and the counts used are in the training history); the attribution maps are
computed on thread counts fixed by the stage (:mod:`vqa_interp.pipeline`), so a map never depends on
the machine's load.
"""

from __future__ import annotations

import os
import time

# ~20k spins (tens of microseconds) before a waiting thread sleeps; GNU OpenMP's default is 300k
_WAIT_VARIABLES = {"GOMP_SPINCOUNT": "20000"}


def quiet_waiting() -> None:
    """Make the OpenMP runtime's waiting threads sleep soon (unless the user set the variable).
    Effective only before torch is first imported: the entry points (``python -m vqa_interp.run``,
    ``vqa_interp.train``) call it first; their child processes inherit it."""
    for key, value in _WAIT_VARIABLES.items():
        os.environ.setdefault(key, value)


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity mask; every CPU where there is no such mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times() -> dict[int, tuple[int, int]]:
    """``{cpu: (busy jiffies, total jiffies)}`` from ``/proc/stat`` ({} where there is none)."""
    times = {}
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                name, *fields = line.split()
                values = [int(v) for v in fields[:8]]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                times[int(name[3:])] = (sum(values) - idle, sum(values))
    except (OSError, ValueError):
        return {}
    return times


def _own_cpu_seconds() -> float:
    return time.process_time()


def free_cores(window: float = 0.1, cores: list[int] | None = None) -> int:
    """How many of the usable cores other programs leave free, measured over ``window`` seconds (at
    least 1). This process's own CPU time in the window is not counted as taken. Without
    ``/proc/stat`` every usable core counts as free."""
    cores = usable_cores() if cores is None else cores
    before, own_before = _cpu_times(), _own_cpu_seconds()
    if not before:
        return max(1, len(cores))
    time.sleep(window)
    after, own = _cpu_times(), _own_cpu_seconds() - own_before
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = total = 0.0
    for cpu in cores:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    if total <= 0:
        return max(1, len(cores))
    per_core = total / len(cores)  # jiffies one core had in the window
    taken = max(0.0, busy - own * ticks) / per_core
    # a core counts as taken when others used more than a third of it
    return max(1, min(len(cores), int(len(cores) - taken + 2 / 3)))


def threads_for(limit: int | None = None, window: float = 0.1) -> int:
    """The thread count for a stage now: the free usable cores, at most ``limit``."""
    n = free_cores(window)
    return max(1, min(n, limit) if limit else n)


def size_torch_threads(limit: int | None = None, window: float = 0.1) -> int:
    """Set torch's intra-op threads to :func:`threads_for` and return the count."""
    import torch

    n = threads_for(limit, window)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def machine_facts() -> dict:
    """The CPU model, the cores and the platform (recorded beside a shipped model's training)."""
    import platform

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": len(usable_cores()), "platform": platform.platform()}
