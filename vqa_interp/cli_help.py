"""The ``--help`` of ``python -m vqa_interp.run``: its list of each config group's choices is
generated from ``conf/`` and the method registry, never kept by hand."""

from __future__ import annotations

from pathlib import Path

HELP_RESOLVER = "vqa_interp_groups"


def groups_help(conf: Path = Path(__file__).resolve().parents[1] / "conf") -> str:
    """The ``--help`` list of every config group's choices, generated from ``conf/`` and the method
    registry: a file that only points at another (``defaults: [ggradcam]``) is that one's alias,
    methods are grouped by what they need, a model or data file is named with its first comment."""
    import yaml

    from vqa_interp.attribution import METHODS

    def read(path):
        return yaml.safe_load(path.read_text()) or {}

    def first_comment(path) -> str:
        line = next((x for x in path.read_text().splitlines() if x.startswith("#")), "")
        return line.lstrip("# ").split(":")[0].split(" (")[0].rstrip(".")

    lines = []
    files = {p.stem: read(p) for p in sorted((conf / "method").glob("*.yaml"))}
    aliases = {v["defaults"][0]: k for k, v in files.items() if set(v) == {"defaults"}}
    kinds = {"model": [], "transformer": [], "baseline": []}
    for stem, values in files.items():
        if stem in aliases.values():
            continue
        method = METHODS.get(values.get("name", stem))
        kind = (
            "baseline"
            if method and method.kind == "baseline"
            else ("transformer" if method and any("attentions" in need for need in method.needs) else "model")
        )
        kinds[kind].append(stem + (f" (alias {aliases[stem]})" if stem in aliases else ""))
    import textwrap

    lines.append(textwrap.fill("method: " + ", ".join(kinds["model"]), 100, subsequent_indent=" " * 8))
    lines.append("        attention-based (transformers only): " + ", ".join(kinds["transformer"]))
    lines.append("        floors without a model: " + ", ".join(kinds["baseline"]))
    for group in ("data", "model"):
        described = [
            f"{p.stem} ({first_comment(p)})" if first_comment(p) else p.stem
            for p in sorted((conf / group).glob("*.yaml"))
        ]
        lines.append(f"{group}: " + ("\n" + " " * (len(group) + 2)).join(described))
    for group in ("preprocessing", "confidence", "experiment"):
        prefix = "+" if group == "experiment" else ""
        lines.append(f"{prefix}{group}: " + ", ".join(p.stem for p in sorted((conf / group).glob("*.yaml"))))
    return "\n".join(lines)


def register_help_resolver() -> None:
    """Let the ``--help`` template of conf/config.yaml call :func:`groups_help` (a process-wide
    OmegaConf resolver: registered by the entry point, never on import)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(HELP_RESOLVER):
        OmegaConf.register_new_resolver(HELP_RESOLVER, groups_help)
