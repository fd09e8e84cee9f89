"""What the model used, per (question, target) of a run: the question's token attributions, the
image's share of the attribution, and the faithfulness (deletion/insertion) of the run's map and of
a random map. Computed in batches and cached on disk by what each part depends on:

- the *model part* (tokens, share, random-map curves) depends on the checkpoint, the data, the
  targets and the ``explain`` settings, not on the attribution method: a sweep over methods
  computes it once;
- the *map part* (the method's curves) depends on the map set as well.

Cost per target: tokens ``ig_steps`` forward+backward passes of the question side (the image
features once), share ``ig_steps`` forward+backward passes of the whole model (one joint pass),
faithfulness ``2 + 4 (steps - 1)`` forwards (the curves' ends, shared, and the interior points of the
method's map and of the random map).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from vqa_interp.analysis.statistics import stands_for_example
from vqa_interp.attribution.baselines import random_map_for
from vqa_interp.models.base import take
from vqa_interp.util.disk_cache import DiskCache
from vqa_interp.util.memory import batching_of
from vqa_interp.util.shared_work import SharedWork

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # raise when a part's table changes: cached parts are then ignored
CURVES = ("deletion", "insertion")


@dataclass
class ExplainTables:
    """``per_target``: one row per (question_id, target): ``image_share``, ``share_error`` (only for
    the target whose map stands for the example, ``analysis.map_for_example``; NaN for the others),
    ``token_error``, ``deletion_auc``, ``insertion_auc``, ``random_deletion_auc``,
    ``random_insertion_auc`` (and the token scores where the dataset has question evidence);
    ``tokens``: one row per token (``question_id, target, position, token, attribution``);
    ``curves``: one row per (question_id, target, source in {method, random}, curve), with the
    target probability at each step (``step_0 .. step_<steps>``, fraction ``i / steps``)."""

    per_target: pd.DataFrame
    tokens: pd.DataFrame
    curves: pd.DataFrame
    hits: dict = field(default_factory=dict)
    evidence: dict | None = None  # question_id -> decisive token positions (None: the dataset has none)


def _curve_rows(chunk: pd.DataFrame, source: str, result: dict) -> list[dict]:
    rows = []
    for i, t in enumerate(chunk.itertuples()):
        for curve in CURVES:
            rows.append(
                {
                    "question_id": t.question_id,
                    "target": t.target,
                    "source": source,
                    "curve": curve,
                    "auc": float(result[f"{curve}_auc"][i]),
                    **{f"step_{s}": float(p) for s, p in enumerate(result[curve][i])},
                }
            )
    return rows


def explain_targets(
    model,
    settings,
    examples: Sequence,
    targets: pd.DataFrame,
    map_cache,
    load_images,
    question: tuple,
    *,
    data_digest: str,
    evidence: dict[int, tuple[int, ...]] | None = None,
) -> ExplainTables | None:
    """The explain tables of a run's ``targets`` (``question_id, row, target, target_index, map_key``)
    for ``model`` (a :class:`~vqa_interp.models.base.VqaModel`) and its encoding of every example's
    question, from cache where possible. None when every part is off (``explain.*``)."""
    work = explain_work(
        model, settings, examples, targets, map_cache, load_images, question, data_digest=data_digest, evidence=evidence
    )
    return None if work is None else work.run()


def explain_work(
    model,
    settings,
    examples: Sequence,
    targets: pd.DataFrame,
    map_cache,
    load_images,
    question: tuple,
    *,
    data_digest: str,
    evidence: dict[int, tuple[int, ...]] | None = None,
) -> SharedWork | None:
    """:func:`explain_targets` as shared work: one item per batch of ``explain.batch_size`` targets
    (none when every part is cached), each a pure function of its targets, so a run and the process
    it forked can each take batches (:mod:`vqa_interp.util.shared_work`); its ``finish`` writes
    the caches and returns the :class:`ExplainTables`. None when every part is off."""
    e = settings.explain
    if not (e.tokens or e.share or e.faithfulness) or targets.empty:
        return None
    store = DiskCache(settings.cache, "explain", CACHE_VERSION)
    depends = _explain_depends(model, settings, map_cache, data_digest)
    cached = {name: store.read_table(dep, name) for name, dep in depends.items()}
    hits = {
        "model": all(cached[name] is not None for name in ("model", "tokens", "random")),
        "map": cached["map"] is not None or not e.faithfulness,
    }
    sizes = batching_of(settings)  # the run's memory budget: the configured sizes are upper bounds
    ig_batch, curve_batch = sizes.fit(sizes.backward, e.ig_batch_size), sizes.fit(sizes.forward, e.batch_size)

    job = _BatchJob(model, settings, examples, targets, map_cache, load_images, question, hits, ig_batch, curve_batch)

    def finish(results: list) -> ExplainTables:
        per_target, token_rows, curve_rows, map_curves = (
            [row for result in results for row in result[part]] for part in range(4)
        )
        if not hits["model"]:
            cached["model"] = pd.DataFrame(per_target)
            cached["tokens"] = pd.DataFrame(
                token_rows, columns=["question_id", "target", "position", "token", "attribution"]
            )
            cached["random"] = pd.DataFrame(curve_rows)
            for name in ("model", "tokens", "random"):
                store.write_table(depends[name], cached[name], name)
        if not hits["map"]:
            cached["map"] = pd.DataFrame(map_curves)
            store.write_table(depends["map"], cached["map"], "map")
        return _tables(cached, targets, e.faithfulness, evidence, hits)

    # nothing to compute when every part is cached: no image is read
    begins = [] if all(hits.values()) else list(range(0, len(targets), e.batch_size))
    return SharedWork([functools.partial(_explain_batch, job, begin) for begin in begins], finish, label="explain")


def _explain_depends(model, settings, map_cache, data_digest: str) -> dict[str, dict]:
    """What each cached part of the explain stage depends on: the model's parts (per-target rows,
    tokens, random-map curves) on the data, targets, model, device and the explain options; the
    method-map curves on the map set and the curves' options."""
    e = settings.explain
    curve_options = {"steps": e.steps, "substrate": e.substrate, "blur_sigma": e.blur_sigma}
    common = {
        "data": data_digest,
        "targets": settings.attribution.target_policy,
        "model": model.identity(),
        "device": settings.device,
    }
    model_dep = {
        **common,
        "tokens": e.tokens,
        "share": e.share,
        "faithfulness": e.faithfulness,
        "ig_steps": e.ig_steps,
        "curves": curve_options,
        "seed": settings.seed,
        "example_map": settings.analysis.map_for_example,
    }
    map_dep = {**common, "maps": map_cache.signature, "curves": curve_options}
    return {"model": model_dep, "tokens": model_dep, "random": model_dep, "map": map_dep}


