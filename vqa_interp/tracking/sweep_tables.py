"""A sweep parent's tables read from its children's artifacts: their scenario medians, the
paired method comparisons and the model comparison on the same questions, each method's means by
scenario (the paper's Figure 2) and the side-by-side panel of every method's map."""

from __future__ import annotations

import pandas as pd

from vqa_interp.tracking.store import download_table


def scenario_medians(client, runs) -> pd.DataFrame:
    """The ``scenario_medians`` table of every finished child, stacked with its run's axes."""
    frames = []
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        try:
            text = client.download_artifacts(run.info.run_id, "tables/scenario_medians.csv")
            frame = pd.read_csv(text)
        except Exception:  # a child without the table (e.g. empty run) is left out
            continue
        frame.insert(0, "run_id", run.info.run_id)
        for axis in ("method.name", "k", "confidence.low", "confidence.high"):
            frame.insert(1, axis, run.data.params.get(axis))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def method_pairs(client, runs, tmp: str):
    """The children's methods compared within each setting (a sweep over models or data compares
    each setting's methods on its own): ``([(label, pairs, ranking, entries)], all entries)``, the
    label naming the params that set a setting apart ("" when there is one), [] for a setting with
    fewer than two methods. See :mod:`vqa_interp.analysis.comparisons`."""
    from vqa_interp.analysis.comparisons import method_ranking, paired_method_tests, setting_labels, setting_of

    entries = []
    for run in runs:
        if run.data.params.get("data.num_shards", "1") != "1":
            continue  # a shard holds part of the questions: its merged run stands for it
        table = download_table(client, run.info.run_id, "per_example", tmp + f"/{run.info.run_id}")
        if table is None or table.empty:
            continue
        params = run.data.params
        entries.append(
            {
                "method": params.get("method.name"),
                "k": float(params.get("k", "nan")),
                "setting": setting_of(params),
                "table": table,
                "params": params,
                "run_id": run.info.run_id,
                "model": params.get("model.name", ""),
                "model_setting": setting_of(params, ("model.", "preprocessing.size")),
                "map_for_example": params.get("analysis.map_for_example", "prediction"),
            }
        )
    if not entries:
        return [], entries
    options = test_options(runs[0].data.params)
    labels = setting_labels([e["setting"] for e in entries])
    out = []
    for setting, label in labels.items():
        part = [e for e in entries if e["setting"] == setting]
        if len({(e["k"], e["method"]) for e in part}) < 2:
            continue
        pairs = paired_method_tests(part, **options)
        if not pairs.empty:
            out.append((label, pairs, method_ranking(part, n_bootstrap=options["n_bootstrap"]), part))
    return out, entries


def test_options(params: dict) -> dict:
    """The paired tests' options from a run's params (``analysis.bootstrap``, ``analysis.min_group``,
    ``analysis.min_images``)."""
    return {
        "n_bootstrap": int(params.get("analysis.bootstrap", 2000)),
        "min_questions": int(params.get("analysis.min_group", 10)),
        "min_images": int(params.get("analysis.min_images", 5)),
    }


MODEL_TARGETS = {
    "label": "the labelled answer, which every model explains (the default comparison)",
    "prediction": "each model's own prediction (confounded by accuracy: shown beside, never alone)",
}


def model_comparison(entries: list[dict], options: dict) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The children's models compared on the same questions, for each method and target (``label``:
    every model's map of the labelled answer; ``prediction``: each model's map of its own prediction):
    paired tests and the ranking, with ``method`` and ``target`` columns (None, None when no method ran
    on two models)."""
    from vqa_interp.analysis.comparisons import method_ranking, model_entries, paired_method_tests

    models = model_entries(entries)
    if not models:
        return None, None
    pairs, rankings = [], []
    for target in MODEL_TARGETS:
        for method in sorted({e["label"] for e in models}):
            mine = [{**e, "map_for_example": target} for e in models if e["label"] == method]
            if len({e["method"] for e in mine}) < 2:
                continue
            pairs.append(
                paired_method_tests(mine, **options)
                .rename(columns={"method_a": "model_a", "method_b": "model_b"})
                .assign(method=method, target=target)
            )
            rankings.append(
                method_ranking(mine, n_bootstrap=options["n_bootstrap"])
                .rename(columns={"method": "model"})
                .assign(method=method, target=target)
            )
    if not pairs:
        return None, None
    return pd.concat(pairs, ignore_index=True), pd.concat(rankings, ignore_index=True)


def method_means_by_run(client, runs, tmp: str) -> pd.DataFrame:
    """Figure 2 of the paper as a table: one row per finished child (method, k), mean confidence and
    the mean of every metric over the child's rows."""
    frames = []
    for run in runs:
        frame = download_table(client, run.info.run_id, "method_means", tmp)
        if frame is None or frame.empty:
            continue
        frame.insert(1, "k", run.data.params.get("k"))
        frame.insert(0, "run_id", run.info.run_id[:8])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def side_by_side_panel(client, runs, tmp: str):
    """Figures 9-10 across the children: the same questions with every method's map (one child per
    method: maps do not depend on k or thresholds). None when no child logged a panel."""
    import numpy as np

    from vqa_interp.analysis import sweep_figures as figures
    from vqa_interp.tracking.store import download_artifact

    cases, maps_by_method = None, {}
    for run in runs:
        method = run.data.params.get("method.name", run.info.run_name)
        if method in maps_by_method:
            continue
        archive = download_artifact(client, run.info.run_id, "panels/panel.npz", tmp + f"/{run.info.run_id}")
        captions = download_table(client, run.info.run_id, "panel_cases", tmp + f"/{run.info.run_id}")
        if archive is None or captions is None:
            continue
        with np.load(archive) as arrays:
            maps_by_method[method] = {
                int(q): arrays[f"{q}_map"] for q in captions["question_id"] if f"{q}_map" in arrays
            }
            if cases is None:
                cases = [
                    {"question_id": int(q), "image": arrays[f"{q}_image"], "human": arrays[f"{q}_human"], "title": t}
                    for q, t in zip(captions["question_id"], captions["title"])
                ]
    if not cases or not maps_by_method:
        return None
    return figures.methods_side_by_side(cases, maps_by_method)
