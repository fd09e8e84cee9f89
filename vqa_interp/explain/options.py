"""The explain stage's options (``explain.*``), checked when the config is read
(:func:`vqa_interp.settings.from_config`)."""

from __future__ import annotations

from dataclasses import dataclass

from vqa_interp.util.options import option

SUBSTRATES = ("blur", "mean")


@dataclass(frozen=True)
class ExplainSettings:
    """What the model used, beside where it looked (``explain.*``): the question's words, the image's
    share of the attribution, and the faithfulness of each map (deletion/insertion)."""

    tokens: bool = option(True, "token attributions: Layer IG on the word embedding, baseline the padding")
    share: bool = option(True, "the image's vs the question's share of one joint IG pass")
    faithfulness: bool = option(True, "RISE deletion/insertion curves of the method's maps and of random maps")
    ig_steps: int = option(32, "IG steps of the token and share passes", minimum=2)
    steps: int = option(10, "deletion/insertion: fractions of pixels removed 0, 1/steps, ..., 1", minimum=1)
    substrate: str = option(
        "blur",
        "what a removed pixel becomes: blur (the blurred image, as RISE) | mean (the image's mean colour)",
        choices=SUBSTRATES,
    )
    blur_sigma: float = option(0.25, "Gaussian sigma as a fraction of the side (substrate=blur)", above=0, maximum=1)
    batch_size: int = option(
        64, "targets per chunk; images per forward of the curves (at most: memory.budget)", minimum=1
    )
    ig_batch_size: int = option(128, "scaled inputs per IG pass, at most (memory.budget sizes it)", minimum=1)
    n_token_panels: int = option(6, "questions in the token figure", minimum=0)
