"""The reference pages of the documentation, generated from the registries and the config files (never
written by hand, so they cannot drift): every method with the model kinds it runs on, every metric
with its definition, range and peer, every model kind, every config key with its default.

``pages() -> {relative path: Markdown}``; ``docs/hooks.py`` writes them before each ``mkdocs build``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def methods_page() -> str:
    from vqa_interp.attribution import METHODS
    from vqa_interp.models.base import ATTACHMENTS
    from vqa_interp.models.registry import MODELS

    kinds = sorted(MODELS)
    lines = [
        "# Methods",
        "",
        "Every registered attribution method (`method=NAME`), its options (`method.KEY=VALUE`, defaults from "
        "`conf/method/NAME.yaml`), what it needs from a model and the model kinds (`model.kind`) that have it. "
        "A pair that does not fit is refused in one line before any work.",
        "",
        "| method | what it computes | reference | options (default) | needs | runs on |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in sorted(METHODS.items()):
        options = ", ".join(f"`{k}` ({v!r})" for k, v in m.options.items()) or "none"
        runs_on = (
            ", ".join(f"`{k}`" for k in kinds if m.runs_on(MODELS[k].provides))
            if m.kind == "model"
            else "every model (model-free)"
        )
        needs = ", ".join(f"`{n.replace('|', '` or `')}`" for n in m.needs) if m.kind == "model" else "nothing"
        alias = f" (also `{'`, `'.join(m.aliases)}`)" if m.aliases else ""
        lines.append(
            f"| `{name}`{alias} | {_cell(m.description)} | {_cell(m.reference)} | {_cell(options)} | "
            f"{needs} | {runs_on} |"
        )
    lines += ["", "## What a model can provide", "", "| attachment point | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in ATTACHMENTS.items()]
    return "\n".join(lines) + "\n"


def metrics_page() -> str:
    from vqa_interp.metrics.registry import REGISTRY, family_metrics

    family = set(family_metrics())
    lines = [
        "# Metrics",
        "",
        "Every registered metric (`scoring.metrics`), from the metric registry: its family, range, direction, "
        "whether it is in the tested family (Holm-adjusted), and the peer implementation the tests compare it "
        "with.",
        "",
        "| metric | family | range | closer to humans | tested family | definition (and its peer) | slow reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in REGISTRY.items():
        low, high = m.range
        reference = f"`{m.reference.__module__}.{m.reference.__name__}`" if m.reference is not None else ""
        lines.append(
            f"| `{name}` | {m.family} | [{low:g}, {high:g}] | {'higher' if m.higher_is_better else 'lower'} | "
            f"{'yes' if name in family else ''} | {_cell(m.description)} | {reference} |"
        )
    return "\n".join(lines) + "\n"


def models_page() -> str:
    from vqa_interp.models.registry import MODELS

    configs = {}
    for path in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        kind = re.search(r"(?m)^kind:\s*(\S+)", path.read_text())
        configs.setdefault(kind.group(1) if kind else path.stem, []).append(path.stem)
    lines = [
        "# Model kinds",
        "",
        "Every registered model kind (`model.kind`), the config files (`model=NAME`) that use it and the "
        "attachment points it provides (what decides which methods run on it).",
        "",
        "| kind | `model=` configs | trainable here | provides | what it is |",
        "|---|---|---|---|---|",
    ]
    for name, kind in sorted(MODELS.items()):
        names = ", ".join(f"`{c}`" for c in configs.get(name, [])) or "(a plugin's)"
        lines.append(
            f"| `{name}` | {names} | {'yes' if kind.trainable else 'no'} | "
            f"{', '.join(f'`{p}`' for p in sorted(kind.provides))} | {_cell(kind.description)} |"
        )
    lines += _model_options(MODELS)
    return "\n".join(lines) + "\n"


def _model_options(models) -> list[str]:
    """Each kind's options class as a table (generated from the class, as the config's sections are)."""
    from vqa_interp.util.options import option_rows

    lines = []
    for name, kind in sorted(models.items()):
        if kind.options is None:
            continue
        lines += [
            "",
            f"## `model.kind={name}` ({kind.options.__name__})",
            "",
            "| key | default | allowed | meaning |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{r['key']}` | `{_cell(r['default'])}` | {_cell(r['allowed'])} | {_cell(r['meaning'])} |"
            for r in option_rows(kind.options, "model")
        ]
    return lines


def _keys(path: Path) -> list[tuple[str, str, str]]:
    """``(dotted key, default, comment)`` of every scalar key of a Hydra YAML file (its ``defaults``
    list left out), read line by line so the comments come with them."""
    out, stack, above = [], [], []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            above.append(line.strip().lstrip("#").strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w]*):\s*(.*?)\s*$", line)
        if not match:
            above = [] if not line.strip() else above
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        value, _, comment = rest.partition("#") if not rest.startswith(("'", '"')) else (rest, "", "")
        comment = " ".join([*above, comment.strip()]).strip() if indent else comment.strip() or " ".join(above)
        above = []
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        if value.strip() == "" or value.strip() == "|-":
            stack.append((indent, key))
            continue
        if dotted.startswith(("defaults", "hydra")):
            continue
        out.append((dotted, value.strip(), comment.strip()))
    return out


def options_tables() -> tuple[list[str], set[str]]:
    """The options classes' tables (:data:`vqa_interp.settings.SECTIONS` and each dataset's own
    ``Options``) and the keys they cover."""
    from vqa_interp.data.datasets import DATASETS
    from vqa_interp.settings import SECTIONS
    from vqa_interp.util.options import option_rows

    lines, covered = [], set()
    parts = [(f"`{name}.*` ({cls.__name__})", name, cls) for name, cls in SECTIONS]
    parts += [
        (f"`data.*` of `data.name={d.name}` ({d.Options.__name__})", "data", d.Options)
        for d in DATASETS.values()
        if d.Options is not None and d.Options is not getattr(d.__base__, "Options", None)
    ]
    for title, prefix, cls in parts:
        rows = option_rows(cls, prefix)
        covered.update(r["key"] for r in rows)
        lines += [f"### {title}", "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        lines += [
            f"| `{r['key']}` | `{_cell(r['default'])}` | {_cell(r['allowed'])} | {_cell(r['meaning'])} |" for r in rows
        ]
        lines.append("")
    return lines, covered


def config_page() -> str:
    tables, covered = options_tables()
    lines = [
        "# Configuration keys",
        "",
        "Every key of `conf/config.yaml` and of each config group's files, with its default and what it means; "
        "override any with `key=value` on the command line. Values are checked before any work (a bad one is one "
        "line naming the key and what is allowed).",
        "",
        "## Options with a class of their own",
        "",
        "Each of these is defined once, in its options class (`vqa_interp/settings.py`, a dataset's `Options` in "
        "`vqa_interp/data/datasets.py`): the YAML defaults are tested against it, and this table is generated "
        "from it.",
        "",
        *tables,
        "## The other keys of `conf/config.yaml`",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{k}` | `{_cell(v)}` | {_cell(c)} |" for k, v, c in _keys(ROOT / "conf" / "config.yaml") if k not in covered
    ]
    for group in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        lines += ["", f"## `{group.name}=`", ""]
        for path in sorted(group.glob("*.yaml")):
            keys = _keys(path)
            lines += [f"### `{group.name}={path.stem}`", ""]
            if not keys:
                lines += ["(no keys)", ""]
                continue
            prefix = "" if group.name == "experiment" else f"{group.name}."
            lines += ["| key | default | meaning |", "|---|---|---|"]
            lines += [f"| `{prefix}{k}` | `{_cell(v)}` | {_cell(c)} |" for k, v, c in keys]
            lines.append("")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    return {
        "reference/methods.md": methods_page(),
        "reference/metrics.md": metrics_page(),
        "reference/models.md": models_page(),
        "reference/config.md": config_page(),
    }
