"""The command line checked before Hydra reads it: one line with the fix for an override Hydra would
misread (a path split by the shell, a path holding Hydra's grammar) or a config name that does not
exist (Hydra's own messages run to 11-26 lines)."""

from __future__ import annotations

from pathlib import Path

PATH_KEYS = (
    "root",
    "checkpoint",
    "weights",
    "questions",
    "annotations",
    "images",
    "human_maps",
    "home",
    "cache",
    "artifact_root",
    "uri",
    "out",
)
HYDRA_SPECIAL = set("()[]{},='\"")


CONFIG_GROUPS = ("method", "model", "data", "preprocessing", "confidence", "experiment")


def choice_problem(argv: list[str], conf: Path = Path(__file__).resolve().parents[2] / "conf") -> str:
    """ "" when every ``group=name`` (``+experiment=name``, a sweep's ``a,b``) names a config file of
    ``conf/`` or of a ``hydra.searchpath=[file://DIR]`` given; else one line listing the choices,
    with the closest first (Hydra's own message is 11-26 lines)."""
    import difflib

    roots = [conf]
    for arg in argv:
        if arg.startswith("hydra.searchpath="):
            paths = [p.strip() for p in arg.split("=", 1)[1].strip("[]").split(",") if p.strip()]
            if any(not p.startswith("file://") for p in paths):
                return ""  # a package search path: Hydra itself checks the choices
            roots += [Path(p[len("file://") :]) for p in paths]
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if group not in CONFIG_GROUPS or value.startswith(("'", '"', "glob(", "choice(", "range(")):
            continue
        choices = sorted({p.stem for root in roots for p in (root / group).glob("*.yaml")})
        for name in [v.strip() for v in value.split(",")]:
            if name and name not in choices:
                close = difflib.get_close_matches(name, choices, n=1)
                hint = f" (did you mean {group}={close[0]}?)" if close else ""
                return f"{key}={name} is not a config of the {group} group{hint}; choose one of {', '.join(choices)}."
    return ""


def argument_problem(argv: list[str]) -> str:
    """ "" for arguments Hydra can parse as meant, else a one-line error with the fix, for the two
    ways a path breaks an override: a space the shell split on (``data.root=/my data`` arrives as
    ``data.root=/my`` and ``data``), and characters of Hydra's grammar in a path (``(``, ``,``: a
    comma even makes a sweep)."""
    previous = ""
    for arg in argv:
        if arg.startswith("-"):
            previous = ""
            continue
        if "=" not in arg:
            if previous:
                key, value = previous.split("=", 1)
                return (
                    f"{arg!r} is not an override (key=value): if {key} is a path with a space, the shell split "
                    f"it; quote it for the shell and for Hydra: '{key}=\"{value} {arg}\"'."
                )
            previous = ""
            continue
        key, value = arg.split("=", 1)
        previous = arg
        leaf = key.lstrip("+~").rsplit(".", 1)[-1]
        if leaf in PATH_KEYS and value[:1] not in ("'", '"') and HYDRA_SPECIAL & set(value):
            return (
                f"{key}={value}: characters of Hydra's override grammar (brackets, commas, quotes, '=') in a path; "
                f"quote the value for Hydra inside quotes for the shell: '{key}=\"{value}\"'."
            )
    return ""


VERBOSE_ENV = "VQA_INTERP_VERBOSE"
VERBOSE_FLAGS = ("-v", "--verbose")


def take_verbose(argv: list[str]) -> list[str]:
    """``argv`` without ``-v``/``--verbose`` (Hydra's parser refuses them); when one was there, every
    process of the command (the sweep's jobs too) prints in full: ``VQA_INTERP_VERBOSE=1``."""
    import os

    if any(arg in VERBOSE_FLAGS for arg in argv):
        os.environ[VERBOSE_ENV] = "1"
    return [arg for arg in argv if arg not in VERBOSE_FLAGS]


def verbose() -> bool:
    """Whether the command was given ``-v`` (or ``VQA_INTERP_VERBOSE=1``)."""
    import os

    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")