@dataclass(frozen=True)
class _BatchJob:
    """What every batch of the explain stage reads (the model, the run's settings, its examples and
    targets, the map cache, the image loader, the encoded questions, which cached parts hit, the
    IG and curve batch sizes)."""

    model: Any
    settings: Any
    examples: Sequence
    targets: pd.DataFrame
    map_cache: Any
    load_images: Any
    question: tuple
    hits: dict
    ig_batch: int
    curve_batch: int


def _explain_batch(job: _BatchJob, begin: int) -> tuple[list, list, list, list]:
    """``(per-target rows, token rows, random-map curve rows, method-map curve rows)`` of one batch."""
    from vqa_interp.attribution.faithfulness import curves_for_map_sets

    model, settings, e, device = job.model, job.settings, job.settings.explain, job.settings.device
    per_target, token_rows, curve_rows, map_curves = [], [], [], []
    context = torch.backends.cudnn.flags(enabled=False) if device.startswith("cuda") else contextlib.nullcontext()
    with context:
        chunk = job.targets.iloc[begin : begin + e.batch_size]
        rows = chunk["row"].tolist()
        images = job.load_images(rows).to(device)
        qs = model.to_device(take(job.question, rows), device)
        goal = tuple(t.to(device) for t in model.encode_targets(chunk["target_answer"].tolist()))
        map_sets = {}
        if not job.hits["model"]:
            record = [{"question_id": t.question_id, "target": t.target} for t in chunk.itertuples()]
            if e.tokens:
                token_rows.extend(
                    _token_rows(model, job.examples, chunk, images, qs, goal, record, e.ig_steps, job.ig_batch)
                )
            if e.share:
                _add_shares(model, chunk, images, qs, goal, record, settings, job.ig_batch)
            if e.faithfulness:
                side = images.shape[-1]
                map_sets["random"] = np.stack(
                    [random_map_for(t.question_id, side, settings.seed) for t in chunk.itertuples()]
                )
            per_target.extend(record)
        if not job.hits["map"]:
            map_sets["method"] = np.stack([job.map_cache.load(key) for key in chunk["map_key"]])
        if map_sets:  # both sets in one call: the curves' ends are shared
            curves = curves_for_map_sets(
                model,
                images,
                map_sets,
                qs,
                goal,
                steps=e.steps,
                batch_size=job.curve_batch,
                kind=e.substrate,
                blur_sigma=e.blur_sigma,
            )
            if "random" in curves:
                curve_rows.extend(_curve_rows(chunk, "random", curves["random"]))
            if "method" in curves:
                map_curves.extend(_curve_rows(chunk, "method", curves["method"]))
    return per_target, token_rows, curve_rows, map_curves


