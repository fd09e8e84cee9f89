"""The analysis' options (``confidence.*``, ``analysis.*``), checked when the config is read
(:func:`vqa_interp.settings.from_config`)."""

from __future__ import annotations

from dataclasses import dataclass

from vqa_interp.util.options import option

MAP_FOR_EXAMPLE = ("prediction", "label")
ANALYSIS_TESTS = ("cluster_bootstrap", "student", "welch", "mannwhitney")


@dataclass(frozen=True)
class AnalysisSettings:
    """The correct/wrong x confidence analysis (``confidence.*``, ``analysis.*``)."""

    low: float = 0.25
    high: float = 0.75
    map_for_example: str = option(
        "prediction",
        "which map stands for an example in the correct/wrong x confidence analysis",
        choices=MAP_FOR_EXAMPLE,
    )
    test: str = option("cluster_bootstrap", "the primary test of correct vs wrong", choices=ANALYSIS_TESTS)
    alpha: float = option(0.05, "the significance level", above=0, below=1)
    bootstrap: int = option(2000, "bootstrap resamples for the 95% CIs", minimum=1)
    n_panels: int = option(4, "questions in the side-by-side panels", minimum=0)
    min_group: int = option(10, "fewer questions than this in a group or pair: underpowered, never tested", minimum=2)
    min_images: int = option(5, "fewer images than this in a group or pair: underpowered, never tested", minimum=2)
    panel_ids: tuple[int, ...] | None = option(None, "question ids for the panels (null: picked)", items=int)
    seed: int = 0
    baselines: bool = option(True, "score the floors (random, centre, image, oracle) and the human ceiling")
    baseline_options: dict = option(
        {},
        "each floor's options, its method's keys (conf/method/<floor>.yaml); a floor "
        "left out keeps its method's defaults",
    )
    sanity: bool = option(False, "model-randomisation sanity checks (+experiment=sanity)")
    sanity_questions: int = option(50, "questions the sanity checks use", minimum=2)
