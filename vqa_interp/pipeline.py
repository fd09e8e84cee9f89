"""The stages of one run as plain functions: data -> predictions -> maps -> scores.

Each stage takes and returns plain data (settings dataclasses, arrays, DataFrames) so a notebook
can call any of them alone; :func:`execute` chains them for ``vqa_interp.run``, which adds Hydra
and MLflow around it. Nothing here trains: the entry point makes sure the model exists first.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vqa_interp.attribution import METHODS, MapRequest, compute_maps, make_attributor
from vqa_interp.attribution.baselines import BASELINES, BaselineContext, baseline_map
from vqa_interp.attribution.cache import MapCache
from vqa_interp.data.answers import normalize_answer, vqa_accuracy
from vqa_interp.data.datasets import Dataset
from vqa_interp.data.images import InputGeometry, load_display_image, load_image
from vqa_interp.data.text import encode_questions
from vqa_interp.data.vqa import Example, Selection, digest_examples, example_digest
from vqa_interp.errors import CheckpointError, DataError
from vqa_interp.explain.compute import ExplainTables, explain_targets
from vqa_interp.metrics import (PreparedMap, ScoringOptions, metric_names, prepare_map, resize_maps, run_metrics,
                                score_against_annotators)
from vqa_interp.metrics.engine import average_defined, score_at_ks
from vqa_interp.models.checkpoint import BACKBONE_FILES, BACKBONE_SOURCES, LoadedModel, load_model
from vqa_interp.settings import Settings
from vqa_interp.util.allocator import one_blas_thread

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ data
def select_examples(dataset: Dataset) -> Selection:
    """The dataset's selected examples (``data.limit``, ``question_ids``, shards), checked."""
    return dataset.examples()


# ------------------------------------------------------------------ model
def resolve_backbone_weights(settings: Settings) -> Path | None:
    """``model.backbone_weights``, else the variant's file in torch's hub cache (None for the small CNN)."""
    m = settings.model
    if m.backbone_weights:
        return Path(m.backbone_weights)
    if m.backbone.get("type") != "resnet":
        return None
    variant = str(m.backbone.get("variant", "caffe"))
    depth = int(m.backbone.get("depth", 152))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    wanted = BACKBONE_FILES[variant].format(depth=depth)
    if (hub / wanted).is_file():
        return hub / wanted
    raise CheckpointError(
        f"model.backbone_weights is not set and {wanted} is not in {hub}. Expected {BACKBONE_SOURCES[variant]}. "
        "Place it there or set model.backbone_weights=FILE; nothing is downloaded at run time.")


def preflight_model_files(settings: Settings) -> None:
    """Fail before any run or model work when a named model file is missing."""
    from vqa_interp.models.checkpoint import load_backbone_weights, read_checkpoint

    if settings.model.checkpoint and not Path(settings.model.checkpoint).is_file():
        read_checkpoint(settings.model.checkpoint)  # raises the explanatory CheckpointError
    weights = resolve_backbone_weights(settings)
    if weights is not None and not Path(weights).is_file():
        load_backbone_weights(weights, str(settings.model.backbone.get("variant", "caffe")))


def load_vqa_model(settings: Settings, checkpoint: Path) -> LoadedModel:
    loaded = load_model(checkpoint, settings.model.backbone, resolve_backbone_weights(settings))
    loaded.model.to(settings.device)
    return loaded


# ------------------------------------------------------------------ predictions
def image_loader(examples: Sequence[Example], geometry: InputGeometry) -> Callable[[list[int]], torch.Tensor]:
    """``rows -> [len(rows), 3, S, S]`` float32; images are read when needed, never all held."""
    def load(rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.stack([load_image(examples[r].image_path, geometry) for r in rows]))
    return load


def answer_lookup(answer_vocab: dict[str, int]) -> dict[str, int]:
    """The answer vocabulary keyed by the official normalisation of each answer, so that a label
    ("2") finds the model's answer under whatever spelling the vocabulary used ("two"). Where two
    vocabulary entries normalise alike, the more frequent one (lower index) wins."""
    lookup: dict[str, int] = {}
    for answer, index in sorted(answer_vocab.items(), key=lambda item: item[1]):
        lookup.setdefault(normalize_answer(answer), index)
    return lookup


