"""``device=cpu|cuda[:N]`` checked before any work, in one line naming the fix."""

from __future__ import annotations

from vqa_interp.errors import ConfigError


def check_device(device: str) -> None:
    """``device=cuda[:N]`` needs a visible GPU with that index."""
    if not device.startswith("cuda"):
        return
    index = device.partition(":")[2]
    if index and not index.isdigit():
        raise ConfigError(f"device={device!r}: expected cpu, cuda or cuda:N with N a GPU index (e.g. cuda:0).")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is visible to torch here; use device=cpu (the default).")
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device}: torch sees {torch.cuda.device_count()} GPU(s); choose cuda:0.."
            f"{torch.cuda.device_count() - 1}."
        )
