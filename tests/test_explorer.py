"""The explorer page: its data (merging runs and shards), its escaping, and, in the system Chromium
driven by selenium, its filters, sort, search, click-through and that an injected script never runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vqa_interp.report import explorer
from vqa_interp.report.explorer_page import render

INJECTED = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _column(run_id: str, label: str, method: str) -> dict:
    return {
        "id": run_id,
        "label": label,
        "method": method,
        "model": "embedded",
        "k": 0.1,
        "low": 0.25,
        "high": 0.75,
        "metrics": ["rank_corr", "iou"],
        "headline": ["rank_corr", "iou"],
    }


def _part(run_id: str, label: str, method: str, scores: dict[int, tuple], seed: int) -> dict:
    """One run's entry over questions ``scores``: qid -> (rank_corr, iou, confidence, correct)."""
    rng = np.random.default_rng(seed)
    questions, rows = {}, {}
    for qid, (rank_corr, iou, confidence, correct) in scores.items():
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        humans = rng.random((2, 64, 64))
        text = INJECTED if qid == 3 else f"What colour is shape {qid}?"
        questions[str(qid)] = {
            "question": text,
            "answer": "red" if qid % 2 else 'a "quoted" <b>answer</b>',
            "answer_type": "other" if qid % 3 else "yes/no",
            "question_type": "what color" if qid % 2 else "is the",
            "image_id": qid * 10,
            "image": explorer.image_uri(image),
            "humans": [
                explorer.map_uri(humans.mean(0), attribution=False),
                *(explorer.map_uri(h, attribution=False) for h in humans),
            ],
        }
        band = "low" if confidence < 0.25 else "high" if confidence > 0.75 else "mid"
        rows[str(qid)] = {
            "prediction": "red",
            "target_answer": "red",
            "confidence": confidence,
            "correct": correct,
            "band": band,
            "split": f"{band}_{'correct' if correct else 'wrong'}",
            "scores": {"rank_corr": rank_corr, "iou": iou},
            "floors": {"random": {"rank_corr": 0.0, "iou": 0.05}, "human_ceiling": {"rank_corr": 0.6}},
            "map": explorer.map_uri(rng.random((64, 64)), attribution=True),
        }
    return {
        "version": 1,
        "title": label,
        "questions": questions,
        "columns": [_column(run_id, label, method)],
        "rows": {run_id: rows},
    }


# qid: (rank_corr, iou, confidence, correct); column B's rank_corr is the negation of A's, plus one NaN
A = {
    1: (0.30, 0.2, 0.9, True),
    2: (0.10, 0.1, 0.1, False),
    3: (0.50, 0.3, 0.5, True),
    4: (-0.20, 0.0, 0.8, False),
    5: (0.05, 0.4, 0.95, True),
}
B = {q: (None if q == 5 else -v[0] / 2, v[1], v[2], v[3]) for q, v in A.items()}


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    data = explorer.merge(
        [_part("runA", "saliency", "saliency", A, 0), _part("runB", "gradcam", "gradcam", B, 1)],
        "sweep: method=saliency,gradcam",
        labels={"runA": "method=saliency"},
    )
    return explorer.write(data, tmp_path_factory.mktemp("explorer") / "explorer.html")


def test_merge_keeps_one_column_per_run_and_the_union_of_questions():
    first = _part("r1", "one", "saliency", {1: A[1], 2: A[2]}, 0)
    second = _part("r2", "two", "gradcam", {2: A[2], 4: A[4]}, 1)
    data = explorer.merge([first, None, second], "t", labels={"r2": "method=gradcam"})
    assert list(data["questions"]) == ["1", "2", "4"]
    assert [c["label"] for c in data["columns"]] == ["one", "method=gradcam"]
    assert set(data["rows"]["r1"]) == {"1", "2"} and set(data["rows"]["r2"]) == {"2", "4"}
    shards = explorer.merge_shards([first, _part("r3", "one", "saliency", {4: A[4]}, 2)], "merged", "m")
    assert [c["id"] for c in shards["columns"]] == ["merged"] and set(shards["rows"]["merged"]) == {"1", "2", "4"}
    assert explorer.merge([], "t") is None


