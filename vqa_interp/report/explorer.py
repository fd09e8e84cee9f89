"""The explorer's data: every question of a run with its image, human maps and, per run (a
*column*), the map, prediction, confidence, scores and floors of that question.

Plain JSON with the pictures inline as data URIs (``explorer/explorer.json``, logged by every run),
so that a sweep parent, a merged shard run and the report build one page from their runs' entries
without reading the dataset again; :mod:`vqa_interp.report.explorer_page` renders it.

Layout::

    {"version": 1, "title": str,
     "questions": {qid: {"question", "answer", "answer_type", "question_type", "image_id",
                         "image": uri, "humans": [uri of the mean, uri of annotator 1, ...]}},
     "columns": [{"id", "label", "method", "model", "k", "low", "high", "metrics", "headline", "signed"}],
     "rows": {column id: {qid: {"prediction", "target_answer", "confidence", "correct", "band",
                                "split", "scores": {metric: float|None},
                                "floors": {reference: {metric: float|None}}, "map": uri}}}}
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from vqa_interp.report.map_colours import DIVERGING, MAX_OPACITY, SEQUENTIAL, colour_table, display_scale, is_signed

EXPLORER_JSON = "explorer/explorer.json"
EXPLORER_HTML = "explorer.html"
IMAGE_PX = 224  # the stored image (the full view shows it at 320 px, a card at 96 px)
MAP_PX = 64  # the stored maps: smooth at 96 px, still readable at 320 px
FLOOR_METRICS = 3  # the headline metrics shown for each floor of a question
_PICTURES: dict = {}  # (question, image file, geometry) -> (image URI, human map URIs)


def _uri(rgb: np.ndarray, quality: int = 82) -> str:
    """A JPEG data URI of an ``[H, W, 3]`` uint8 image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_uri(image: np.ndarray) -> str:
    """``[S, S, 3]`` uint8 -> a ``IMAGE_PX`` JPEG data URI."""
    from PIL import Image

    return _uri(np.asarray(Image.fromarray(image).resize((IMAGE_PX, IMAGE_PX), Image.BILINEAR)))


