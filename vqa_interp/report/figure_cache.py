"""The figures of a run that do not depend on k, kept as rendered so that the jobs of a k sweep draw
them once (an entry of the one disk cache, :mod:`vqa_interp.util.disk_cache`)."""

from __future__ import annotations

from pathlib import Path

from vqa_interp.util.disk_cache import DiskCache


class FigureCache:
    """The figures of a run that do not depend on k, kept as rendered (PNG + SVG) under
    ``<cache>/figures/<key>/``, so that the jobs of a k sweep render them once. The key holds what
    they show: the data, the model, the map set, the panels' choice, the confidence splits, the
    human map, the explain setup, the method's name and :data:`FIGURE_CACHE_VERSION`."""

    K_INDEPENDENT = (
        "fig1_human_weight_distribution",
        "fig9_10_qualitative",
        "token_attributions",
        "faithfulness_curves",
        "image_share_by_split",
    )

    def __init__(self, settings, outputs):
        from dataclasses import asdict

        a, s = settings.analysis, settings.scoring
        tags = outputs.tags
        self.root = DiskCache(settings.cache, "figures", FIGURE_CACHE_VERSION).entry_folder(
            {
                "data": tags.get("data_digest"),
                "model": outputs.model.identity() if outputs.model else None,
                "maps": outputs.cache.signature if outputs.cache else None,
                "method": settings.attribution.method,
                "n_panels": a.n_panels,
                "panel_ids": a.panel_ids,
                "map_for_example": a.map_for_example,
                "low": a.low,
                "high": a.high,
                "human": [s.human, s.annotator],
                "explain": asdict(settings.explain),
                "seed": settings.seed,
            }
        )

    def png(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def folder(self, name: str) -> Path | None:
        """Where a newly rendered figure is kept (None: one that depends on k)."""
        return self.root if name in self.K_INDEPENDENT else None

    def available(self) -> set[str]:
        return {n for n in self.K_INDEPENDENT if self.png(n).exists() and self.png(n).with_suffix(".svg").exists()}


FIGURE_CACHE_VERSION = 2  # raise when a k-independent figure's drawing changes