def test_every_string_from_the_data_is_escaped(page):
    text = page.read_text()
    assert INJECTED not in text and "<script>window.__pwned" not in text and 'onerror="' not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert text.count("<script>") == 1  # the page's own script only
    # each picture is stored once: a CSS class per image and per map, however many views show it
    assert text.count("data:image/jpeg") == 5 and text.count("data:image/png") == 5 * 3 + 2 * 5


def test_runs_that_differ_only_in_k_share_one_map_column_with_scores_per_k():
    first = _part("runK1", "method=saliency k=0.05", "saliency", A, 0)
    second = _part("runK2", "method=saliency k=0.1", "saliency", A, 0)  # the same maps
    for run_id, k, part in (("runK1", 0.05, first), ("runK2", 0.1, second)):
        part["columns"][0]["k"] = k
        for qid, row in part["rows"][run_id].items():
            row["scores"]["iou"] = k * int(qid)  # iou changes with k
    other = _part("runG", "method=gradcam k=0.05", "gradcam", B, 1)
    folded = explorer.fold_k(explorer.merge([first, second, other], "k sweep"))
    assert [c["label"] for c in folded["columns"]] == ["method=saliency", "method=gradcam k=0.05"]
    column = folded["columns"][0]
    assert column["metrics"] == ["rank_corr", "iou_k0.05", "iou_k0.1"] and column["k"] == [0.05, 0.1]
    row = folded["rows"]["runK1"]["2"]
    assert row["scores"] == {"rank_corr": 0.10, "iou_k0.05": 0.1, "iou_k0.1": 0.2}
    assert "iou_k0.1" in render(folded)
    # different maps (another seed) are never folded
    third = _part("runK3", "method=saliency k=0.2", "saliency", A, 5)
    third["columns"][0]["k"] = 0.2
    assert len(explorer.fold_k(explorer.merge([first, third], "x"))["columns"]) == 2


def test_maps_are_shown_the_same_whatever_their_positive_scale():
    rng = np.random.default_rng(3)
    values = rng.random((32, 32))
    assert explorer.map_uri(values, attribution=True) == explorer.map_uri(values * 7.5, attribution=True)
    assert explorer.map_uri(values, attribution=False) == explorer.map_uri(values * 3.0, attribution=False)
    flat = explorer.map_uri(np.zeros((8, 8)), attribution=False)  # an empty human map: no division by 0
    assert flat.startswith("data:image/png;base64,")


def _pixels(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))


def test_human_and_method_maps_share_one_colour_scale_and_low_values_leave_the_image_visible():
    """One colormap for both kinds, each map to its own peak, opacity growing with the value (a map
    that is 0 over most of the image leaves that part of the image as it is); a signed map keeps its
    sign: positive and negative parts in different hues of a diverging colormap."""
    values = np.zeros((64, 64))
    values[8:24, 8:24] = 1.0
    human, method = explorer.map_uri(values, attribution=False), explorer.map_uri(values * 3, attribution=True)
    assert human == method
    rgba = _pixels(human)
    assert rgba[40:, 40:, 3].max() == 0 and rgba[12:20, 12:20, 3].min() > 200  # transparent where 0
    signed = values.copy()
    signed[40:56, 40:56] = -1.0
    assert explorer.is_signed(signed) and not explorer.is_signed(values) and not explorer.is_signed(values - 0.01)
    rgba = _pixels(explorer.map_uri(signed, attribution=True))
    positive, negative = rgba[16, 16, :3].astype(int), rgba[48, 48, :3].astype(int)
    assert positive[0] > positive[2] and negative[2] > negative[0]  # red positive, blue negative
    assert rgba[30, 30, 3] == 0 and rgba[48, 48, 3] == rgba[16, 16, 3]  # opacity = magnitude


