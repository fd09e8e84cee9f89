"""The stages of one run as plain functions: data -> predictions -> maps -> scores.

Each stage takes and returns plain data (dataclasses, arrays, DataFrames) so a notebook can call
any of them alone; :func:`execute` chains them for ``vqa_interp.run``, which adds Hydra and
MLflow around it.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from vqa_interp.attribution import MapRequest, compute_maps, make_attributor
from vqa_interp.cache import MapCache
from vqa_interp.checkpoint import LoadedModel, load_model
from vqa_interp.data import (DataPaths, Example, InputGeometry, Selection, digest_examples, image_size,
                             load_examples, load_human_maps, load_image, normalize_answer, resolve_paths,
                             vqa_accuracy)
from vqa_interp.errors import CheckpointError
from vqa_interp.scoring import METRICS, ScoringOptions, prepare_map, score_against_annotators
from vqa_interp.signature import short_signature
from vqa_interp.text import encode_questions

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ data
def prepare_data_root(cfg: DictConfig) -> Path | None:
    """The data folder: generated on first use for the embedded benchmark, else ``data.root``."""
    if cfg.data.name != "embedded":
        return Path(cfg.data.root) if cfg.data.root else None
    if cfg.data.root:
        return Path(cfg.data.root)
    from vqa_interp.embedded import GENERATOR_VERSION, generate_embedded

    d = cfg.data
    signature = short_signature({"generator": GENERATOR_VERSION,
                                 **{k: d[k] for k in ("seed", "n_train_images", "n_val_images")}})
    return generate_embedded(Path(cfg.paths.home) / "data" / f"embedded-{signature}", seed=d.seed,
                             n_train_images=d.n_train_images, n_val_images=d.n_val_images)


def select_examples(cfg: DictConfig, data_root: Path | None) -> tuple[DataPaths, Selection]:
    d = cfg.data
    paths = resolve_paths(data_root, split=d.split, questions=d.questions, annotations=d.annotations,
                          images=d.images, human_maps=d.human_maps)
    ids = list(d.question_ids) if d.question_ids is not None else None
    selection = load_examples(paths, limit=d.limit, question_ids=ids, num_shards=d.num_shards, shard=d.shard,
                              skip_missing_images=d.skip_missing_images)
    return paths, selection


# ------------------------------------------------------------------ model
def resolve_backbone_weights(cfg: DictConfig) -> Path | None:
    if cfg.model.backbone_weights:
        return Path(cfg.model.backbone_weights)
    if cfg.model.backbone.type != "resnet":
        return None
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob(f"resnet{cfg.model.backbone.depth}-*.pth"))
    if found:
        return found[0]
    raise CheckpointError(
        f"model.backbone_weights is not set and no resnet{cfg.model.backbone.depth}-*.pth is in {hub}. "
        "Place torchvision's resnet152-394f9c45.pth (https://download.pytorch.org/models/resnet152-394f9c45.pth) "
        "there or set model.backbone_weights=FILE; nothing is downloaded at run time.")


def preflight_model_files(cfg: DictConfig) -> None:
    """Fail before any run or model work when a named model file is missing."""
    from vqa_interp.checkpoint import load_backbone_weights, read_checkpoint

    if cfg.model.checkpoint and not Path(cfg.model.checkpoint).is_file():
        read_checkpoint(cfg.model.checkpoint)  # raises the explanatory CheckpointError
    weights = resolve_backbone_weights(cfg)
    if weights is not None and not Path(weights).is_file():
        load_backbone_weights(weights)  # raises the explanatory CheckpointError


def checkpoint_path(cfg: DictConfig, data_root: Path | None) -> Path:
    if cfg.model.checkpoint:
        return Path(cfg.model.checkpoint)
    from vqa_interp.train import ensure_embedded_model

    return ensure_embedded_model(cfg, data_root)


def load_vqa_model(cfg: DictConfig, checkpoint: Path) -> LoadedModel:
    backbone_spec = OmegaConf.to_container(cfg.model.backbone, resolve=True)
    loaded = load_model(checkpoint, backbone_spec, resolve_backbone_weights(cfg))
    loaded.model.to(cfg.device)
    return loaded


# ------------------------------------------------------------------ predictions
def image_loader(examples: Sequence[Example], geometry: InputGeometry) -> Callable[[list[int]], torch.Tensor]:
    """``rows -> [len(rows), 3, S, S]`` float32; images are read when needed, never all held."""
    def load(rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.stack([load_image(examples[r].image_path, geometry) for r in rows]))
    return load


def predict(loaded: LoadedModel, examples: Sequence[Example], load_images, q: torch.Tensor, q_len: torch.Tensor,
            *, batch_size: int, device: str = "cpu") -> pd.DataFrame:
    """One row per example: prediction, confidence (softmax p), correct, VQA accuracy, label index.

    ``correct`` means the prediction equals the labelled answer (``multiple_choice_answer``,
    normalised); ``vqa_accuracy`` is the official soft score against the 10 human answers.
    """
    answers = loaded.answers
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
                prediction = answers[int(predicted[j])]
                rows.append({
                    "question_id": ex.question_id, "image_id": ex.image_id, "question": ex.question,
                    "answer": label, "answer_type": ex.answer_type, "prediction": prediction,
                    "confidence": float(confidence[j]), "correct": prediction == label,
                    "vqa_accuracy": vqa_accuracy(prediction, ex.answers),
                    "label_index": loaded.answer_vocab.get(label, -1), "prediction_index": int(predicted[j]),
                    "row": i,
                })
    return pd.DataFrame(rows)


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
def map_cache_for(cfg: DictConfig, data_digest: str, checkpoint_digest: str) -> MapCache:
    """The map set of this run, keyed by everything its maps depend on (not k, thresholds, scoring)."""
    method = OmegaConf.to_container(cfg.method, resolve=True)
    return MapCache(Path(cfg.paths.cache) / "maps", {
        "data": data_digest, "checkpoint": checkpoint_digest, "method": method,
        "channel_reduction": cfg.preprocessing.channel_reduction,
        "input": OmegaConf.to_container(cfg.model.input, resolve=True),
        "backbone": OmegaConf.to_container(cfg.model.backbone, resolve=True),
    })


def attribute_targets(loaded: LoadedModel, cfg: DictConfig, targets: pd.DataFrame, cache: MapCache,
                      load_images, q: torch.Tensor, q_len: torch.Tensor) -> None:
    """Compute the maps the cache lacks (batched), writing each to the cache as it is made."""
    keys = targets.drop_duplicates("map_key")
    missing = [MapRequest(r.map_key, r.row, r.row, r.target_index) for r in keys.itertuples() if not cache.has(r.map_key)]
    cache.hits += len(keys) - len(missing)
    cache.misses += len(missing)
    if not missing:
        return
    attribute = make_attributor(loaded.model, cfg.method.name, OmegaConf.to_container(cfg.method, resolve=True))
    maps = compute_maps(loaded.model, attribute, missing, load_images, q, q_len,
                        batch_size=cfg.attribution.batch_size, channel_reduction=cfg.preprocessing.channel_reduction,
                        device=cfg.device)
    for request, array in tqdm(maps, total=len(missing), desc=f"attribute ({cfg.method.name})"):
        cache.store(request.key, array)


# ------------------------------------------------------------------ scores
def human_maps_for(example: Example, geometry: InputGeometry, mode: str, annotator: int) -> np.ndarray | None:
    """The human map(s) an attribution is scored against: ``[n, S, S]`` (n = 1 unless mode=each).

    ``mean``: the mean of the annotators' maps; ``annotator``: annotator ``n`` only (None when
    the question has no such annotator); ``each``: every annotator (scores are averaged).
    """
    paths = example.human_map_paths
    if mode == "annotator":
        chosen = [p for p in paths if p.stem.endswith(f"_{annotator}")]
        if not chosen:
            return None
        paths = chosen
    maps = load_human_maps(paths, image_size(example.image_path), geometry)
    return maps.mean(axis=0, keepdims=True) if mode == "mean" else maps


def score_targets(examples: Sequence[Example], predictions: pd.DataFrame, targets: pd.DataFrame,
                  cache: MapCache, geometry: InputGeometry, options: ScoringOptions, *, human_mode: str,
                  annotator: int, method: str, workers: int = 2) -> tuple[pd.DataFrame, Counter]:
    """The per-example table: one row per (question, method, target) with every metric.

    Each question's human maps are loaded and prepared once and reused for all its targets.
    ``workers > 1`` scores questions on threads (rows keep the targets' order). NumPy's sort
    releases the GIL, but on these 2-core VMs two threads were not faster (5.1 s vs 5.6 s for
    the default run's 406 pairs: page faults of the threads' malloc arenas serialise), so the
    default is 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vqa_interp.preprocessing import resize_maps

    by_question = predictions.set_index("question_id")

    def score_question(item) -> list[dict] | None:
        question_id, group = item
        example = examples[int(group["row"].iloc[0])]
        humans = human_maps_for(example, geometry, human_mode, annotator)
        if humans is None:
            return None
        prepared_h = [prepare_map(m, options) for m in resize_maps(humans, options.size)]
        info = by_question.loc[question_id]
        attributions = resize_maps(np.stack([cache.load(k) for k in group["map_key"]]), options.size)
        rows = []
        for t, attribution in zip(group.itertuples(index=False), attributions):
            metrics = score_against_annotators(prepare_map(attribution, options), prepared_h, options)
            rows.append({
                "question_id": question_id, "image_id": int(info["image_id"]), "question": info["question"],
                "answer": info["answer"], "answer_type": info["answer_type"], "prediction": info["prediction"],
                "confidence": float(info["confidence"]), "correct": bool(info["correct"]),
                "vqa_accuracy": float(info["vqa_accuracy"]), "method": method, "target": t.target,
                "target_answer": info["answer"] if t.target == "label" else info["prediction"],
                "on_prediction": bool(t.on_prediction), "map_key": t.map_key, **metrics,
            })
        return rows

    skipped: Counter = Counter()
    rows: list[dict] = []
    groups = list(targets.groupby("question_id", sort=False))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in tqdm(pool.map(score_question, groups), total=len(groups), desc="score", leave=False):
            if result is None:
                skipped["annotator_missing"] += 1
            else:
                rows.extend(result)
    return pd.DataFrame(rows), skipped


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


@contextmanager
def timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[f"time_{name}_s"] = time.perf_counter() - start


def scoring_options(cfg: DictConfig) -> ScoringOptions:
    p = cfg.preprocessing
    return ScoringOptions(k=float(cfg.k), size=int(p.size), steps=tuple(p.steps), eps=float(p.eps),
                          tie_policy=cfg.scoring.tie_policy, dice=cfg.scoring.dice)


def execute(cfg: DictConfig, selection: Selection, data_root: Path | None, timings: dict,
            on_predictions: Callable[[pd.DataFrame], None] | None = None) -> RunOutputs:
    """Model -> predictions -> maps -> scores for a validated config and a data selection.

    ``on_predictions`` receives the predictions as soon as they exist (the run logs them then, so a
    later failure loses nothing already computed; maps are kept by the cache as they are made).
    """
    examples = selection.examples
    with timed(timings, "model"):
        checkpoint = checkpoint_path(cfg, data_root)
        loaded = load_vqa_model(cfg, checkpoint)
    geometry = InputGeometry(cfg.model.input.size, cfg.model.input.central_fraction)
    load_images = image_loader(examples, geometry)
    q, q_len = encode_questions([e.question for e in examples], loaded.question_vocab)
    with timed(timings, "predict"):
        predictions = predict(loaded, examples, load_images, q, q_len, batch_size=cfg.attribution.batch_size,
                              device=cfg.device)
    if on_predictions is not None:
        on_predictions(predictions)
    targets, skipped_targets = plan_targets(predictions, cfg.attribution.target_policy)
    with timed(timings, "digest"):
        data_digest = digest_examples(examples)
    cache = map_cache_for(cfg, data_digest, loaded.checkpoint_digest)
    with timed(timings, "attribution"):
        attribute_targets(loaded, cfg, targets, cache, load_images, q, q_len)
    with timed(timings, "scoring"):
        table, skipped_scores = score_targets(examples, predictions, targets, cache, geometry, scoring_options(cfg),
                                              human_mode=cfg.scoring.human, annotator=cfg.scoring.annotator,
                                              method=cfg.method.name, workers=cfg.scoring.workers)
    skipped = selection.skipped + skipped_targets + skipped_scores
    counts = {"n_questions": len(examples), "n_maps": len(targets), "n_rows": len(table),
              "map_cache_hits": cache.hits, "map_cache_misses": cache.misses,
              "model_accuracy": float(predictions["correct"].mean()) if len(predictions) else float("nan"),
              "model_vqa_accuracy": float(predictions["vqa_accuracy"].mean()) if len(predictions) else float("nan"),
              **{f"skipped_{reason}": n for reason, n in skipped.items()}}
    if len(table):
        for metric in METRICS:
            counts[f"undefined_{metric}"] = int(table[metric].isna().sum())
    tags = {"data_digest": data_digest, "checkpoint_digest": loaded.checkpoint_digest,
            "checkpoint_path": str(Path(checkpoint).resolve()), "map_cache": str(cache.folder.resolve()),
            "backbone": loaded.backbone_description,
            "backbone_variant": str(cfg.model.backbone.get("variant", cfg.model.backbone.type))}
    return RunOutputs(examples, predictions, table, counts, timings, tags, cache, loaded, geometry)
