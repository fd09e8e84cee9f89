"""The score tables of a run cached on disk by what they depend on (:func:`tables_work`): the
per-example table and the references table (floors and ceiling) at ``scoring.k`` and at a k sweep's
other values, read when cached, else computed as :func:`~vqa_interp.pipeline.score.question_work`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Sequence

import pandas as pd

from vqa_interp.attribution.cache import MapCache
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry
from vqa_interp.data.vqa import Example
from vqa_interp.metrics import run_metrics
from vqa_interp.metrics.humans import LOO_PREFIX, scoring_options
from vqa_interp.pipeline.references import reference_columns, score_references
from vqa_interp.pipeline.score import question_work
from vqa_interp.util.disk_cache import DiskCache
from vqa_interp.util.shared_work import SharedWork

CACHE_VERSION = 6  # raise when a metric's definition or a table's columns change: cached score tables are then ignored


@dataclass
class _TableCaches:
    """The on-disk caches of a run's per-example (``scores``) and references tables, each keyed by
    what it depends on at each k: the scores on the map set, the data, the target policy and the
    method; the references on the data, the input, the seed and the floors' options (not the model
    or the method: a sweep over methods computes them once); both on the scoring setup."""

    settings: object
    depends: dict
    stores: dict

    @classmethod
    def of(cls, settings, cache: MapCache, data_digest: str) -> "_TableCaches":
        a = settings.attribution
        depends = {
            "scores": {
                "maps": cache.signature,
                "data": data_digest,
                "targets": a.target_policy,
                "method": a.method,
                "device": settings.device,
            },
            "references": {
                "data": data_digest,
                "input": settings.model.input,
                "seed": settings.seed,
                "baselines": settings.analysis.baseline_options,
            },
        }
        return cls(settings, depends, {kind: DiskCache(settings.cache, kind, CACHE_VERSION) for kind in depends})

    def key(self, kind: str, k: float) -> dict:
        return _cache_key(self.settings, self.depends[kind], k)

    def read(self, kind: str, k: float, columns: list[str]) -> pd.DataFrame | None:
        return self.stores[kind].read_table(self.key(kind, k), columns=columns)

    def write(self, kind: str, tables: dict) -> None:
        for at, frame in tables.items():
            self.stores[kind].write_table(self.key(kind, at), frame)

    def missing(self, kind: str, k: float, also_k) -> list[float]:
        """``k``, then the values of ``also_k`` whose table is not cached yet."""
        return [k, *[o for o in also_k if o != k and not self.stores[kind].exists(self.key(kind, o))]]


def _cache_key(settings, depends_on: dict, k: float) -> dict:
    s = settings.scoring
    return {
        **depends_on,
        "options": asdict(replace(scoring_options(settings), k=k)),
        "human": s.human,
        "annotator": s.annotator,
        "metrics": list(run_metrics(s.metrics)),
    }


def tables_work(
    settings,
    dataset: Dataset,
    examples: Sequence[Example],
    predictions: pd.DataFrame,
    targets: pd.DataFrame,
    cache: MapCache,
    geometry: InputGeometry,
    data_digest: str,
    also_k: Sequence[float] = (),
    with_references: bool = True,
) -> SharedWork:
    """The per-example table and the references table (floors and ceiling) at ``scoring.k``, each
    cached on disk by what it depends on, computed in one pass when missing: the cached tables are
    read here, what is missing is returned as work whose items (one per question) any process or
    thread may take; its outcome is ``(table, skipped, references or None, {"scores": hit,
    "references": hit})``, the computed tables written to the cache by its ``finish``.

    The per-example table depends on the map set, the data, the target policy and the scoring
    setup; the references on the data, the scoring setup, the seed and the floors' options (not the
    model or the method: a sweep over methods computes them once). The tables at ``also_k`` (the
    other k values of a k sweep) are made in the same pass, from the same sorted maps, and cached
    for those jobs.
    """
    k = settings.scoring.k
    metrics = run_metrics(settings.scoring.metrics)
    caches = _TableCaches.of(settings, cache, data_digest)
    table = caches.read("scores", k, [*metrics, "undefined", *(LOO_PREFIX + m for m in metrics)])
    references = caches.read("references", k, reference_columns(metrics)) if with_references else None
    hits = {"scores": table is not None, "references": references is not None}
    spec = None
    if with_references and references is None:
        spec = {
            "ks": tuple(caches.missing("references", k, also_k)),
            "seed": settings.seed,
            "baseline_options": json.loads(json.dumps(settings.analysis.baseline_options)),
        }

    def write_references(reference_tables) -> pd.DataFrame | None:
        if reference_tables is None:
            return references
        caches.write("references", reference_tables)
        return reference_tables[k]

    if table is None:
        needed = (dataset, examples, predictions, targets, cache, geometry)
        return _scores_work(settings, caches, needed, also_k, metrics, spec, write_references, hits)
    skipped = +Counter({"annotator_missing": targets["question_id"].nunique() - table["question_id"].nunique()})
    if spec is None:
        return SharedWork([], lambda results: (table, skipped, references, hits))

    floors = partial(_floors, settings, dataset, examples, geometry, spec, metrics)
    return SharedWork(
        [floors], lambda results: (table, skipped, write_references(results[0]), hits), label="references"
    )


def _scores_work(settings, caches: _TableCaches, needed: tuple, also_k, metrics, spec, write_references, hits):
    """The per-example tables to compute (``needed``: dataset, examples, predictions, targets, map
    cache, geometry), one item per question, with the floors and ceiling in the same pass when
    ``spec`` asks for them; its ``finish`` writes every table to the cache."""
    a, s, k = settings.attribution, settings.scoring, settings.scoring.k
    work = question_work(
        *needed,
        scoring_options(settings),
        caches.missing("scores", k, also_k),
        human_mode=s.human,
        annotator=s.annotator,
        method=a.method,
        metrics=metrics,
        device=settings.device if settings.device.startswith("cuda") else None,
        references=spec,
    )

    def finish_scores(results: list) -> tuple:
        tables, skipped, reference_tables = work.finish(results)
        caches.write("scores", tables)
        return tables[k], skipped, write_references(reference_tables), hits

    return SharedWork(work.items, finish_scores, label=work.label)


def _floors(settings, dataset, examples, geometry, spec: dict, metrics) -> dict:
    """The floors and ceiling alone (the per-example table was cached): ``k -> references table``."""
    s = settings.scoring
    return score_references(
        dataset,
        examples,
        geometry,
        scoring_options(settings),
        human_mode=s.human,
        annotator=s.annotator,
        seed=settings.seed,
        baseline_options=spec["baseline_options"],
        metrics=metrics,
        ks=spec["ks"],
    )