def test_the_page_filters_sorts_searches_and_opens_in_a_real_browser(page, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.body.dataset.ready === '1'"))

    def shown() -> list[int]:
        return [
            int(c.get_attribute("data-qid"))
            for c in browser.find_elements(By.CSS_SELECTOR, ".card")
            if c.is_displayed()
        ]

    def choose(name: str, value: str) -> None:
        Select(browser.find_element(By.NAME, name)).select_by_value(value)

    assert browser.execute_script("return window.__pwned") is None
    assert INJECTED in browser.find_element(By.CSS_SELECTOR, ".card[data-qid='3'] .q").text
    # the default sort: the first headline metric of the first column, high first
    assert shown() == [3, 1, 2, 5, 4]
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    choose("correct", "wrong")
    assert shown() == [2, 4]
    choose("correct", "all")
    choose("band", "high")
    assert shown() == [1, 5, 4]
    choose("band", "all")
    # a difference between two columns: A - B = 1.5 A for questions 1-4, none for 5 (last)
    choose("sort_b", "c1")
    choose("order", "asc")
    assert shown() == [4, 2, 1, 3, 5]
    choose("sort_b", "")
    choose("sort", "iou")
    choose("order", "desc")
    assert shown() == [5, 3, 1, 2, 4]
    choose("answer_type", "yes/no")
    assert shown() == [3]
    choose("answer_type", "all")
    search = browser.find_element(By.NAME, "search")
    search.send_keys("shape")
    assert sorted(shown()) == [1, 2, 4, 5]
    search.clear()
    search.send_keys("4")
    assert shown() == [4]
    search.clear()
    search.send_keys(" ")
    assert browser.find_element(By.ID, "count").text == "5 of 5 questions shown"
    # only column B's tiles: question 5 has a B tile too (its rank_corr is missing, not its map)
    browser.find_element(By.CSS_SELECTOR, "input[name='col'][value='c0']").click()
    tiles = [t for t in browser.find_elements(By.CSS_SELECTOR, "summary .tile[data-col]") if t.is_displayed()]
    assert {t.get_attribute("data-col") for t in tiles} == {"c1"} and len(tiles) == 5
    # the click-through: the full view, every annotator and the question's floors
    card = browser.find_element(By.CSS_SELECTOR, ".card[data-qid='1']")
    full = card.find_element(By.CSS_SELECTOR, ".full")
    assert not full.is_displayed()
    card.find_element(By.TAG_NAME, "summary").click()
    assert full.is_displayed() and card.find_element(By.TAG_NAME, "details").get_attribute("open") is not None
    assert full.find_element(By.CSS_SELECTOR, ".pic").size["width"] == 320
    assert "annotator 2" in full.text and "human_ceiling" in full.text and "Floors and ceiling" in full.text
    # the full view shows the checked columns only (column A is unchecked)
    assert [
        t.get_attribute("data-full-col")
        for t in full.find_elements(By.CSS_SELECTOR, ".tile[data-full-col]")
        if t.is_displayed()
    ] == ["c1"]
    # a floor the same for every column is one row, not one per column
    floors = full.find_element(By.TAG_NAME, "table")
    assert "every column" in floors.text and len(floors.find_elements(By.TAG_NAME, "tr")) == 1 + 2
    # a label breaks after "=", never inside a word
    assert "method=<wbr>saliency" in page.read_text()
    browser.save_screenshot(str(tmp_path / "explorer_open.png"))
    assert browser.execute_script("return window.__pwned") is None
    keep = os.environ.get("VQA_INTERP_SCREENSHOTS")  # a folder to keep the screenshots in, to look at
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, Path(keep) / png.name)


def test_the_display_scale_is_captums():
    """The scale a map is shown at equals Captum's visualisation threshold (outlier_perc=2), with ties,
    zeros and a single hot pixel; a map of zeros is shown empty."""
    from captum.attr._utils.visualization import _cumulative_sum_threshold

    from vqa_interp.report.map_colours import display_scale

    rng = np.random.default_rng(0)
    hot = np.zeros((16, 16))
    hot[3, 4] = 9.0
    for values in (
        rng.random((32, 32)),
        np.round(rng.random((32, 32)), 1),
        hot,
        np.ones((8, 8)),
        np.where(rng.random((20, 20)) > 0.7, rng.random((20, 20)), 0.0),
    ):
        assert display_scale(values) == pytest.approx(_cumulative_sum_threshold(values, 98))
    assert display_scale(np.zeros((4, 4))) == 0.0