def _token_rows(model, examples, chunk, images, qs, goal, record: list[dict], n_steps: int, ig_batch: int) -> list:
    """The token attributions of one batch of targets (``chunk``), a row per question token; each
    target's convergence error goes into its ``record``."""
    from vqa_interp.attribution.question import token_attributions

    scores, error = token_attributions(model, images, qs, goal, n_steps=n_steps, internal_batch_size=ig_batch)
    scores, error = scores.cpu().numpy(), error.cpu().numpy()
    # the question's tokens sit where the model's token mask says (from 0 for a classifier's
    # question encoding, inside the prompt for a generative model)
    mask = model.token_mask(qs).cpu()
    rows = []
    for i, t in enumerate(chunk.itertuples()):
        where = torch.nonzero(mask[i])[:, 0].tolist()
        words = model.tokens(examples[t.row].question)[: len(where)]
        rows.extend(
            {
                "question_id": t.question_id,
                "target": t.target,
                "position": p,
                "token": word,
                "attribution": float(scores[i, where[p]]),
            }
            for p, word in enumerate(words)
        )
        record[i]["token_error"] = float(error[i])
    return rows


def _add_shares(model, chunk, images, qs, goal, record: list[dict], settings, ig_batch: int) -> None:
    """The image's share of one IG pass for the targets of ``chunk`` whose map stands for their
    example (``analysis.map_for_example``: the share is the example's), into their ``record``."""
    from vqa_interp.attribution.question import image_question_share

    stands = np.flatnonzero(stands_for_example(chunk, settings.analysis.map_for_example))
    if not len(stands):
        return
    pick = torch.as_tensor(stands, device=images.device)
    share, error = image_question_share(
        model,
        images[pick],
        take(qs, pick),
        take(goal, pick),
        n_steps=settings.explain.ig_steps,
        internal_batch_size=ig_batch,
    )
    for i, value, err in zip(stands, share.cpu().numpy(), error.cpu().numpy()):
        record[i].update(image_share=float(value), share_error=float(err))


def _tables(cached: dict, targets: pd.DataFrame, faithfulness: bool, evidence, hits: dict) -> ExplainTables:
    """The :class:`ExplainTables` from the four cached parts."""
    curves = (
        pd.concat(
            [frame for frame in (cached["map"], cached["random"]) if frame is not None and len(frame)],
            ignore_index=True,
        )
        if faithfulness
        else pd.DataFrame()
    )
    per_target = cached["model"].merge(targets[["question_id", "target"]], on=["question_id", "target"], how="right")
    if faithfulness and len(curves):
        wide = curves.pivot_table(index=["question_id", "target"], columns=["source", "curve"], values="auc")
        wide.columns = [f"{'' if source == 'method' else 'random_'}{curve}_auc" for source, curve in wide.columns]
        per_target = per_target.merge(wide.reset_index(), on=["question_id", "target"], how="left")
    tokens = cached["tokens"]
    if evidence is not None and len(tokens):
        per_target = per_target.merge(score_tokens(tokens, evidence), on=["question_id", "target"], how="left")
    return ExplainTables(per_target, tokens, curves, hits, evidence)


def score_tokens(tokens: pd.DataFrame, evidence: dict[int, tuple[int, ...]]) -> pd.DataFrame:
    """``token_auc``, ``token_top1``, ``token_top1_chance`` per (question_id, target) of a token table
    (see :mod:`vqa_interp.explain.tokens`); questions missing from ``evidence`` get NaN."""
    from vqa_interp.explain.tokens import decisive_token_scores

    rows = []
    for (qid, target), group in tokens.groupby(["question_id", "target"], sort=False):
        ordered = group.sort_values("position")
        scores = decisive_token_scores(ordered["attribution"].to_numpy(float), evidence.get(int(qid), ()))
        rows.append({"question_id": qid, "target": target, **scores})
    return pd.DataFrame(rows)
