"""The embedded CNN+LSTM and a slice of the embedded train split, for :mod:`benchmarks.busy`."""

from __future__ import annotations

import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def model_and_data(n_images: int = 640):
    """``(untrained model, split, question encoding, answer targets)`` of the first ``n_images``
    embedded train images."""
    from hydra import compose, initialize_config_dir

    from vqa_interp.data import dataset_for
    from vqa_interp.data.images import InputGeometry
    from vqa_interp.models.registry import model_kind
    from vqa_interp.models.training import answer_targets, read_training_split
    from vqa_interp.settings import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        settings = from_config(compose("config"))
    dataset = dataset_for(settings.data, settings.home)
    paths, records = dataset.training_records("train")
    keep = sorted({r.image_id for r in records})[:n_images]
    records = [r for r in records if r.image_id in set(keep)]
    m = settings.model
    split = read_training_split(paths, records, InputGeometry(m.input_size, m.central_fraction))
    model = model_kind(m.kind).untrained(m, split.questions, split.answers)
    return model, split, model.encode(split.questions), answer_targets(split.answers, model.answer_vocab)


def batches(split, steps: int, batch_size: int = 32):
    """``steps`` batches ``(image rows [I], question indices [Q], image_of [Q])``, cycling over the split."""
    from vqa_interp.models.training import training_batches

    generator = torch.Generator().manual_seed(0)
    rows = torch.tensor(split.image_index)
    out = []
    while len(out) < steps:
        for images, idx in training_batches(split, batch_size, True, generator):
            position = {int(r): i for i, r in enumerate(images)}
            out.append((images, idx, torch.tensor([position[int(r)] for r in rows[idx]])))
            if len(out) == steps:
                break
    return out
