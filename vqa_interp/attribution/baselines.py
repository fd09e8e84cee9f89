"""Model-free reference maps: the floor every attribution map is read against.

Each is a registered method (``kind="baseline"``), so it also runs alone (``method=random``), and
every run scores all of them on its own questions and human maps (``tables/baselines.csv``).
A baseline map is ``[S, S]`` at the model's input size ``S``, like an attribution map, and goes
through the same scorer.

- ``random``: i.i.d. uniform noise, seeded by (``seed``, question id): chance agreement (a constant
  map would be undefined). Expected IoU of two independent top-k regions: k / (2 - k).
- ``centre``: an isotropic Gaussian at the centre of the model input, sigma = ``sigma`` x side
  (default 0.25): the centre-bias baseline of saliency benchmarks (Judd et al. 2009).
- ``image``: gradient magnitude (Sobel) of the Gaussian-blurred grey image (``blur`` pixels):
  "the method only finds edges", told apart from "the method finds what the question is about".
- ``oracle``: the exact evidence mask of the question, where the dataset knows it (the embedded
  benchmark's ``exact_masks_val``); None elsewhere, and undefined (constant) when no object decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from vqa_interp.attribution.registry import Method, register


@dataclass
class BaselineContext:
    """What a baseline may look at for one question: the example, its display image
    ``[S, S, 3]`` uint8 (the model's view), the dataset and the input geometry; ``seed`` the run's."""

    example: Any
    image: np.ndarray
    dataset: Any
    geometry: Any
    seed: int = 0

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def random_map_for(question_id: int, side: int, seed: int) -> np.ndarray:
    """The random floor's map of a question ``[side, side]``: uniform, seeded by (seed, question id);
    the explain stage's random maps are the same ones."""
    return np.random.default_rng([int(seed), int(question_id)]).random((side, side))


def random_map(context: BaselineContext, options: dict) -> np.ndarray:
    return random_map_for(context.example.question_id, context.size, context.seed)


def centre_map(context: BaselineContext, options: dict) -> np.ndarray:
    size = context.size
    sigma = float(options["sigma"]) * size
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * sigma**2))


def image_map(context: BaselineContext, options: dict) -> np.ndarray:
    grey = context.image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    blurred = ndimage.gaussian_filter(grey, float(options["blur"]))
    return np.hypot(ndimage.sobel(blurred, axis=0), ndimage.sobel(blurred, axis=1))


def oracle_map(context: BaselineContext, options: dict) -> np.ndarray | None:
    if context.dataset is None:
        return None
    return context.dataset.exact_mask(context.example, context.geometry)


BASELINES = {"random": random_map, "centre": centre_map, "image": image_map, "oracle": oracle_map}
HUMAN_CEILING = "human_ceiling"
REFERENCES = (*BASELINES, HUMAN_CEILING)  # every floor, then the ceiling (leave-one-annotator-out)
_OPTIONS = {"random": {}, "centre": {"sigma": 0.25}, "image": {"blur": 1.0}, "oracle": {}}
_DESCRIPTIONS = {
    "random": "i.i.d. uniform noise (chance)",
    "centre": "centre Gaussian (centre bias)",
    "image": "edges of the blurred image (model-free saliency)",
    "oracle": "the exact evidence mask (embedded benchmark only)",
}

for _name, _fn in BASELINES.items():
    register(
        Method(
            _name,
            None,
            _OPTIONS[_name],
            _DESCRIPTIONS[_name],
            kind="baseline",
            baseline=_fn,
            ranges={"sigma": (1e-6, float("inf")), "blur": (0.0, float("inf"))},
        )
    )


def baseline_map(name: str, context: BaselineContext, options: dict | None = None) -> np.ndarray | None:
    """The map ``[S, S]`` of baseline ``name`` for one question (None where it does not exist)."""
    options = {**_OPTIONS[name], **(options or {})}
    result = BASELINES[name](context, options)
    return None if result is None else np.asarray(result, np.float32)
