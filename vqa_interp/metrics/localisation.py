"""Localisation of the attribution in the human region (Quantus' localisation family; CLEVR-XAI).

``H`` is the human top-k region (weights, fractional at ties); ``a`` the attribution map min-max
scaled to [0, 1].

- ``pointing_game``: 1 if the attribution's maximum lies in ``H`` (Zhang et al. 2018); when several
  pixels share the maximum, the mean of their ``H`` weights (the chance that a uniformly chosen
  maximum is inside). Quantus' ``PointingGame`` returns a bool and counts an empty mask as a hit;
  here an empty region cannot occur (k > 0 is refused below one pixel) and the score is a number.
- ``mass_accuracy``: relevance mass accuracy, sum of ``a`` inside ``H`` / sum of ``a`` (Arras et al.
  2022, CLEVR-XAI), ``H`` weighted. Quantus binarises a mask with ``astype(bool)`` (every non-zero
  pixel): a soft human map must be thresholded first, which the top-k region does.
"""

from __future__ import annotations

from vqa_interp.metrics.registry import batched, metric


def _pointing_reference(a, h, options):
    from vqa_interp.metrics.overlap import reference_region

    region = reference_region(h, options.n_region, options.tie_policy)
    flat = a.ravel()
    return float(region[flat == flat.max()].mean())


@metric("pointing_game", needs=("values", "region"), range=(0.0, 1.0), reference=_pointing_reference, in_family=False)
def pointing_game(a, h) -> float:
    """1 if the attribution maximum lies in the human top-k region (the share inside when the maximum is tied)."""
    return float(h.region[a.max_index].mean())


def _mass_reference(a, h, options):
    from vqa_interp.metrics.overlap import reference_region

    region = reference_region(h, options.n_region, options.tie_policy)
    scaled = (a - a.min()) / (a.max() - a.min())
    return float((scaled.ravel() * region).sum() / scaled.sum())


@metric("mass_accuracy", needs=("minmax", "region"), range=(0.0, 1.0), reference=_mass_reference, in_family=False)
def mass_accuracy(a, h) -> float:
    """Relevance mass accuracy: the share of the attribution's mass inside the human top-k region."""
    return h.over_region(a.minmax) / a.minmax_sum


# ------------------------------------------------------------------ batched (torch; see metrics/batch.py)
@batched("pointing_game")
def _pointing_batched(a, h):
    return (h.region * a.at_max).sum(1) / a.at_max.sum(1)


@batched("mass_accuracy")
def _mass_batched(a, h):
    return (a.minmax * h.region).sum(1) / a.minmax_sum
