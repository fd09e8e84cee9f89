"""Stage 5, maps: the run's attribution maps, computed in batches through the model interface and
kept in the map cache as they are made; maps another run is computing are waited for (the claim
protocol of :class:`~vqa_interp.attribution.cache.MapCache`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from vqa_interp.attribution import METHODS, MapRequest, compute_maps, make_attributor
from vqa_interp.attribution.baselines import BaselineContext, baseline_map
from vqa_interp.attribution.cache import MapCache
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry, load_display_image
from vqa_interp.data.vqa import Example
from vqa_interp.errors import DataError
from vqa_interp.util.memory import batching_of
from vqa_interp.util.progress import tqdm

log = logging.getLogger(__name__)

CACHE_VERSION = 5  # raise when a method's maps change: the map set gets a new folder


def map_cache_for(settings, model) -> MapCache:
    """The map folder of this run, keyed by what all its maps depend on: the model's identity, the
    method and its options, the channel reduction (not the data selection, k, thresholds or
    scoring: each map's own key names its example, see :func:`vqa_interp.pipeline.targets.map_keys`)."""
    a = settings.attribution
    return MapCache(
        Path(settings.cache) / "maps",
        {
            "version": CACHE_VERSION,
            "model": model.identity(),
            "method": {"name": a.method, **a.options},
            "channel_reduction": a.channel_reduction,
        },
    )


def baseline_context(example: Example, dataset: Dataset | None, geometry: InputGeometry, seed: int) -> BaselineContext:
    return BaselineContext(example, load_display_image(example.image_path, geometry), dataset, geometry, seed)


def attribute_targets(
    model,
    settings,
    targets: pd.DataFrame,
    cache: MapCache,
    load_images,
    question: tuple,
    *,
    examples: Sequence[Example] = (),
    dataset: Dataset | None = None,
) -> None:
    """Compute the maps the cache lacks (batched), writing each to the cache as it is made.
    A model-free baseline method (``method=random`` ...) makes its map from the example instead."""
    a = settings.attribution
    keys = targets.drop_duplicates("map_key")
    missing = [
        MapRequest(r.map_key, r.row, r.row, r.target_answer) for r in keys.itertuples() if not cache.has(r.map_key)
    ]
    cache.hits += len(keys) - len(missing)
    attribute = None

    def compute(requests: list[MapRequest]) -> None:
        nonlocal attribute
        cache.misses += len(requests)
        if METHODS[a.method].kind == "baseline":
            store_baseline_maps(a, requests, cache, examples, dataset, model.geometry, settings.seed)
            return
        batch, overrides = batching_of(settings).attribute(a.method, a.options, a.batch_size)
        attribute = attribute or make_attributor(model, a.method, {**a.options, **overrides})
        maps = compute_maps(
            model,
            attribute,
            requests,
            load_images,
            question,
            batch_size=batch,
            channel_reduction=a.channel_reduction,
            device=settings.device,
        )
        for request, array, extras in tqdm(maps, total=len(requests), desc=f"attribute ({a.method})"):
            cache.store(request.key, array, extras)

    # claim what no other run is computing, compute it; then wait for the rest, or take it over
    # when the run computing it is gone
    while missing:
        claimed = {r.key for r in missing if cache.claim(r.key)}
        mine = [r for r in missing if r.key in claimed]
        theirs = [r for r in missing if r.key not in claimed]
        try:
            if mine:
                compute(mine)
        finally:
            for request in mine:
                cache.release(request.key)
        missing = wait_for_other_runs(cache, theirs)


def store_baseline_maps(
    a,
    requests: list[MapRequest],
    cache: MapCache,
    examples: Sequence[Example],
    dataset: Dataset | None,
    geometry,
    seed: int,
) -> None:
    """A model-free baseline method's maps (``method=random`` ...), each made from its example."""
    for request in requests:
        example = examples[request.image_row]
        array = baseline_map(a.method, baseline_context(example, dataset, geometry, seed), a.options)
        if array is None:
            raise DataError(
                f"method={a.method}: the dataset {dataset.name!r} has no such map for question "
                f"{example.question_id} (the oracle needs exact evidence masks: data=embedded)."
            )
        cache.store(request.key, array)


def wait_for_other_runs(cache: MapCache, theirs: list[MapRequest]) -> list[MapRequest]:
    """Wait for the maps other runs are computing (saying so after 5 s, then every minute); returns
    those whose claimant stopped without storing them, to be taken over."""
    missing = []
    started, said = time.monotonic(), 0.0
    for request in theirs:
        while cache.claimed_by_other(request.key) and not cache.has(request.key):
            waited = time.monotonic() - started
            if waited - said >= (5.0 if not said else 60.0):  # after 5 s, then every minute
                said = waited
                log.warning(
                    "waiting %.0f s for map %s, which another run is computing (%s); it is taken over "
                    "as soon as that process ends",
                    waited,
                    request.key,
                    cache.claimant(request.key),
                )
            time.sleep(0.2)
        if cache.has(request.key):
            cache.hits += 1
            cache.waited += 1
        else:
            missing.append(request)  # its claimant stopped without storing it
    return missing
