"""``explorer.html``: one self-contained page (pictures inline, no server) with a card per question.

A card shows the image, the human map and each column's (run's) map of the question as 96 px
overlays, the question, label, prediction, confidence, correctness and scores; clicking it opens the
full view (320 px, every annotator, every metric, the question's floors). The page is plain HTML
first: every card and value is written here, every string from the data escaped with
:func:`html.escape`, and the pictures are CSS classes defined once (a map is stored once however
many views show it). The script only filters (correct/wrong, confidence band, answer type, question
type, column), searches (question id or words) and sorts (a metric of a column, or the difference
between two columns) the cards already there: it reads ``data-*`` attributes and never writes HTML.
Without scripts (a sandbox that blocks them) every card is shown, each still opens.
"""

from __future__ import annotations

import html
import logging
import re

from vqa_interp.report.map_colours import DIVERGING, SEQUENTIAL, css_gradient

log = logging.getLogger(__name__)
THUMB_PX, FULL_PX = 96, 320
# what may become part of a class or attribute name, and what a picture may be: anything else in a
# run's explorer data (a question id, a metric name, a URI) is dropped before the page is written
SAFE_NAME = re.compile(r"^[A-Za-z0-9_./-]+$")
PICTURE_URI = re.compile(r"^data:image/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}$")

STYLE = f"""
body{{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}}
header{{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 16px;z-index:2}}
header h1{{font-size:18px;margin:0 0 4px}} header p{{margin:2px 0;font-size:12px;color:#555}}
form{{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:12px;align-items:center}}
fieldset{{border:1px solid #ddd;padding:2px 6px;margin:0}} legend{{font-size:11px;color:#666}}
main{{padding:8px 16px}}
.card{{background:#fff;border:1px solid #ddd;border-radius:4px;margin:0 0 8px}}
.card summary{{list-style:none;cursor:pointer;padding:6px;display:flex;gap:10px;align-items:flex-start}}
.card summary::-webkit-details-marker{{display:none}}
.meta{{width:260px;flex:none;font-size:12px}} .meta .q{{font-weight:600;font-size:13px}}
.tiles{{display:flex;flex-wrap:wrap;gap:6px}}
.tile{{margin:0;width:{THUMB_PX}px;font-size:10px;line-height:1.25}}
.tile figcaption{{overflow-wrap:break-word}}
.pic{{position:relative;width:{THUMB_PX}px;height:{THUMB_PX}px;background-size:cover;border-radius:2px}}
.pic.dim::before{{content:'';position:absolute;inset:0;background:inherit;border-radius:2px;
  filter:grayscale(1) brightness(.8) contrast(.85)}}
.ov{{position:absolute;inset:0;background-size:cover}}
.bar{{display:inline-flex;align-items:center;gap:4px;font-size:11px;margin-right:14px}}
.bar span.g{{display:inline-block;width:120px;height:10px;border:1px solid #bbb}}
.full{{padding:6px 10px 12px;border-top:1px solid #eee}}
.full .tiles .tile{{width:{FULL_PX}px;font-size:12px}}
.full .pic{{width:{FULL_PX}px;height:{FULL_PX}px}}
.ok{{color:#17813a}} .bad{{color:#b3261e}}
table{{border-collapse:collapse;font-size:11px;margin:6px 0}} td,th{{border:1px solid #ddd;padding:1px 5px}}
[hidden]{{display:none!important}}
"""

