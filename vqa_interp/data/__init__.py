"""Data: VQA 1.0 questions/annotations, COCO images and VQA-HAT human maps (the real formats), the
embedded benchmark written in those formats, and the dataset registry (``data.name``)."""

from vqa_interp.data.answers import normalize_answer, tokenize_question, vqa_accuracy
from vqa_interp.data.datasets import DATASETS, Dataset, dataset_for, human_maps_for, register_dataset
from vqa_interp.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputGeometry,
    image_size,
    load_display_image,
    load_human_maps,
    load_image,
)
from vqa_interp.data.selection import Selection, load_examples
from vqa_interp.data.vqa import (
    DataPaths,
    Example,
    QARecord,
    digest_examples,
    read_records,
    resolve_paths,
)

__all__ = [
    "normalize_answer",
    "tokenize_question",
    "vqa_accuracy",
    "DATASETS",
    "Dataset",
    "dataset_for",
    "human_maps_for",
    "register_dataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputGeometry",
    "image_size",
    "load_display_image",
    "load_human_maps",
    "load_image",
    "DataPaths",
    "Example",
    "QARecord",
    "Selection",
    "digest_examples",
    "load_examples",
    "read_records",
    "resolve_paths",
]