def predict(loaded: LoadedModel, examples: Sequence[Example], load_images, q: torch.Tensor, q_len: torch.Tensor,
            *, batch_size: int, device: str = "cpu") -> pd.DataFrame:
    """One row per example: prediction, confidence (softmax p), correct, VQA accuracy, label index.

    ``correct`` means the prediction equals the labelled answer (``multiple_choice_answer``), both
    normalised as the official evaluation; ``vqa_accuracy`` is the official soft score against the
    10 human answers.
    """
    answers = loaded.answers
    vocab = answer_lookup(loaded.answer_vocab)
    rows = []
    with torch.no_grad():
        for begin in tqdm(range(0, len(examples), batch_size), desc="predict", leave=False):
            idx = list(range(begin, min(begin + batch_size, len(examples))))
            logits = loaded.model(load_images(idx).to(device), q[idx].to(device), q_len[idx])
            probs = torch.softmax(logits.float(), dim=1).cpu()
            confidence, predicted = probs.max(dim=1)
            for j, i in enumerate(idx):
                ex = examples[i]
                label = normalize_answer(ex.multiple_choice_answer)
                prediction = normalize_answer(answers[int(predicted[j])])
                rows.append({
                    "question_id": ex.question_id, "image_id": ex.image_id, "question": ex.question,
                    "answer": label, "answer_type": ex.answer_type, "prediction": prediction,
                    "confidence": float(confidence[j]), "correct": prediction == label,
                    "vqa_accuracy": vqa_accuracy(prediction, ex.answers),
                    "label_index": vocab.get(label, -1), "prediction_index": int(predicted[j]),
                    "row": i,
                })
    return pd.DataFrame(rows)


PREDICTIONS_CACHE_VERSION = 1   # raise when predict()'s table changes: cached predictions are then ignored


def cached_predictions(settings: Settings, loaded: LoadedModel, examples: Sequence[Example], load_images,
                       q: torch.Tensor, q_len: torch.Tensor, data_digest: str) -> tuple[pd.DataFrame, bool]:
    """:func:`predict`'s table, cached on disk (``<cache>/predictions``) by what it depends on: the
    checkpoint, the backbone and its weights, the input geometry, the device, the batch size and
    the data (questions, images, answers). A k sweep's later jobs, and a rerun, read it back
    (equal to the computed one, dtypes included). Returns ``(table, whether it was cached)``."""
    from vqa_interp.util.locking import write_atomic
    from vqa_interp.util.signature import signature

    m = settings.model
    key = signature({"version": PREDICTIONS_CACHE_VERSION, "checkpoint": loaded.checkpoint_digest,
                     "backbone": m.backbone, "backbone_weights": str(resolve_backbone_weights(settings)),
                     "input": m.input, "device": settings.device, "batch_size": settings.attribution.batch_size,
                     "data": data_digest})
    path = Path(settings.cache) / "predictions" / f"{key[:24]}.csv"
    table = _read_cached_table(path, PREDICTION_COLUMNS)
    if table is not None and len(table) == len(examples):
        return table[list(PREDICTION_COLUMNS)], True
    table = predict(loaded, examples, load_images, q, q_len, batch_size=settings.attribution.batch_size,
                    device=settings.device)
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
    return table, False


PREDICTION_COLUMNS = ("question_id", "image_id", "question", "answer", "answer_type", "prediction", "confidence",
                      "correct", "vqa_accuracy", "label_index", "prediction_index", "row")


def map_keys(targets: pd.DataFrame, digests: Sequence[str]) -> pd.DataFrame:
    """Each target's cache key: ``{question_id}_{target_index}_{example digest[:16]}`` (``digests``
    per example row, :func:`vqa_interp.data.vqa.example_digest`)."""
    targets = targets.copy()
    targets["map_key"] = [f"{t.question_id}_{t.target_index}_{digests[t.row][:16]}" for t in targets.itertuples()]
    return targets


def plan_targets(predictions: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, Counter]:
    """The maps to compute: one row per (question, target) with ``target`` in {label, prediction}.

    ``paper``: the labelled answer always; the predicted answer too when the model is wrong.
    ``label`` / ``prediction``: only that one. Questions whose labelled answer is not in the
    answer vocabulary are skipped (and counted) under every policy, as in the paper.
    """
    skipped: Counter = Counter()
    rows = []
    for p in predictions.itertuples(index=False):
        if p.label_index < 0:
            skipped["label_not_in_answer_vocab"] += 1
            continue
        wanted = {"paper": ["label"] + ([] if p.correct else ["prediction"]),
                  "label": ["label"], "prediction": ["prediction"]}[policy]
        for target in wanted:
            index = p.label_index if target == "label" else p.prediction_index
            rows.append({"question_id": p.question_id, "row": p.row, "target": target,
                         "target_index": int(index), "on_prediction": index == p.prediction_index,
                         "map_key": f"{p.question_id}_{index}"})
    return pd.DataFrame(rows, columns=["question_id", "row", "target", "target_index", "on_prediction", "map_key"]), skipped