SCRIPT = r"""
(function () {
  const form = document.getElementById('controls');
  const main = document.getElementById('cards');
  const cards = Array.from(main.querySelectorAll('.card'));
  const count = document.getElementById('count');
  const number = (tile, key) => {
    if (!tile) return NaN;
    const v = tile.getAttribute(key);
    return v === null || v === '' ? NaN : parseFloat(v);
  };
  function keyOf(card, metric, a, b) {
    if (metric === 'question_id') return parseFloat(card.dataset.qid);
    const attr = metric === 'confidence' ? 'data-confidence' : 's-' + metric;
    const read = (col) => number(card.querySelector('.tile[data-col="' + col + '"]'),
                                 attr.startsWith('data-') ? attr : 'data-' + attr);
    const value = read(a);
    return b ? value - read(b) : value;
  }
  function apply() {
    const f = new FormData(form);
    const cols = new Set(f.getAll('col'));
    const correct = f.get('correct'), band = f.get('band');
    const at = f.get('answer_type'), qt = f.get('question_type');
    const words = (f.get('search') || '').toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const card of cards) {
      let any = false;
      for (const tile of card.querySelectorAll('summary .tile[data-col]')) {
        const keep = cols.has(tile.dataset.col) &&
          (correct === 'all' || tile.dataset.correct === correct) &&
          (band === 'all' || tile.dataset.band === band);
        tile.hidden = !keep;
        any = any || keep;
      }
      for (const tile of card.querySelectorAll('.full .tile[data-full-col]')) {
        tile.hidden = !cols.has(tile.dataset.fullCol);   // the full view shows the checked columns too
      }
      const text = card.dataset.text.toLowerCase();
      const found = words.every((w) => w === card.dataset.qid || text.includes(w));
      const ok = any && found && (at === 'all' || card.dataset.answerType === at) &&
        (qt === 'all' || card.dataset.questionType === qt);
      card.hidden = !ok;
      if (ok) shown += 1;
    }
    const metric = f.get('sort'), a = f.get('sort_a'), b = f.get('sort_b'), desc = f.get('order') === 'desc';
    const keyed = cards.map((card) => [keyOf(card, metric, a, b), card]);
    keyed.sort((x, y) => {
      const nx = Number.isNaN(x[0]), ny = Number.isNaN(y[0]);
      if (nx || ny) return nx - ny;               // no value: last, whatever the order
      return desc ? y[0] - x[0] : x[0] - y[0];
    });
    for (const [, card] of keyed) main.appendChild(card);
    count.textContent = shown + ' of ' + cards.length + ' questions shown';
  }
  form.addEventListener('input', apply);
  form.addEventListener('change', apply);
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  document.body.dataset.ready = '1';
  apply();
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3g}" if isinstance(value, float) else _e(value)


def _select(name: str, legend: str, options: list[tuple[str, str]], selected: str | None = None) -> str:
    items = "".join(
        f"<option value='{_e(v)}'{' selected' if v == selected else ''}>{_e(text)}</option>" for v, text in options
    )
    return f"<label>{_e(legend)} <select name='{_e(name)}'>{items}</select></label>"


def _css_pictures(data: dict) -> str:
    """Every picture once, as a CSS class: ``i<qid>`` (image), ``h<qid>_<n>`` (human maps: the mean,
    then each annotator), ``m<col>_<qid>`` (a column's map). Only checked data URIs reach the style
    sheet (:func:`checked`)."""
    rules = []
    for qid, q in data["questions"].items():
        rules.append(f".i{qid}{{background-image:url({q['image']})}}" if q["image"] else "")
        rules += [f".h{qid}_{n}{{background-image:url({uri})}}" for n, uri in enumerate(q["humans"]) if uri]
    for c, column in enumerate(data["columns"]):
        rules += [
            f".m{c}_{qid}{{background-image:url({row['map']})}}"
            for qid, row in data["rows"][column["id"]].items()
            if row["map"]
        ]
    return "\n".join(rule for rule in rules if rule)


def checked(data: dict) -> dict:
    """The explorer data with only what is safe to write into a page's names and style sheet:
    questions whose id is not a plain name are dropped (and counted in a warning), metric names
    likewise, pictures that are not ``data:image/png|jpeg;base64,...`` URIs are left blank."""

    def picture(uri):
        return uri if isinstance(uri, str) and PICTURE_URI.match(uri) else None

    questions = {str(q): v for q, v in data["questions"].items() if SAFE_NAME.match(str(q))}
    dropped = len(data["questions"]) - len(questions)
    questions = {
        q: {**v, "image": picture(v.get("image")), "humans": [picture(u) for u in v.get("humans", [])]}
        for q, v in questions.items()
    }
    columns = [
        {
            **c,
            "metrics": [m for m in c["metrics"] if SAFE_NAME.match(str(m))],
            "headline": [m for m in c["headline"] if SAFE_NAME.match(str(m))],
        }
        for c in data["columns"]
    ]
    rows = {
        c["id"]: {
            q: {
                **r,
                "map": picture(r.get("map")),
                "scores": {
                    m: v
                    for m, v in r["scores"].items()
                    if SAFE_NAME.match(str(m)) and (v is None or isinstance(v, (int, float)))
                },
            }
            for q, r in data["rows"][c["id"]].items()
            if q in questions
        }
        for c in data["columns"]
    }
    if dropped:
        log.warning("explorer: %d question(s) with an id that is not a plain name were left out of the page", dropped)
    return {**data, "questions": questions, "columns": columns, "rows": rows}


def _tile(qid: str, overlay: str | None, caption: str, attrs: str = "", dim: bool = True) -> str:
    """A picture: the image (in colour when ``dim`` is off), a map over its dimmed greyscale copy."""
    inner = f"<div class='ov {overlay}'></div>" if overlay else ""
    base = f"pic i{qid}" + (" dim" if dim else "")
    return f"<figure class='tile'{attrs}><div class='{base}'>{inner}</div><figcaption>{caption}</figcaption></figure>"


def colour_bars(data: dict) -> str:
    """The colour bars of the maps on the page: every map's own scale (0 to where its top 2% of mass
    begins, as Captum shows maps); the signed scale where a column's maps carry a sign."""
    bars = [
        f"<span class='bar'>0 <span class='g' style='background:{css_gradient(SEQUENTIAL)}'></span> "
        f"each map's top 2% (human and method maps alike, each to its own scale; more opaque = higher)</span>"
    ]
    if any(c.get("signed") for c in data["columns"]):
        bars.append(
            f"<span class='bar'>- <span class='g' style='background:{css_gradient(DIVERGING)}'></span> "
            f"+ (signed maps: {_e(', '.join(c['label'] for c in data['columns'] if c.get('signed')))})"
            f"</span>"
        )
    return "<p>" + "".join(bars) + "</p>"


