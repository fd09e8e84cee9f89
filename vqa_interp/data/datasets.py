"""The dataset registry: ``data.name`` -> a :class:`Dataset` class (one class per dataset, in the
spirit of torchvision's datasets). A dataset gives the evaluated examples, the human maps of an
example, and a training split, all through the same readers of the real on-disk formats.

To add a dataset: subclass :class:`Dataset`, decorate it with :func:`register_dataset`, and add
``conf/data/<name>.yaml``: its keys are the shared :class:`vqa_interp.data.options.DataSettings` and, for
keys of its own, the dataset's ``Options`` class (a frozen dataclass of
:func:`~vqa_interp.util.options.option` fields, read into ``settings.options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vqa_interp.data.images import InputGeometry, image_size, load_human_maps
from vqa_interp.data.selection import Selection, load_examples
from vqa_interp.data.vqa import DataPaths, Example, QARecord, read_records, resolve_paths
from vqa_interp.util.options import option

DATASETS: dict[str, type["Dataset"]] = {}


def register_dataset(cls: type["Dataset"]) -> type["Dataset"]:
    DATASETS[cls.name] = cls
    return cls


class Dataset:
    """A VQA dataset with human attention maps, read from files in the VQA 1.0 / COCO / VQA-HAT layout.

    ``settings`` is a :class:`vqa_interp.data.options.DataSettings`; ``home`` the tool's data folder.
    """

    name: ClassVar[str] = ""
    has_training_split: ClassVar[bool] = False  # a train split a model can be trained on (training_records)
    Options: ClassVar[type | None] = None  # the dataset's own keys of data.* (None: the shared keys only)

    def __init__(self, settings, home: str | Path = ".vqa-interp"):
        self.settings = settings
        self.home = Path(home)

    # -- where the files are
    def root(self) -> Path | None:
        """The folder of the standard layout (``data.root``), or None when every path is given alone."""
        return Path(self.settings.root) if self.settings.root else None

    def paths(self, split: str | None = None) -> DataPaths:
        s = self.settings
        split = split or s.split
        if split == s.split:
            return resolve_paths(
                self.root(),
                split=split,
                questions=s.questions,
                annotations=s.annotations,
                images=s.images,
                human_maps=s.human_maps,
            )
        return resolve_paths(self.root(), split=split, require_human_maps=False)

    # -- what is evaluated
    def examples(self) -> Selection:
        """The selected questions that have human maps (``data.limit``, ``question_ids``, shards)."""
        s = self.settings
        return load_examples(
            self.paths(),
            limit=s.limit,
            question_ids=s.question_ids,
            num_shards=s.num_shards,
            shard=s.shard,
            skip_missing_images=s.skip_missing_images,
            skip_bad_images=s.skip_bad_images,
        )

    def human_maps(
        self, example: Example, geometry: InputGeometry, mode: str = "mean", annotator: int = 1
    ) -> np.ndarray | None:
        """The human map(s) an attribution is scored against: ``[n, S, S]`` float32 in [0, 1].

        ``mean``: the mean of the annotators' maps (n = 1); ``annotator``: annotator ``n`` only
        (None when the question has no such annotator); ``each``: every annotator.
        """
        return human_maps_for(example, geometry, mode, annotator)

    def exact_mask(self, example: Example, geometry: InputGeometry) -> np.ndarray | None:
        """The exact evidence mask ``[S, S]`` where the dataset knows it (None otherwise)."""
        return None

    def question_evidence(self) -> dict[int, tuple[int, ...]] | None:
        """Which question words decide each answer, where the dataset knows it:
        ``question_id -> token positions`` (0-based, pytorch-vqa tokenisation), read from
        ``question_evidence_{split}2014.json`` beside the questions (``{"evidence": {"<qid>": [..]}}``);
        None when there is no such file (real VQA-HAT has none)."""
        root = self.root()
        path = root / f"question_evidence_{self.settings.split}2014.json" if root is not None else None
        if path is None or not path.exists():
            return None
        return read_question_evidence(path)

    # -- what the embedded model is trained on
    def training_records(self, split: str = "train") -> tuple[DataPaths, list[QARecord]]:
        """Every question of a training split (no human maps needed), through the same reader."""
        paths = self.paths(split)
        return paths, read_records(paths)

    def signature(self) -> dict:
        """What a model trained on this dataset depends on."""
        return {"name": self.name, "root": str(self.root())}


def read_question_evidence(path: Path) -> dict[int, tuple[int, ...]]:
    """``question_id -> token positions`` from a question-evidence file; a malformed file is named."""
    import json

    from vqa_interp.errors import DataError

    try:
        evidence = json.loads(Path(path).read_text())["evidence"]
        return {int(qid): tuple(int(p) for p in positions) for qid, positions in evidence.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{path}: not a question-evidence file ({type(exc).__name__}: {exc}); expected "
            '{"evidence": {"<question_id>": [token positions, ...]}}. Fix or remove the file.'
        ) from None


def human_maps_for(
    example: Example, geometry: InputGeometry, mode: str = "mean", annotator: int = 1
) -> np.ndarray | None:
    """See :meth:`Dataset.human_maps` (a function, for callers without a dataset object)."""
    paths = example.human_map_paths
    if mode == "annotator":
        chosen = [p for p in paths if p.stem.endswith(f"_{annotator}")]
        if not chosen:
            return None
        paths = chosen
    maps = load_human_maps(paths, image_size(example.image_path), geometry)
    return maps.mean(axis=0, keepdims=True) if mode == "mean" else maps


@register_dataset
class VqaHat(Dataset):
    """VQA 1.0 val + COCO val2014 + VQA-HAT val maps (Das et al. 2016), from ``data.root``."""

    name = "vqahat"


@dataclass(frozen=True)
class EmbeddedOptions:
    """The embedded generator's keys of ``data.*``."""

    seed: int = option(0, "the generator's seed (the shipped models were trained on seed 0)", minimum=0)
    n_train_images: int = option(3000, "training images (x 5 questions)", minimum=0)
    n_val_images: int = option(100, "evaluated images (x 3 questions = 300 questions, the paper's scale)", minimum=1)