# ------------------------------------------------------------------ maps
def map_cache_for(settings: Settings, checkpoint_digest: str) -> MapCache:
    """The map folder of this run, keyed by what all its maps depend on (not the data selection, k,
    thresholds or scoring: each map's own key names its example, see :func:`map_keys`)."""
    a = settings.attribution
    return MapCache(Path(settings.cache) / "maps", {
        "version": 2, "checkpoint": checkpoint_digest, "method": {"name": a.method, **a.options},
        "channel_reduction": a.channel_reduction, "input": settings.model.input, "backbone": settings.model.backbone,
    })


def baseline_context(example: Example, dataset: Dataset | None, geometry: InputGeometry, seed: int) -> BaselineContext:
    return BaselineContext(example, load_display_image(example.image_path, geometry), dataset, geometry, seed)


def attribute_targets(loaded: LoadedModel, settings: Settings, targets: pd.DataFrame, cache: MapCache,
                      load_images, q: torch.Tensor, q_len: torch.Tensor, *, examples: Sequence[Example] = (),
                      dataset: Dataset | None = None, geometry: InputGeometry | None = None) -> None:
    """Compute the maps the cache lacks (batched), writing each to the cache as it is made.
    A model-free baseline method (``method=random`` ...) makes its map from the example instead."""
    a = settings.attribution
    keys = targets.drop_duplicates("map_key")
    missing = [MapRequest(r.map_key, r.row, r.row, r.target_index) for r in keys.itertuples() if not cache.has(r.map_key)]
    cache.hits += len(keys) - len(missing)
    attribute = None

    def compute(requests: list[MapRequest]) -> None:
        nonlocal attribute
        cache.misses += len(requests)
        if METHODS[a.method].kind == "baseline":
            for request in requests:
                example = examples[request.image_row]
                array = baseline_map(a.method, baseline_context(example, dataset, geometry, settings.seed), a.options)
                if array is None:
                    raise DataError(f"method={a.method}: the dataset {dataset.name!r} has no such map for question "
                                    f"{example.question_id} (the oracle needs exact evidence masks: data=embedded).")
                cache.store(request.key, array)
            return
        attribute = attribute or make_attributor(loaded.model, a.method, a.options)
        maps = compute_maps(loaded.model, attribute, requests, load_images, q, q_len, batch_size=a.batch_size,
                            channel_reduction=a.channel_reduction, device=a.device)
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
        missing = []
        for request in theirs:
            while cache.claimed_by_other(request.key) and not cache.has(request.key):
                time.sleep(0.2)
            if cache.has(request.key):
                cache.hits += 1
                cache.waited += 1
            else:
                missing.append(request)      # its claimant stopped without storing it


# ------------------------------------------------------------------ scores
def score_maps_against_humans(maps: np.ndarray, humans: np.ndarray, options: ScoringOptions, metrics: Sequence[str],
                              ks: Sequence[float], device: str | None = None) -> dict[float, list[dict]]:
    """Each map ``[T, S, S]`` (or an already prepared :class:`PreparedMap`) against the human maps
    ``[U, S, S]`` (both resized to ``options.size``),
    every metric averaged over the humans whose pair is defined: ``k -> [T rows]``.

    Each human map is prepared once for all the maps and every map is sorted once for all of ``ks``.
    ``device``: score in torch on that device, all pairs in one batch; None: NumPy.
    """
    if device is not None:
        from vqa_interp.metrics.batch import score_batch

        maps = np.stack([m.values.reshape(m.shape) if isinstance(m, PreparedMap) else m for m in maps])
        n_maps, n_humans = len(maps), len(humans)
        pairs = score_batch(np.repeat(maps, n_humans, axis=0), humans, np.tile(np.arange(n_humans), n_maps), options,
                            metrics, ks, device=device)
        return {k: [average_defined(rows[t * n_humans:(t + 1) * n_humans], metrics) for t in range(n_maps)]
                for k, rows in pairs.items()}
    prepared_h = [prepare_map(h, options) for h in humans]
    out: dict[float, list[dict]] = {k: [] for k in ks}
    for m in maps:
        prepared = m if isinstance(m, PreparedMap) else prepare_map(m, options)
        for k, row in score_at_ks(prepared, prepared_h, options, metrics, ks).items():
            out[k].append(row)
    return out


