"""Memory of this process and of the machine: sizes as users write them, what is available, the
peak resident set (Linux ``/proc``; ``getrusage`` elsewhere) and the peak GPU memory."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2
UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": MIB,
    "mb": 1000**2,
    "mib": MIB,
    "g": GIB,
    "gb": 1000**3,
    "gib": GIB,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(value) -> int | None:
    """``4GB``, ``512MiB``, ``2.5G``, ``1e9`` or an integer -> bytes; None when it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(value).lower())
    if not match or match.group(2) not in UNITS:
        return None
    size = int(float(match.group(1)) * UNITS[match.group(2)])
    return size if size > 0 else None


def budget_problem(value) -> str:
    """ "" when ``memory.budget`` is ``auto`` or a size, else the one-line error."""
    if str(value).strip().lower() == "auto" or parse_size(value) is not None:
        return ""
    return (
        f"memory.budget={value!r}: expected auto (a safe share of the memory available when the run starts) or a "
        f"positive size such as 4GB, 512MB or 2.5GiB."
    )


def _proc_kib(path: str, key: str) -> int | None:
    """Bytes of the ``key:`` line of a ``/proc`` file in kB (``MemAvailable``, ``VmHWM``), or None."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo(key: str) -> int | None:
    return _proc_kib("/proc/meminfo", key)


def _cgroup_room() -> int | None:
    """What the process's cgroup (v2) still allows, when it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_memory(device: str = "cpu") -> int:
    """Bytes a new allocation can take now: the free memory of a CUDA device, or on the CPU the
    kernel's ``MemAvailable`` (and the cgroup's room, when it is smaller)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    candidates = [x for x in (_meminfo("MemAvailable"), _cgroup_room()) if x is not None]
    if candidates:
        return min(candidates)
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _status(key: str) -> int | None:
    return _proc_kib("/proc/self/status", key)


def current_rss() -> int:
    """The resident set of this process now, in bytes."""
    value = _status("VmRSS")
    return value if value is not None else peak_rss()


def peak_rss() -> int:
    """The peak resident set of this process (since it started or since :func:`reset_peak_rss`)."""
    value = _status("VmHWM")
    if value is not None:
        return value
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux kilobytes
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


def reset_peak_rss() -> bool:
    """Start the peak over from the current resident set (Linux: ``5`` to ``/proc/self/clear_refs``);
    False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_gpu(device: str) -> int | None:
    """Peak bytes allocated by torch on a CUDA ``device`` (None on the CPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(torch.device(device)))


@dataclass(frozen=True)
class Batching:
    """The run's batch sizes, from ``budget`` bytes and the measured per-sample ``forward`` and
    ``backward`` bytes; :meth:`fit` is the one rule."""

    budget: int
    forward: int
    backward: int
    source: str = ""

    def fit(self, per_sample: int, at_most: int) -> int:
        """The most samples of ``per_sample`` bytes that fit the budget, between 1 and ``at_most``."""
        return int(max(1, min(at_most, self.budget // max(1, per_sample))))

    def predict(self, configured: int) -> int:
        return self.fit(self.forward, configured)

    def attribute(self, method: str, options: dict, configured: int) -> tuple[int, dict]:
        """Examples per attribution call and the method's own batching options (the configured
        values are upper bounds; the map cache signature keeps the configured ones)."""
        if method == "occlusion":
            batch = self.fit(self.forward, configured)
            return batch, {"perturbations_per_eval": self.fit(self.forward * batch, options["perturbations_per_eval"])}
        batch = self.fit(self.backward, configured)
        if method == "ig":
            return batch, {"internal_batch_size": self.fit(self.backward, options["internal_batch_size"])}
        if method == "smoothgrad":
            return batch, {"nt_samples_batch_size": self.fit(self.backward * batch, options["nt_samples"])}
        return batch, {}

    def tags(self) -> dict[str, str]:
        """The budget and the measured per-sample costs, as run tags (the metrics stay few)."""
        return {
            "memory_budget": f"{self.budget / GIB:.2f} GiB ({self.source})",
            "memory_per_sample": f"forward {self.forward / MIB:.0f} MiB, with input gradient "
            f"{self.backward / MIB:.0f} MiB",
        }


UNBOUNDED = Batching(budget=2**62, forward=1, backward=1, source="no budget (a stage called on its own)")


def batching_of(settings) -> Batching:
    """The run's :class:`Batching` (set by :func:`vqa_interp.pipeline.execute`), or the configured
    sizes unchanged for a stage called on its own."""
    return getattr(settings, "batching", None) or UNBOUNDED


def peak_metrics(device: str = "cpu") -> dict[str, float]:
    """``memory/peak_rss_gb`` (this process) and, on CUDA, ``memory/peak_gpu_gb``."""
    out = {"memory/peak_rss_gb": peak_rss() / GIB}
    gpu = peak_gpu(device)
    if gpu is not None:
        out["memory/peak_gpu_gb"] = gpu / GIB
    return out


def peak_text(device: str = "cpu") -> str:
    """``peak memory 1.23 GB`` (and the GPU's), for the terminal summary."""
    metrics = peak_metrics(device)
    text = f"peak memory {metrics['memory/peak_rss_gb']:.2f} GB"
    return text + (f" (GPU {metrics['memory/peak_gpu_gb']:.2f} GB)" if "memory/peak_gpu_gb" in metrics else "")


def halving_on_oom(call, items: list, what: str):
    """``call(items)``, and on a CUDA out-of-memory error the two halves of ``items`` one after the
    other (once, saying so); the results are concatenated as lists."""
    import torch

    try:
        return call(items)
    except torch.OutOfMemoryError:
        if len(items) < 2:
            raise
        torch.cuda.empty_cache()
        half = len(items) // 2
        log.warning(
            "%s: CUDA out of memory with %d items; retrying once as %d + %d (lower memory.budget to avoid this)",
            what,
            len(items),
            half,
            len(items) - half,
        )
        return call(items[:half]) + call(items[half:])