def _column_tile(c: int, column: dict, qid: str, row: dict, full: bool) -> str:
    mark = "<span class='ok'>correct</span>" if row["correct"] else "<span class='bad'>wrong</span>"
    metrics = column["metrics"] if full else column["headline"]
    scores = "; ".join(f"{_e(m)} {_fmt(row['scores'].get(m))}" for m in metrics)
    caption = (
        f"<b>{_breakable(column['label'])}</b><br>pred {_e(row['prediction'])} (p={_fmt(row['confidence'])}) {mark}"
        f"<br>{_e(row['split'])}<br>{scores}"
    )
    attrs = f" data-full-col='c{c}'" if full else ""
    if not full:
        values = "".join(f" data-s-{_e(m)}='{'' if v is None else repr(v)}'" for m, v in row["scores"].items())
        attrs = (
            f" data-col='c{c}' data-correct='{'correct' if row['correct'] else 'wrong'}'"
            f" data-band='{_e(row['band'])}' data-confidence='{_e(row['confidence']) if row['confidence'] is not None else ''}'"
            f"{values}"
        )
    return _tile(qid, f"m{c}_{qid}" if row["map"] else None, caption, attrs)


def _breakable(label: str) -> str:
    """``label`` escaped, a line allowed to break after ``=`` and ``,`` (never inside a word)."""
    return _e(label).replace("=", "=<wbr>").replace(",", ",<wbr>")


def _floors_table(data: dict, qid: str) -> str:
    shared: dict[tuple, tuple[dict, list[str]]] = {}  # a floor the same for several columns: one row
    present = 0
    for column in data["columns"]:
        row = data["rows"][column["id"]].get(qid)
        if not row:
            continue
        present += 1
        for reference, values in row["floors"].items():
            shared.setdefault((reference, repr(sorted(values.items()))), (values, []))[1].append(column["label"])
    rows = [
        ("every column" if len(labels) == present > 1 else ", ".join(labels), reference, values)
        for (reference, _), (values, labels) in shared.items()
    ]
    if not rows:
        return "<p>No floors were scored for this question.</p>"
    metrics = list(dict.fromkeys(m for _, _, values in rows for m in values))
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    body = "".join(
        f"<tr><td>{_e(label)}</td><td>{_e(reference)}</td>"
        + "".join(f"<td>{_fmt(values.get(m))}</td>" for m in metrics)
        + "</tr>"
        for label, reference, values in rows
    )
    return (
        f"<table><caption>Floors and ceiling of this question (one value per question)</caption>"
        f"<tr><th>column</th><th>reference</th>{head}</tr>{body}</table>"
    )


