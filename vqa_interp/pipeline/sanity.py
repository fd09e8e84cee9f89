"""Stage 7 (``analysis.sanity``), sanity checks: model-randomisation curves of the run's method on a
seeded sample of questions, with the human agreement of the randomised maps
(:mod:`vqa_interp.attribution.sanity`)."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from vqa_interp.attribution import METHODS
from vqa_interp.attribution.sanity import sanity_checks
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.vqa import Example
from vqa_interp.metrics import headline_metrics, prepare_map, resize_maps, score_against_annotators
from vqa_interp.metrics.humans import scoring_options
from vqa_interp.models.base import take
from vqa_interp.util.memory import batching_of

log = logging.getLogger(__name__)


def run_sanity_checks(
    model, settings, dataset: Dataset, examples: Sequence[Example], load_images, question: tuple
) -> pd.DataFrame | None:
    """Randomisation curves (rows ``mode, step, block, method, similarity, mean, std, n``) of the run's
    method on ``analysis.sanity_questions`` questions, with the two headline metrics against the
    questions' mean human maps. None for a model-free baseline method."""
    a = settings.attribution
    if METHODS[a.method].kind == "baseline":
        log.warning("analysis.sanity: %s is a model-free baseline; there is no model to randomise", a.method)
        return None
    rng = np.random.default_rng(settings.seed)
    rows = sorted(
        rng.choice(len(examples), size=min(settings.analysis.sanity_questions, len(examples)), replace=False).tolist()
    )
    options = scoring_options(settings)
    humans = [dataset.human_maps(examples[r], model.geometry, "mean", 1) for r in rows]
    prepared = [prepare_map(resize_maps(h, options.size, options.resample)[0], options) for h in humans]
    metrics = headline_metrics(2)

    def human_scores(maps: np.ndarray) -> dict[str, np.ndarray]:
        scored = [
            score_against_annotators(prepare_map(m, options), [h], options, metrics)
            for m, h in zip(resize_maps(maps, options.size, options.resample), prepared)
        ]
        return {metric: np.array([s[metric] for s in scored]) for metric in metrics}

    device = settings.device
    if device != "cpu":
        model.to("cpu")  # deep copies per step stay on the CPU; the sample is small
    try:
        batch, overrides = batching_of(settings).attribute(a.method, a.options, a.batch_size)
        return sanity_checks(
            model,
            a.method,
            {**a.options, **overrides},
            load_images(rows),
            take(question, rows),
            human_scores=human_scores,
            batch_size=batch,
            seed=settings.seed,
        )
    finally:
        model.to(device)