@register_dataset
class Embedded(Dataset):
    """The embedded benchmark: generated on first use under ``<home>/data`` in the real formats,
    with the exact evidence masks (``exact_masks_val/{question_id}.png``)."""

    name = "embedded"
    has_training_split = True
    Options = EmbeddedOptions

    @property
    def options(self) -> EmbeddedOptions:
        return self.settings.options or EmbeddedOptions()

    def root(self) -> Path:
        if self.settings.root:
            return Path(self.settings.root)
        from vqa_interp.data.embedded import GENERATOR_VERSION, generate_embedded
        from vqa_interp.util.signature import short_signature

        s = self.options
        signature = short_signature(
            {
                "generator": GENERATOR_VERSION,
                "seed": s.seed,
                "n_train_images": s.n_train_images,
                "n_val_images": s.n_val_images,
            }
        )
        return generate_embedded(
            self.home / "data" / f"embedded-{signature}",
            seed=s.seed,
            n_train_images=s.n_train_images,
            n_val_images=s.n_val_images,
        )

    def exact_mask(self, example: Example, geometry: InputGeometry) -> np.ndarray | None:
        path = example.human_map_paths[0].parent.parent / "exact_masks_val" / f"{example.question_id}.png"
        if not path.exists():
            return None
        return load_human_maps([path], image_size(example.image_path), geometry)[0]

    def signature(self) -> dict:
        from vqa_interp.data.embedded import GENERATOR_VERSION

        s = self.options
        return {
            "seed": s.seed,
            "n_train_images": s.n_train_images,
            "n_val_images": s.n_val_images,
            "generator": GENERATOR_VERSION,
        }


def dataset_for(settings, home: str | Path = ".vqa-interp") -> Dataset:
    """The dataset named by ``settings.name`` (a :class:`vqa_interp.data.options.DataSettings`)."""
    if settings.name not in DATASETS:
        from vqa_interp.errors import ConfigError

        raise ConfigError(f"data.name={settings.name!r} is not allowed; expected one of {sorted(DATASETS)}.")
    return DATASETS[settings.name](settings, home)
