"""The report's two renderings from one list of sections: HTML through a Jinja2 template with
autoescaping on (every string read from a store, a run name, a question, a table cell, is escaped
by the engine, never by hand) and Markdown.

A section is a dict: ``title``, ``level`` (2-4), and optionally ``text`` (a paragraph), ``lines``
(bullets), ``table`` (a DataFrame), ``details`` (``[{"summary", "table", "more_summary", "more"}]``:
folded tables), ``figures`` (``[{"title", "figures": [{"caption", "path"}]}]``: PNG files, embedded as
data URIs that are checked to be ``data:image/png;base64,...``). A table cell that is a dict
``{"text", "href"}`` is a link (its ``href`` must be http(s) or a relative file name).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd

STYLE = (
    "body{font-family:sans-serif;margin:2em auto;padding:0 1.5em;max-width:1150px;line-height:1.4} "
    "h1{font-size:1.5em;overflow-wrap:anywhere} .scroll{overflow-x:auto;max-width:100%} "
    ".answer p{font-size:1.05em;margin:0.4em 0} .answer img{max-width:100%} "
    "table.t{border-collapse:collapse;font-size:12px;margin-bottom:1em}"
    ".t td,.t th{border:1px solid #ccc;padding:2px 6px} img{max-width:100%} figure{margin:0.5em}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px}"
    "h2{border-bottom:1px solid #ccc} li{margin:0.3em 0}"
)
PNG_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$")
SAFE_HREF = re.compile(r"^(https?://[^\s\"'<>]+|[\w.-]+\.html)$")


def png_uri(path: Path) -> str:
    """A PNG file as a data URI, refused (ValueError) unless it is one: a figure cannot carry markup."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file")
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    if not PNG_URI.match(uri):
        raise ValueError(f"{path}: not a PNG data URI")
    return uri


def link(text: str, href: str) -> dict | str:
    """A table cell linking ``text`` to ``href`` (plain text when the address is not http(s) or a
    page beside the report)."""
    return {"text": text, "href": href} if SAFE_HREF.match(str(href)) else str(text)


def _cell(value):
    if isinstance(value, dict):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _table(frame: pd.DataFrame) -> dict:
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)],
    }


def _markdown_table(frame: pd.DataFrame) -> str:
    shown = frame.map(lambda v: f"[{v['text']}]({v['href']})" if isinstance(v, dict) else _cell(v))
    return shown.to_markdown(index=False)


def render_html(
    title: str, findings: list[str], sections: list[dict], explorer: dict | None = None, answer: dict | None = None
) -> str:
    """The page (see the module docs); ``explorer``: ``{"href", "line"}`` of the explorer page;
    ``answer``: ``{"lines", "figure"}``, what the first screen shows (the answers, one figure)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup, escape

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    # **bold** in a finding, after the line itself is escaped
    env.filters["bold"] = lambda line: Markup(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", str(escape(line))))
    shown = []
    for section in sections:
        item = {k: section.get(k) for k in ("title", "level", "text", "lines")}
        item["table"] = _table(section["table"]) if section.get("table") is not None else None
        item["details"] = [
            {
                "summary": d["summary"],
                "table": _table(d["table"]),
                "more_summary": d.get("more_summary"),
                "more": _table(d["more"]) if d.get("more") is not None else None,
            }
            for d in section.get("details", [])
        ]
        item["figures"] = [
            {
                "title": g["title"],
                "figures": [{"caption": f["caption"], "uri": png_uri(f["path"])} for f in g["figures"]],
            }
            for g in section.get("figures", [])
        ]
        shown.append(item)
    if explorer is not None and not SAFE_HREF.match(explorer["href"]):
        explorer = None
    first = None
    if answer and (answer.get("lines") or answer.get("figure")):
        first = {"lines": answer.get("lines") or [], "uri": png_uri(answer["figure"]) if answer.get("figure") else None}
    return env.get_template("report.html.j2").render(
        title=title, style=Markup(STYLE), findings=findings, sections=shown, explorer=explorer, answer=first
    )


def render_markdown(
    title: str, findings: list[str], sections: list[dict], explorer: dict | None = None, answer: dict | None = None
) -> str:
    lines = [f"# {title}", ""]
    if answer and (answer.get("lines") or answer.get("figure")):
        lines += ["## The answer", "", *[f"{line}\n" for line in answer.get("lines") or []]]
        if answer.get("figure"):
            lines += [f"![each method against chance and a human](figures/{Path(answer['figure']).name})", ""]
    lines += ["## Findings", "", *[f"- {line}" for line in findings]]
    if explorer is not None:
        lines.append(f"- [Explorer]({explorer['href']}): {explorer['line']}")
    lines.append("")
    for section in sections:
        lines += ["#" * section["level"] + " " + section["title"], ""]
        if section.get("text"):
            lines += [section["text"], ""]
        if section.get("lines"):
            lines += [*[f"- {line}" for line in section["lines"]], ""]
        if section.get("table") is not None:
            lines += [_markdown_table(section["table"]), ""]
        for detail in section.get("details", []):
            lines += [
                "#" * min(6, section["level"] + 1) + " " + detail["summary"],
                "",
                _markdown_table(detail["table"]),
                "",
            ]
        for group in section.get("figures", []):
            for figure in group["figures"]:
                lines += [
                    f"**{figure['caption']}** ({group['title']})",
                    "",
                    f"![{figure['caption']}](figures/{Path(figure['path']).name})",
                    "",
                ]
    return "\n".join(lines)
