"""Checkpoints in the pytorch-vqa format: reading them safely, writing them, file digests.

A checkpoint is ``torch.save`` of a dict with ``name``, ``tracker``, ``config``, ``weights``
(state_dict of ``nn.DataParallel(Net)``: every key starts with ``module.``), ``eval`` and
``vocab = {"question": {token: index from 1}, "answer": {answer: index}}``. The embedded model
also stores its trained backbone under ``module.backbone.*``; the released pytorch-vqa
checkpoint has no backbone weights, which then come from ``model.backbone_weights``.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from vqa_interp.errors import CheckpointError
from vqa_interp.util.locking import write_atomic

BACKBONE_PREFIX = "backbone."


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    weights: dict[str, torch.Tensor],
    *,
    question_vocab: dict[str, int],
    answer_vocab: dict[str, int],
    config: dict,
    tracker: dict | None = None,
    name: str = "vqa-interp",
    eval_results: dict | None = None,
) -> None:
    """Write a checkpoint in the pytorch-vqa layout (atomically); ``weights`` already carry their
    ``module.`` prefix."""
    payload = {
        "name": name,
        "tracker": tracker or {},
        "config": config,
        "weights": weights,
        "eval": eval_results or {},
        "vocab": {"question": question_vocab, "answer": answer_vocab},
    }
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


CHECKPOINT_SOURCE = (
    "a pytorch-vqa checkpoint (e.g. 2017-08-04_00.55.19.pth from the v1.0 release of "
    "https://github.com/Cyanogenoid/pytorch-vqa)"
)
BACKBONE_SOURCES = {
    "caffe": (
        "the Caffe ResNet-152 converted by Cyanogenoid/pytorch-resnet (resnet152-95e0e999.pth, release "
        "'hosting' of https://github.com/Cyanogenoid/pytorch-resnet), the network pytorch-vqa's features "
        "came from; it may also sit in $TORCH_HOME/hub/checkpoints/"
    ),
    "torchvision": (
        "torchvision's ResNet-152 ImageNet weights (resnet152-394f9c45.pth, published at "
        "https://download.pytorch.org/models/resnet152-394f9c45.pth; it may also sit in "
        "$TORCH_HOME/hub/checkpoints/)"
    ),
}
BACKBONE_FILES = {"caffe": "resnet{depth}-95e0e999.pth", "torchvision": "resnet{depth}-394f9c45.pth"}
BACKBONE_SOURCE = BACKBONE_SOURCES["caffe"]


def _looks_like_torch_file(path: Path) -> bool:
    """A torch file is a zip archive (torch >= 1.6) or a pickle (older: protocol byte 0x80)."""
    import zipfile

    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def damaged_zip_member(path: Path) -> str | None:
    """The first member of a torch zip archive whose CRC does not match its bytes (None: all match,
    or not a zip). ``torch.load`` does not check them, so a flipped byte inside a tensor would load."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"(the archive: {exc})"


_KEPT: dict[tuple, object] = {}  # a file read by the check before a run opens, until the run's load takes it


def _safe_load(path: str | Path, key: str, expected: str, keep: bool = False):
    """``torch.load(weights_only=True)`` with errors that name ``key``, the file and what belongs there;
    a zip archive's CRCs are checked first. ``keep``: hold the payload (by path, size and time) for
    the next read of the same file, which takes it: the check before a run opens and the run's own
    load read the file once, and nothing stays in memory after."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: {path} does not exist. Expected {expected}. Place it there or set {key}=FILE.")
    stat = path.stat()
    identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if identity in _KEPT:
        return _KEPT.pop(identity)
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{key}: {path} is not a torch checkpoint (neither a torch zip archive nor a "
            f"pickle; truncated or another kind of file?). Expected {expected}."
        )
    bad = damaged_zip_member(path)
    if bad is not None:
        raise CheckpointError(
            f"{key}: {path} is damaged: {bad} fails its CRC check (the file changed after it "
            f"was written). Expected {expected}."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        _KEPT.clear()
        if keep:
            _KEPT[identity] = payload
        return payload
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower() and "weights_only" not in str(exc).lower():
            raise CheckpointError(
                f"{key}: {path} is damaged: it cannot be unpickled ({str(exc)[:200]}). Expected {expected}."
            ) from exc
        raise CheckpointError(
            f"{key}: {path} holds objects other than tensors, dicts and lists; loading them would run code "
            f"from the file, which this tool refuses. Save the weights as plain tensors/dicts/lists where the "
            f"file was made, or use the checkpoint of its official release: {expected}."
        ) from exc
    except Exception as exc:  # corrupt zip, not a torch file ...
        raise CheckpointError(f"{key}: {path} is not a readable torch file ({exc}). Expected {expected}.") from exc


def read_checkpoint(path: str | Path, keep: bool = False) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for missing/unsafe files
    (``keep``: see :func:`_safe_load`)."""
    payload = _safe_load(path, "model.checkpoint", CHECKPOINT_SOURCE, keep)
    missing = [k for k in ("weights", "vocab") if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(
            f"model.checkpoint: {path} lacks {missing}; expected a pytorch-vqa checkpoint "
            "dict with 'weights' (DataParallel state_dict) and 'vocab'."
        )
    return payload


def strip_module(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in weights.items()}


def load_backbone_weights(path: str | Path, variant: str = "caffe") -> dict[str, torch.Tensor]:
    """A ResNet state_dict file (``resnet152-95e0e999.pth`` Caffe, ``resnet152-394f9c45.pth``
    torchvision), read safely."""
    state = _safe_load(path, "model.backbone_weights", BACKBONE_SOURCES.get(variant, BACKBONE_SOURCE))
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return strip_module(state)


DIGEST_SUFFIX = ".sha256"


def record_digest(path: str | Path) -> str:
    """Write ``<path>.sha256``: the content digest of a checkpoint file or model folder made here
    (:func:`vqa_interp.models.shipped.content_digest`), checked before every later use."""
    from vqa_interp.models.shipped import content_digest

    path = Path(path)
    digest = content_digest(path)
    write_atomic(path.with_name(path.name + DIGEST_SUFFIX), lambda tmp: Path(tmp).write_text(digest + "\n"))
    return digest


def verify_digest(path: str | Path, what: str) -> None:
    """Raise :class:`CheckpointError` (saying to delete ``path`` so that it is made again) when a
    checkpoint or model folder made here no longer matches the digest recorded with it; one made
    before digests were recorded gets its digest now."""
    from vqa_interp.models.shipped import content_digest

    path = Path(path)
    recorded = path.with_name(path.name + DIGEST_SUFFIX)
    if not recorded.exists():
        record_digest(path)
        return
    expected = recorded.read_text().strip()
    if content_digest(path) != expected:
        raise CheckpointError(
            f"{what} {path} does not match the digest recorded when it was made (sha256 "
            f"{expected[:12]}, in {recorded.name}): it changed on disk. Delete {path} (and "
            f"{recorded.name}) to train it again."
        )
