"""The keys every dataset shares (``data.*``), checked when the config is read
(:func:`vqa_interp.settings.data_settings`); a dataset's own keys are its ``Options`` class
(:mod:`vqa_interp.data.datasets`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vqa_interp.util.options import option


@dataclass(frozen=True)
class DataSettings:
    """Which questions, images and human maps (``data.*``). The keys every dataset shares are here;
    a dataset's own keys (the embedded generator's ``seed``, ``n_train_images``, ``n_val_images``)
    are its options class (``Dataset.Options``, read into ``options``)."""

    name: str = option("embedded", "the dataset (a registered name: embedded, vqahat, or a plugin's)")
    root: str | None = option(
        None, "the folder of the VQA 1.0 / COCO / VQA-HAT layout (embedded: null, generated)", kind=str
    )
    split: str = option("val", "the evaluated split")
    questions: str | None = option(None, "the questions json, when not under root", kind=str)
    annotations: str | None = option(None, "the annotations json, when not under root", kind=str)
    images: str | None = option(None, "the images folder, when not under root", kind=str)
    human_maps: str | None = option(
        None, "the human maps folder ({question_id}_{n}.png), when not under root", kind=str
    )
    limit: int | None = option(None, "evaluate only the first N questions that have human maps", kind=int, minimum=1)
    question_ids: tuple[int, ...] | None = option(None, "evaluate these question ids only (a list)", items=int)
    num_shards: int = option(1, "split the questions into this many shards (one run each)", minimum=1)
    shard: int = option(0, "which shard this run evaluates (0-based)", minimum=0)
    skip_missing_images: bool = option(False, "skip questions whose image file is missing (counted)")
    skip_bad_images: bool = option(False, "skip questions whose image is empty, truncated or undecodable (counted)")
    options: Any = field(default=None, hash=False)  # the dataset's own options (its Dataset.Options), or None
