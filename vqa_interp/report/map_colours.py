"""How a map is coloured on the pages (the explorer): one colormap for human and method maps alike,
a diverging one for signed attribution maps, as CSS colour bars too."""

from __future__ import annotations

import functools

import numpy as np

SEQUENTIAL, DIVERGING = "inferno", "RdBu_r"
MAX_OPACITY = 0.85  # the image stays visible under a map's peak


def is_signed(values: np.ndarray) -> bool:
    """Whether a map carries a sign worth showing: its negative part reaches 5% of its magnitude
    (IG or GradientShap without ``method.abs``; not a rectified map's rounding noise)."""
    values = np.asarray(values, np.float64)
    magnitude = np.abs(values).max() if values.size else 0.0
    return bool(magnitude > 0 and -values.min() > 0.05 * magnitude)


@functools.cache
def colour_table(name: str) -> np.ndarray:
    """matplotlib's colormap ``name`` as a ``[256, 3]`` uint8 table, once (looking the colormap up per
    map copies it)."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def css_gradient(name: str, stops: int = 9) -> str:
    """A CSS ``linear-gradient`` of colormap ``name`` (the page's colour bar)."""
    table = colour_table(name)
    colours = [table[int(round(i * 255 / (stops - 1)))] for i in range(stops)]
    return "linear-gradient(to right," + ",".join(f"rgb({r},{g},{b})" for r, g, b in colours) + ")"


OUTLIER_SHARE = 0.02  # the top 2% of a map's mass saturates, as Captum's visualisation (outlier_perc=2)


def display_scale(magnitudes: np.ndarray) -> float:
    """The value a map is divided by to be shown: the smallest value at which the sorted values'
    running sum reaches 98% of the map's total (a few extreme pixels do not fade the rest out), as
    Captum's ``visualize_image_attr`` normalises. 0 for an empty map."""
    ordered = np.sort(np.asarray(magnitudes, np.float64).ravel())
    total = ordered.sum()
    if not total > 0:
        return 0.0
    running = np.cumsum(ordered)
    return float(ordered[np.searchsorted(running, (1.0 - OUTLIER_SHARE) * total)])