def score_targets_at(dataset: Dataset, examples: Sequence[Example], predictions: pd.DataFrame, targets: pd.DataFrame,
                     cache: MapCache, geometry: InputGeometry, options: ScoringOptions, ks: Sequence[float], *,
                     human_mode: str, annotator: int, method: str, workers: int = 1,
                     metrics: Sequence[str] | None = None, device: str | None = None,
                     references: dict | None = None):
    """The per-example tables at each ``k`` of ``ks``: one row per (question, method, target).
    Returns ``(k -> table, skipped, k -> references table or None)``.

    Each question's human maps are loaded and prepared once and reused for all its targets, and
    each map is sorted once for all of ``ks`` (only its top-k region is made per k), so the jobs
    of a k sweep can take their tables from the first one.
    ``references`` (``{"ks", "seed", "baseline_options"}``): also score the floors and the ceiling
    (:func:`score_references`) at ``references["ks"]``, in the same pass, so each question's human
    maps are loaded and prepared once for both.
    ``device`` (a torch device such as ``"cuda"``): score in torch, batched per question
    (:mod:`vqa_interp.metrics.batch`); None: the NumPy scorer.
    ``workers > 1`` scores questions on threads (rows keep the targets' order; the sort kernels
    release the GIL), but on these 2-core VMs threads were slower: a worker thread's malloc arena
    returns the pages of each freed map and faults them in again (a 448x448 map's features took
    2-4x longer), so the default, 1, scores in the calling thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    by_question = predictions.set_index("question_id")
    ks = tuple(dict.fromkeys(ks))
    all_ks = tuple(dict.fromkeys([*ks, *(references["ks"] if references else ())]))
    metrics = tuple(metrics or run_metrics())

    def score_question(item) -> dict[float, list[dict]] | None:
        question_id, group = item
        example = examples[int(group["row"].iloc[0])]
        humans = dataset.human_maps(example, geometry, human_mode, annotator)
        if humans is None:
            return None
        resized_h = resize_maps(humans, options.size, options.resample)
        info = by_question.loc[question_id]
        attributions = list(resize_maps(np.stack([cache.load(k) for k in group["map_key"]]), options.size,
                                        options.resample))
        named = baseline_maps_for(example, dataset, geometry, options, references) if references else []
        scores = score_maps_against_humans(attributions + [m for _, m in named], resized_h, options, metrics,
                                           all_ks, device)
        rows: dict = {k: [] for k in ks}
        if references:
            rows["references"] = reference_rows(example, [name for name, _ in named], scores, len(attributions),
                                                dataset, geometry, options, metrics, references["ks"])
        for i, t in enumerate(group.itertuples(index=False)):
            common = {
                "question_id": question_id, "image_id": int(info["image_id"]), "question": info["question"],
                "answer": info["answer"], "answer_type": info["answer_type"], "prediction": info["prediction"],
                "confidence": float(info["confidence"]), "correct": bool(info["correct"]),
                "vqa_accuracy": float(info["vqa_accuracy"]), "method": method, "target": t.target,
                "target_answer": info["answer"] if t.target == "label" else info["prediction"],
                "on_prediction": bool(t.on_prediction), "map_key": t.map_key, **cache.extras(t.map_key)}
            for k in ks:
                rows[k].append({**common, **scores[k][i]})
        return rows

    skipped: Counter = Counter()
    rows: dict[float, list[dict]] = {k: [] for k in ks}
    reference_rows_at: dict[float, list[dict]] = {k: [] for k in (references["ks"] if references else ())}
    groups = list(targets.groupby("question_id", sort=False))
    with contextlib.ExitStack() as stack:
        if workers > 1:
            results = stack.enter_context(ThreadPoolExecutor(max_workers=workers)).map(score_question, groups)
        else:   # in this thread: a worker thread's malloc arena hands its pages back and faults them in again
            results = map(score_question, groups)
        for result in tqdm(results, total=len(groups), desc="score", leave=False):
            if result is None:
                skipped["annotator_missing"] += 1
            else:
                for k in ks:
                    rows[k].extend(result[k])
                for k, at_k in result.get("references", {}).items():
                    reference_rows_at[k].extend(at_k)
    tables = {k: pd.DataFrame(rows[k]) for k in ks}
    if not references:
        return tables, skipped, None
    # questions without a target (none planned for them) get their floors and ceiling here
    done = set(targets["question_id"])
    rest = [e for e in examples if e.question_id not in done]
    columns = ["question_id", "reference", *metrics, "undefined"]
    reference_tables = {k: pd.DataFrame(reference_rows_at[k], columns=columns) for k in references["ks"]}
    if rest:
        more = score_references(dataset, rest, geometry, options, human_mode=human_mode, annotator=annotator,
                                seed=references["seed"], baseline_options=references["baseline_options"],
                                metrics=metrics, ks=references["ks"])
        reference_tables = {k: pd.concat([reference_tables[k], more[k]], ignore_index=True) for k in references["ks"]}
    return tables, skipped, reference_tables


# ------------------------------------------------------------------ floors and ceiling
REFERENCES = (*BASELINES, "human_ceiling")


def human_ceiling(annotator_maps: np.ndarray, options: ScoringOptions,
                  metrics: Sequence[str] | None = None, ks: Sequence[float] | None = None) -> dict | None:
    """Leave-one-annotator-out agreement: each annotator's map ``[S, S]`` (as the "attribution")
    against the mean of the others (as the "human"), every metric averaged over the annotators.
    None for a question with one annotator (no ceiling can be computed). With ``ks``: a dict
    ``k -> row`` (each map sorted once for all of them)."""
    if len(annotator_maps) < 2:
        return None
    resized = resize_maps(annotator_maps, options.size, options.resample)
    names = tuple(metrics or run_metrics())
    pairs = []
    for i in range(len(resized)):
        # the mean of the others, rounded to float32 like every other map (so it sorts in linear time)
        others = np.delete(resized, i, axis=0).mean(axis=0).astype(np.float32).astype(np.float64)
        pairs.append((prepare_map(resized[i], options), prepare_map(others, options)))
    at_ks = ks or (options.k,)
    per_pair = [score_at_ks(a, [h], options, names, at_ks) for a, h in pairs]
    at = {k: average_defined([row[k] for row in per_pair], names) for k in at_ks}
    return at if ks is not None else at[options.k]


_CENTRE: dict = {}


def baseline_maps_for(example: Example, dataset: Dataset, geometry: InputGeometry, options: ScoringOptions,
                      references: dict) -> list[tuple[str, np.ndarray | PreparedMap]]:
    """The floors' maps for one question, resized (``(name, map)``; a floor a question lacks is left
    out). The centre map is the same for every question: it is prepared once."""
    context = baseline_context(example, dataset, geometry, references["seed"])
    out = []
    for name in BASELINES:
        options_of = references["baseline_options"].get(name)
        if name == "centre":
            key = (geometry, options, repr(options_of))
            if key not in _CENTRE:
                _CENTRE.clear()
                _CENTRE[key] = prepare_map(resize_maps(baseline_map(name, context, options_of)[None], options.size,
                                                       options.resample)[0], options)
            out.append((name, _CENTRE[key]))
            continue
        array = baseline_map(name, context, options_of)
        if array is not None:
            out.append((name, resize_maps(array[None], options.size, options.resample)[0]))
    return out


def reference_rows(example: Example, names: Sequence[str], scores: dict[float, list[dict]], first: int,
                   dataset: Dataset, geometry: InputGeometry, options: ScoringOptions, metrics: Sequence[str],
                   ks: Sequence[float]) -> dict[float, list[dict]]:
    """One question's reference rows at each k: the floors (``names``, scored as rows ``first...`` of
    ``scores``) and the human ceiling (leave-one-annotator-out on its own annotators)."""
    ceiling = human_ceiling(dataset.human_maps(example, geometry, "each", 1), options, metrics, ks=ks)
    out = {}
    for k in ks:
        rows = [{"question_id": example.question_id, "reference": name, **scores[k][first + i]}
                for i, name in enumerate(names)]
        if ceiling is not None:
            rows.append({"question_id": example.question_id, "reference": "human_ceiling", **ceiling[k]})
        out[k] = rows
    return out


def score_references(dataset: Dataset, examples: Sequence[Example], geometry: InputGeometry,
                     options: ScoringOptions, *, human_mode: str, annotator: int, seed: int,
                     baseline_options: dict[str, dict] | None = None,
                     metrics: Sequence[str] | None = None, ks: Sequence[float] | None = None):
    """Every floor and the ceiling on the same questions and human maps as the run's method:
    one row per (question, reference) with every metric; ``reference`` in :data:`REFERENCES`.

    Baselines are scored exactly like an attribution map (same human map, same scorer); the human
    ceiling is leave-one-annotator-out on the question's own annotators. A reference that does not
    exist for a question (no exact mask, one annotator) has no row. With ``ks``: a dict
    ``k -> table``, every map sorted once for all of them. (A run scores them in the same pass as
    its method's maps: :func:`score_targets_at`.)
    """
    names = tuple(metrics or run_metrics())
    at_ks = tuple(dict.fromkeys(ks or (options.k,)))
    spec = {"ks": at_ks, "seed": seed, "baseline_options": baseline_options or {}}
    rows: dict[float, list[dict]] = {k: [] for k in at_ks}
    for example in tqdm(examples, desc="references", leave=False):
        humans = dataset.human_maps(example, geometry, human_mode, annotator)
        if humans is None:
            continue
        named = baseline_maps_for(example, dataset, geometry, options, spec)
        scores = score_maps_against_humans([m for _, m in named], resize_maps(humans, options.size, options.resample),
                                           options, names, at_ks)
        for k, at_k in reference_rows(example, [n for n, _ in named], scores, 0, dataset, geometry, options, names,
                                      at_ks).items():
            rows[k].extend(at_k)
    tables = {k: pd.DataFrame(rows[k], columns=["question_id", "reference", *names, "undefined"]) for k in at_ks}
    return tables if ks is not None else tables[options.k]


TEXT_COLUMNS = ("question", "answer", "answer_type", "prediction", "method", "target", "target_answer", "map_key",
                "reference", "undefined")


def _read_cached_table(path: Path, columns: Sequence[str]) -> pd.DataFrame | None:
    """A cached table (text columns kept as text: an answer "2" stays a string), or None when it is
    missing or was written with other columns."""
    if not path.exists():
        return None
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in TEXT_COLUMNS})
    if not set(columns) <= set(frame.columns):
        return None
    if "undefined" in frame:
        frame["undefined"] = frame["undefined"].fillna("").astype(str)
    return frame


def _score_cache_path(settings: Settings, kind: str, depends_on: dict, k: float) -> Path:
    from vqa_interp.util.signature import signature

    options = asdict(replace(scoring_options(settings), k=k))
    s = settings.scoring
    key = signature({**depends_on, "options": options, "human": s.human, "annotator": s.annotator,
                     "metrics": list(run_metrics(s.metrics)), "version": SCORE_CACHE_VERSION})
    return Path(settings.cache) / kind / f"{key[:24]}.csv"


SCORE_CACHE_VERSION = 2   # raise when a metric's definition changes: cached score tables are then ignored


def cached_tables(settings: Settings, dataset: Dataset, examples: Sequence[Example], predictions: pd.DataFrame,
                  targets: pd.DataFrame, cache: MapCache, geometry: InputGeometry, data_digest: str,
                  also_k: Sequence[float] = (), with_references: bool = True):
    """The per-example table and the references table (floors and ceiling) at ``scoring.k``, each
    cached on disk by what it depends on, computed in one pass when missing.

    The per-example table depends on the map set, the data, the target policy and the scoring
    setup; the references on the data, the scoring setup, the seed and the floors' options (not the
    model or the method: a sweep over methods computes them once). The tables at ``also_k`` (the
    other k values of a k sweep) are made in the same pass, from the same sorted maps, and cached
    for those jobs. Returns ``(table, skipped, references or None, {"scores": hit, "references": hit})``.
    """
    import json

    from vqa_interp.util.locking import write_atomic

    a, s, k = settings.attribution, settings.scoring, settings.scoring.k
    metrics = run_metrics(s.metrics)
    score_dep = {"maps": cache.signature, "data": data_digest, "targets": a.target_policy, "method": a.method,
                 "device": settings.device}
    ref_dep = {"data": data_digest, "seed": settings.seed, "baselines": settings.analysis.baseline_options}
    table = _read_cached_table(_score_cache_path(settings, "scores", score_dep, k), [*metrics, "undefined"])
    references = (_read_cached_table(_score_cache_path(settings, "references", ref_dep, k),
                                     ["question_id", "reference", *metrics, "undefined"]) if with_references else None)
    hits = {"scores": table is not None, "references": references is not None}

    def missing(kind: str, depends_on: dict) -> list[float]:
        return [k, *[o for o in also_k if o != k and not _score_cache_path(settings, kind, depends_on, o).exists()]]

    spec = None
    if with_references and references is None:
        spec = {"ks": tuple(missing("references", ref_dep)), "seed": settings.seed,
                "baseline_options": json.loads(json.dumps(settings.analysis.baseline_options))}
    device = settings.device if settings.device.startswith("cuda") else None
    options = scoring_options(settings)
    reference_tables = None
    if table is None:
        tables, skipped, reference_tables = score_targets_at(
            dataset, examples, predictions, targets, cache, geometry, options, missing("scores", score_dep),
            human_mode=s.human, annotator=s.annotator, method=a.method, workers=s.workers, metrics=metrics,
            device=device, references=spec)
        for at, frame in tables.items():
            write_atomic(_score_cache_path(settings, "scores", score_dep, at),
                         lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
        table = tables[k]
    else:
        skipped = +Counter({"annotator_missing": targets["question_id"].nunique() - table["question_id"].nunique()})
        if spec is not None:
            reference_tables = score_references(dataset, examples, geometry, options, human_mode=s.human,
                                                annotator=s.annotator, seed=settings.seed,
                                                baseline_options=spec["baseline_options"], metrics=metrics,
                                                ks=spec["ks"])
    if reference_tables is not None:
        for at, frame in reference_tables.items():
            write_atomic(_score_cache_path(settings, "references", ref_dep, at),
                         lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
        references = reference_tables[k]
    return table, skipped, references, hits


# ------------------------------------------------------------------ sanity checks
def run_sanity_checks(loaded: LoadedModel, settings: Settings, dataset: Dataset, examples: Sequence[Example],
                      geometry: InputGeometry, load_images, q: torch.Tensor, q_len: torch.Tensor) -> pd.DataFrame | None:
    """Model-randomisation curves of the run's method on ``analysis.sanity_questions`` questions
    (a seeded sample), with the human-agreement metrics of the randomised maps (see
    :mod:`vqa_interp.attribution.sanity`). None for a model-free baseline method."""
    from vqa_interp.attribution.sanity import sanity_checks

    a = settings.attribution
    if METHODS[a.method].kind == "baseline":
        log.warning("analysis.sanity: %s is a model-free baseline; there is no model to randomise", a.method)
        return None
    rng = np.random.default_rng(settings.seed)
    rows = sorted(rng.choice(len(examples), size=min(settings.analysis.sanity_questions, len(examples)),
                             replace=False).tolist())
    options = scoring_options(settings)
    humans = [dataset.human_maps(examples[r], geometry, "mean", 1) for r in rows]
    prepared = [prepare_map(resize_maps(h, options.size, options.resample)[0], options) for h in humans]

    def human_scores(maps: np.ndarray) -> dict[str, np.ndarray]:
        scored = [score_against_annotators(prepare_map(m, options), [h], options, ("rank_corr", "iou"))
                  for m, h in zip(resize_maps(maps, options.size, options.resample), prepared)]
        return {metric: np.array([s[metric] for s in scored]) for metric in ("rank_corr", "iou")}

    index = torch.tensor(rows)
    device = settings.device
    model = loaded.model
    if device != "cpu":
        model = model.to("cpu")   # deep copies per step stay on the CPU; the sample is small
    try:
        return sanity_checks(model, a.method, a.options, load_images(rows), q[index], q_len[index],
                             human_scores=human_scores, batch_size=a.batch_size, seed=settings.seed)
    finally:
        model.to(device)


# ------------------------------------------------------------------ one run
@dataclass
class RunOutputs:
    """What a run produced, for tracking and for callers."""
    examples: list[Example]
    predictions: pd.DataFrame
    table: pd.DataFrame
    counts: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cache: MapCache | None = None
    loaded: LoadedModel | None = None
    geometry: InputGeometry | None = None
    dataset: Dataset | None = None
    references: pd.DataFrame | None = None      # floors and ceiling per question (score_references)
    summary: str = ""                           # the terminal summary, filled when the run is recorded
    summary_markdown: str = ""                  # the same for the run's description in MLflow
    sanity: pd.DataFrame | None = None          # randomisation curves (analysis.sanity)
    explain: "ExplainTables | None" = None      # tokens, image share, faithfulness (explain.*)
    summary_lines: list[str] = field(default_factory=list)


@contextmanager
def timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[f"time/{name}_s"] = time.perf_counter() - start


def scoring_options(settings: Settings) -> ScoringOptions:
    s = settings.scoring
    return ScoringOptions(k=s.k, size=s.size, steps=s.steps, eps=s.eps, tie_policy=s.tie_policy, dice=s.dice,
                          resample=s.resample)


def execute(settings: Settings, dataset: Dataset, selection: Selection, checkpoint: Path, timings: dict,
            on_predictions: Callable[[pd.DataFrame], None] | None = None, also_k: Sequence[float] = ()) -> RunOutputs:
    """Model -> predictions -> maps -> scores for validated settings, a data selection and an existing
    checkpoint (the entry point trains the embedded model, if needed, before calling this).

    ``also_k``: the other k values of a k sweep; their score tables are made from the same sorted
    maps and cached for those jobs.
    ``on_predictions`` receives the predictions as soon as they exist (the run logs them then, so a
    later failure loses nothing already computed; maps are kept by the cache as they are made).
    """
    examples = selection.examples
    with timed(timings, "model"):
        loaded = load_vqa_model(settings, checkpoint)
    geometry = InputGeometry(settings.model.input_size, settings.model.central_fraction)
    load_images = image_loader(examples, geometry)
    q, q_len = encode_questions([e.question for e in examples], loaded.question_vocab)
    with timed(timings, "digest"):
        digests = [example_digest(e) for e in examples]
        data_digest = digest_examples(examples, digests)
    with timed(timings, "predict"):
        predictions, predictions_hit = cached_predictions(settings, loaded, examples, load_images, q, q_len,
                                                          data_digest)
    if on_predictions is not None:
        on_predictions(predictions)
    targets, skipped_targets = plan_targets(predictions, settings.attribution.target_policy)
    targets = map_keys(targets, digests)
    cache = map_cache_for(settings, loaded.checkpoint_digest)
    with timed(timings, "attribution"):
        attribute_targets(loaded, settings, targets, cache, load_images, q, q_len, examples=examples,
                          dataset=dataset, geometry=geometry)
    s = settings.scoring
    with timed(timings, "scoring"), one_blas_thread():   # the method's maps, and the floors and ceiling in one pass
        table, skipped_scores, references, hits = cached_tables(settings, dataset, examples, predictions, targets,
                                                                cache, geometry, data_digest, also_k,
                                                                with_references=settings.analysis.baselines)
    if references is not None and not len(table):
        references = None
    sanity = None
    if settings.analysis.sanity:
        with timed(timings, "sanity"):
            sanity = run_sanity_checks(loaded, settings, dataset, examples, geometry, load_images, q, q_len)
    explain = None
    if len(table):
        with timed(timings, "explain"):
            explain = explain_targets(loaded.model, settings, examples, targets, cache, load_images, q, q_len,
                                      checkpoint_digest=loaded.checkpoint_digest, data_digest=data_digest,
                                      evidence=dataset.question_evidence())
        if explain is not None:
            extra = [c for c in explain.per_target.columns if c not in ("question_id", "target")]
            table = table.drop(columns=[c for c in extra if c in table]).merge(
                explain.per_target, on=["question_id", "target"], how="left")
    skipped = selection.skipped + skipped_targets + skipped_scores
    counts = {"count/questions": len(examples), "count/maps": len(targets), "count/rows": len(table),
              "count/map_cache_hits": cache.hits, "count/map_cache_misses": cache.misses,
              **({"count/map_cache_waited": cache.waited} if cache.waited else {}),
              "model/accuracy": float(predictions["correct"].mean()) if len(predictions) else float("nan"),
              "model/vqa_accuracy": float(predictions["vqa_accuracy"].mean()) if len(predictions) else float("nan"),
              **{f"count/skipped_{reason}": n for reason, n in skipped.items() if n}}
    if len(table):
        undefined = table[[m for m in metric_names() if m in table]].isna().any(axis=1)
        counts["count/undefined_rows"] = int(undefined.sum())
        if "completeness_error" in table:
            counts["method/completeness_error_median"] = float(table["completeness_error"].median())
    tags = {"data_digest": data_digest, "checkpoint_digest": loaded.checkpoint_digest,
            "checkpoint_path": str(Path(checkpoint).resolve()), "map_cache": str(cache.folder.resolve()),
            "backbone": loaded.backbone_description,
            "backbone_variant": str(settings.model.backbone.get("variant", settings.model.backbone.get("type"))),
            "human_map": s.human if s.human != "annotator" else f"annotator {s.annotator}",
            "predictions_cache": "hit" if predictions_hit else "computed",
            "scores_cache": "hit" if hits["scores"] else "computed"}
    if references is not None:
        single = int(len(examples) - (references["reference"] == "human_ceiling").sum())
        if single:
            counts["count/ceiling_single_annotator"] = single
        tags["references_cache"] = "hit" if hits["references"] else "computed"
    if explain is not None:
        tags["explain_cache"] = ", ".join(f"{part} {'hit' if hit else 'computed'}" for part, hit in explain.hits.items())
    return RunOutputs(examples, predictions, table, counts, timings, tags, cache, loaded, geometry, dataset, references,
                      sanity=sanity, explain=explain)