def map_uri(values: np.ndarray, *, attribution: bool) -> str:
    """``[S, S]`` -> a ``MAP_PX`` RGBA PNG data URI, drawn alike for human and method maps (Captum's
    blended view): the map divided by its display scale (:func:`display_scale`), its colour from one colormap
    (:data:`SEQUENTIAL`; a signed attribution map, see :func:`is_signed`, from :data:`DIVERGING`, red
    positive and blue negative), its opacity the magnitude, so the dimmed image shows where the map is low."""
    from PIL import Image

    values = np.nan_to_num(np.asarray(values, np.float64))
    signed = attribution and is_signed(values)
    peak = display_scale(np.abs(values) if signed else np.clip(values, 0.0, None))
    shown = values / peak if peak > 0 else np.zeros_like(values)
    small = np.asarray(Image.fromarray(shown.astype(np.float32), mode="F").resize((MAP_PX, MAP_PX), Image.BILINEAR))
    if signed:
        index = np.rint((np.clip(small, -1.0, 1.0) + 1.0) * 127.5).astype(np.intp)
    else:
        index = np.rint(np.clip(small, 0.0, 1.0) * 255).astype(np.intp)
    alpha = np.rint(np.clip(np.abs(small), 0.0, 1.0) * 255 * MAX_OPACITY).astype(np.uint8)
    rgba = np.dstack([colour_table(DIVERGING if signed else SEQUENTIAL)[index], alpha])
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _number(value) -> float | None:
    """A JSON-safe float (None for NaN, inf or missing)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run_data(outputs, examples: pd.DataFrame, settings, run_id: str, label: str) -> dict | None:
    """One run's explorer entry. ``examples``: the analysed rows, one per question (the map that
    stands for the question); None when the run scored nothing."""
    from vqa_interp.analysis.statistics import confidence_level
    from vqa_interp.data.datasets import human_maps_for
    from vqa_interp.metrics.registry import headline_metrics

    if examples is None or examples.empty:
        return None
    a = settings.analysis
    read_humans = outputs.dataset.human_maps if outputs.dataset is not None else human_maps_for
    by_id = {e.question_id: e for e in outputs.examples}
    metrics = [m for m in outputs.metrics if m in examples]
    floors = _floors_by_question(outputs.references)
    bands = confidence_level(examples["confidence"].astype(float), a.low, a.high)
    questions, rows, signed = {}, {}, False
    for band, row in zip(bands, examples.itertuples(index=False)):
        qid = int(row.question_id)
        example = by_id.get(qid)
        if example is None:
            continue
        pictures = _pictures(example, outputs.geometry, read_humans)
        questions[str(qid)] = {
            "question": str(row.question),
            "answer": str(row.answer),
            "answer_type": str(row.answer_type),
            "question_type": str(row.question_type),
            "image_id": int(row.image_id),
            "image": pictures[0],
            "humans": list(pictures[1]),
        }
        correct = bool(row.correct)
        rows[str(qid)] = {
            "prediction": str(row.prediction),
            "target_answer": str(row.target_answer),
            "confidence": _number(row.confidence),
            "correct": correct,
            "band": str(band),
            "split": f"{band}_{'correct' if correct else 'wrong'}",
            "scores": {m: _number(getattr(row, m)) for m in metrics},
            "floors": floors.get(qid, {}),
            "map": map_uri(values := outputs.cache.load(row.map_key), attribution=True),
        }
        signed = signed or is_signed(values)
    column = {
        "id": run_id,
        "label": label,
        "method": settings.attribution.method,
        "model": getattr(settings.model, "name", ""),
        "k": settings.scoring.k,
        "low": a.low,
        "high": a.high,
        "metrics": metrics,
        "headline": [m for m in headline_metrics() if m in metrics][:FLOOR_METRICS],
        "signed": signed,
    }
    return {"version": 1, "title": label, "questions": questions, "columns": [column], "rows": {run_id: rows}}


def _floors_by_question(references: pd.DataFrame | None) -> dict:
    """Question id -> reference -> the headline metrics' values of the run's floors and ceiling."""
    from vqa_interp.metrics.registry import headline_metrics

    floors: dict = {}
    if references is None or not len(references):
        return floors
    shown = [m for m in headline_metrics(FLOOR_METRICS) if m in references]
    for row in references[["question_id", "reference", *shown]].itertuples(index=False):
        floors.setdefault(int(row[0]), {})[row[1]] = {m: _number(v) for m, v in zip(shown, row[2:])}
    return floors


def _pictures(example, geometry, read_humans) -> tuple:
    """``(image URI, [mean human map URI, each annotator's URI ...])`` of a question, encoded once a
    process (the jobs of a sweep in one process show the same questions)."""
    from vqa_interp.data.images import load_display_image

    key = (example.question_id, str(example.image_path), repr(geometry))  # the image path names the dataset's root
    pictures = _PICTURES.get(key)
    if pictures is None:
        each = read_humans(example, geometry, "each")
        humans = (
            []
            if each is None or not len(each)
            else [map_uri(each.mean(0), attribution=False), *(map_uri(h, attribution=False) for h in each)]
        )
        pictures = (image_uri(load_display_image(example.image_path, geometry)), humans)
        if len(_PICTURES) > 20000:
            _PICTURES.clear()
        _PICTURES[key] = pictures
    return pictures


def merge(parts: list[dict], title: str, labels: dict[str, str] | None = None) -> dict | None:
    """Several runs' entries as one page's data: the union of their questions, one column per run
    (``labels``: column id -> a new label, e.g. the params that differ across a sweep)."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    questions, columns, rows = {}, [], {}
    for part in parts:
        for qid, question in part["questions"].items():
            questions.setdefault(qid, question)
        for column in part["columns"]:
            columns.append({**column, "label": (labels or {}).get(column["id"], column["label"])})
            rows[column["id"]] = part["rows"][column["id"]]
    order = sorted(questions, key=lambda q: (0, int(q), "") if str(q).isdigit() else (1, 0, str(q)))
    return {
        "version": 1,
        "title": title,
        "questions": {q: questions[q] for q in order},
        "columns": columns,
        "rows": rows,
    }


def merge_shards(parts: list[dict], run_id: str, label: str) -> dict | None:
    """The entries of a run's shards as the merged run's one column (their questions are disjoint)."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    rows = {}
    for part in parts:
        for column in part["columns"]:
            rows.update(part["rows"][column["id"]])
    column = {**parts[0]["columns"][0], "id": run_id, "label": label}
    merged = merge([{"questions": p["questions"], "columns": [], "rows": {}} for p in parts], label)
    return {**merged, "columns": [column], "rows": {run_id: rows}}


def write(data: dict, out: Path) -> Path:
    """The page for ``data`` at ``out`` (a file path)."""
    from vqa_interp.report.explorer_page import render

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return out


def page_runs(runs) -> list:
    """The runs that are a page's columns: finished evaluations, a merged run standing for its shards."""
    merged = [r for r in runs if r.data.tags.get("run_kind") == "merged" and r.info.status == "FINISHED"]
    shards = {s for r in merged for s in r.data.tags.get("merged_from", "").split(",")}
    return [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and r.info.run_id not in shards
        and r.data.tags.get("run_kind") in ("evaluation", "merged")
    ]


def column_labels(runs) -> dict[str, str]:
    """Run id -> what sets it apart from the other runs: the Hydra overrides not shared by all of
    them (``method=saliency k=0.1``; a shard's ``data.shard`` dropped), else its run name."""
    overrides = {
        r.info.run_id: [o for o in r.data.tags.get("hydra_overrides", "").split() if not o.startswith("data.shard=")]
        for r in runs
    }
    common = set.intersection(*(set(o) for o in overrides.values())) if overrides else set()
    return {
        r.info.run_id: " ".join(o for o in overrides[r.info.run_id] if o not in common) or r.info.run_name for r in runs
    }


def fold_k(data: dict) -> dict:
    """Columns whose maps are the same question for question and that differ only in ``k`` (k changes
    the scoring, never a map) as one column: its label without ``k=...``, a metric that changes with k
    once per k (``iou_k0.05``), the others once."""
    groups: dict[tuple, list[dict]] = {}
    for column in data["columns"]:
        rows = data["rows"][column["id"]]
        key = (
            column.get("model"),
            column.get("method"),
            column.get("low"),
            column.get("high"),
            tuple(sorted((q, r.get("map")) for q, r in rows.items())),
        )
        groups.setdefault(key, []).append(column)
    if all(len(g) == 1 for g in groups.values()):
        return data
    columns, rows = [], {}
    for group in groups.values():
        if len(group) == 1 or len({c.get("k") for c in group}) < len(group):
            columns += group
            rows.update({c["id"]: data["rows"][c["id"]] for c in group})
            continue
        group = sorted(group, key=lambda c: c.get("k") or 0)
        parts = [data["rows"][c["id"]] for c in group]
        varies = {
            m
            for c in group
            for m in c["metrics"]
            if len({json.dumps([p.get(q, {}).get("scores", {}).get(m) for q in sorted(p)]) for p in parts}) > 1
        }

        def named(metric, column):
            return f"{metric}_k{column.get('k'):g}" if metric in varies else metric

        first = group[0]
        label = " ".join(t for t in first["label"].split() if not t.startswith("k=")) or first["label"]
        metrics = list(dict.fromkeys(named(m, c) for m in first["metrics"] for c in group))
        merged = {}
        for qid, row in parts[0].items():
            scores, floors = {}, {}
            for column, part in zip(group, parts):
                other = part.get(qid, {})
                scores.update({named(m, column): v for m, v in other.get("scores", {}).items()})
                for reference, values in other.get("floors", {}).items():
                    floors.setdefault(reference, {}).update({named(m, column): v for m, v in values.items()})
            merged[qid] = {**row, "scores": scores, "floors": floors}
        columns.append(
            {
                **first,
                "label": label,
                "k": [c.get("k") for c in group],
                "metrics": metrics,
                "headline": list(dict.fromkeys(named(m, c) for m in first["headline"] for c in group)),
            }
        )
        rows[first["id"]] = merged
    return {**data, "columns": columns, "rows": rows}