def _card(data: dict, qid: str, q: dict) -> str:
    columns = [(c, col, data["rows"][col["id"]].get(qid)) for c, col in enumerate(data["columns"])]
    columns = [(c, col, row) for c, col, row in columns if row]
    n_humans = max(0, len(q["humans"]) - 1)
    human = _tile(qid, f"h{qid}_0", f"human (mean of {n_humans})") if q["humans"] else _tile(qid, None, "no human map")
    thumbs = "".join(_column_tile(c, col, qid, row, False) for c, col, row in columns)
    target = "; ".join(sorted({f"map of '{row['target_answer']}'" for _, _, row in columns}))
    meta = (
        f"<div class='meta'><div class='q'>{_e(q['question'])}</div>label: <b>{_e(q['answer'])}</b>"
        f"<br>question {_e(qid)}, image {_e(q['image_id'])}<br>{_e(q['answer_type'])} / {_e(q['question_type'])}"
        f"<br>{_e(target)}</div>"
    )
    humans = "".join(
        _tile(qid, f"h{qid}_{n}", "human, mean" if n == 0 else f"annotator {n}") for n in range(len(q["humans"]))
    )
    full = "".join(_column_tile(c, col, qid, row, True) for c, col, row in columns)
    text = f"{qid} {q['question']} {q['answer']} " + " ".join(row["prediction"] for _, _, row in columns)
    return (
        f"<article class='card' data-qid='{_e(qid)}' data-text='{_e(text)}' data-answer-type='{_e(q['answer_type'])}'"
        f" data-question-type='{_e(q['question_type'])}'><details><summary>{meta}<div class='tiles'>"
        f"{_tile(qid, None, 'image', dim=False)}{human}{thumbs}</div></summary><div class='full'><div class='tiles'>"
        f"{_tile(qid, None, 'image', dim=False)}{humans}{full}</div>{_floors_table(data, qid)}</div></details></article>"
    )


def _controls(data: dict) -> str:
    questions = data["questions"].values()
    answer_types = sorted({q["answer_type"] for q in questions})
    question_types = sorted({q["question_type"] for q in questions})
    metrics = list(dict.fromkeys(m for col in data["columns"] for m in col["metrics"]))
    columns = [(f"c{c}", col["label"]) for c, col in enumerate(data["columns"])]
    checks = "".join(
        f"<label><input type='checkbox' name='col' value='{v}' checked> {_e(text)}</label> " for v, text in columns
    )
    first = data["columns"][0]["headline"][0] if data["columns"] and data["columns"][0]["headline"] else "question_id"
    return (
        "<form id='controls'>"
        + _select("correct", "prediction", [("all", "all"), ("correct", "correct"), ("wrong", "wrong")])
        + _select("band", "confidence", [("all", "all"), ("low", "low"), ("mid", "mid"), ("high", "high")])
        + _select("answer_type", "answer type", [("all", "all")] + [(t, t) for t in answer_types])
        + _select("question_type", "question type", [("all", "all")] + [(t, t) for t in question_types])
        + f"<fieldset><legend>columns (runs)</legend>{checks}</fieldset>"
        + "<label>search <input type='search' name='search' placeholder='question id or words'></label>"
        + _select(
            "sort",
            "sort by",
            [("question_id", "question id"), ("confidence", "confidence")] + [(m, m) for m in metrics],
            first,
        )
        + _select("sort_a", "of", columns)
        + _select("sort_b", "minus", [("", "(nothing)")] + columns)
        + _select("order", "order", [("desc", "high first"), ("asc", "low first")])
        + "<span id='count'></span></form>"
    )


def render(data: dict) -> str:
    """The page for explorer data (:mod:`vqa_interp.report.explorer`) as one HTML string."""
    data = checked(data)
    columns = data["columns"]
    lows = sorted({(c["low"], c["high"]) for c in columns})
    bands = "; ".join(f"low p < {lo:.3g}, high p > {hi:.3g}" for lo, hi in lows)
    intro = (
        f"{len(data['questions'])} questions, {len(columns)} column(s). One card per question; each tile is "
        f"one run's map of it over the image in grey, with that "
        f"run's prediction, confidence band ({_e(bands)}) and scores of that one question. Click a card for "
        f"the full view: every annotator, every metric and the question's floors."
    )
    cards = "".join(_card(data, qid, q) for qid, q in data["questions"].items())
    # the data's strings only ever reach the page through _e(); the script reads attributes only
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(data['title'])}: explorer</title>"
        f"<style>{STYLE}\n{_css_pictures(data)}</style></head><body><header><h1>{_e(data['title'])}: explorer</h1>"
        f"<p>{intro}</p>{colour_bars(data)}{_controls(data)}</header><main id='cards'>{cards}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )
