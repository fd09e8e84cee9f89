"""The embedded models shipped with the package: one trained model per trainable embedded config.

``vqa_interp/shipped/`` holds each model in the format its kind loads (the CNN+LSTM's pytorch-vqa
checkpoint, the ViLT's ``save_pretrained`` folder) and ``manifest.json``, one entry per model:

- ``name`` (the config, ``model=<name>``), ``kind``, ``path`` (relative to the folder);
- ``signature``: the training signature the model was trained from (the short hash that also names a
  model trained on first use, :func:`vqa_interp.models.train_embedded.embedded_checkpoint_path`), and
  ``signature_fields``, what that hash covers;
- ``digest``: sha256 of the file, or of the folder's files (:func:`content_digest`), checked before
  every use, so a damaged or edited copy is refused rather than silently evaluated;
- ``retrain``: the command that trains it again (``python -m vqa_interp.train model=<name> +ship=true``,
  with the thread count it was trained on: the same bits on one machine);
- ``facts``: what training measured (validation accuracy, the question prior, seconds, threads,
  torch version, machine).

A run whose training signature equals a shipped model's evaluates that model (every machine then runs
the same weights; the run's ``model_source`` and ``shipped_digest`` tags say so); any other training
config trains on first use, as before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vqa_interp.errors import CheckpointError
from vqa_interp.util.locking import write_atomic

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    kind: str
    path: Path
    signature: str
    digest: str
    retrain: str
    signature_fields: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    @property
    def short_digest(self) -> str:
        return self.digest[:12]


def content_digest(path: str | Path) -> str:
    """sha256 of a file; for a folder, sha256 over its files' relative names and sha256s (sorted)."""
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    h = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{item.relative_to(path).as_posix()}\0{_file_sha256(item)}\n".encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_models(folder: Path = SHIPPED_DIR) -> list[ShippedModel]:
    """The manifest's entries ([] when there is none)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    entries = json.loads(manifest.read_text())["models"]
    return [
        ShippedModel(
            e["name"],
            e["kind"],
            folder / e["path"],
            e["signature"],
            e["digest"],
            e["retrain"],
            e.get("signature_fields", {}),
            e.get("facts", {}),
        )
        for e in entries
    ]


def shipped_for(signature: str, folder: Path = SHIPPED_DIR) -> ShippedModel | None:
    """The shipped model trained from ``signature``, checked against its digest (None if none is)."""
    model = next((m for m in shipped_models(folder) if m.signature == signature), None)
    if model is not None:
        verify(model)
    return model


def verify(model: ShippedModel) -> None:
    """Raise :class:`CheckpointError` unless the shipped files are there with the manifest's digest."""
    if not model.path.exists():
        raise CheckpointError(
            f"the shipped model {model.name} is missing at {model.path} (a damaged install?); "
            f"reinstall the package, or retrain it: {model.retrain}"
        )
    digest = content_digest(model.path)
    if digest != model.digest:
        raise CheckpointError(
            f"the shipped model {model.name} at {model.path} has sha256 {digest[:12]}, not "
            f"{model.short_digest} as its manifest says (changed or damaged); reinstall the package, "
            f"or retrain it: {model.retrain}"
        )


def ship(
    source: Path,
    *,
    name: str,
    kind: str,
    signature: str,
    signature_fields: dict,
    retrain: str,
    facts: dict,
    folder: Path = SHIPPED_DIR,
) -> ShippedModel:
    """Copy a trained model (file or folder) into ``folder`` and record it in the manifest, replacing
    an entry of the same ``name``; returns the new entry."""
    source = Path(source)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{signature}{source.suffix if source.is_file() else ''}"
    old = [m for m in shipped_models(folder) if m.name == name]
    for m in old:
        if m.path.is_dir():
            shutil.rmtree(m.path)
        elif m.path.exists():
            m.path.unlink()
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
    else:
        shutil.copyfile(source, target)
    entry = ShippedModel(name, kind, target, signature, content_digest(target), retrain, signature_fields, facts)
    entries = [m for m in shipped_models(folder) if m.name != name] + [entry]
    payload = {
        "models": [
            {
                "name": m.name,
                "kind": m.kind,
                "path": m.path.relative_to(folder).as_posix(),
                "signature": m.signature,
                "digest": m.digest,
                "retrain": m.retrain,
                "signature_fields": m.signature_fields,
                "facts": m.facts,
            }
            for m in sorted(entries, key=lambda m: m.name)
        ]
    }
    write_atomic(folder / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1, default=str) + "\n"))
    return entry
