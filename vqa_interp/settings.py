"""The composed config as plain frozen dataclasses: the only module that reads a ``DictConfig``.

:func:`from_config` validates every value first (each error names the key, what is allowed and
the fix) and returns a :class:`Settings`; every stage takes these dataclasses, never the config.
Lists of allowed values come from the registries (methods, metrics, datasets), never from a
hand-kept tuple here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vqa_interp.analysis.options import AnalysisSettings
from vqa_interp.data.options import DataSettings
from vqa_interp.errors import ConfigError
from vqa_interp.explain.options import ExplainSettings
from vqa_interp.metrics.prepare import DICE_KINDS, TIE_POLICIES, ScoringOptions
from vqa_interp.util.devices import check_device
from vqa_interp.util.options import integer, number, one_of, option, read_options

TARGET_POLICIES = ("paper", "label", "prediction")
HUMAN_MODES = ("mean", "annotator", "each")
# (attribution.target_policy, analysis.map_for_example) pairs where the map that stands for an
# example is not computed for some examples: refused, saying which to use instead
MISSING_MAP = {
    ("label", "prediction"): "a wrong answer's map of the prediction, which target_policy=label does not compute",
    ("prediction", "label"): "a wrong answer's map of the label, which target_policy=prediction does not compute",
}


def target_combination_problem(target_policy: str, map_for_example: str) -> str:
    """ "" when every example has the map that stands for it, else a one-line config error."""
    missing = MISSING_MAP.get((target_policy, map_for_example))
    if not missing:
        return ""
    return (
        f"attribution.target_policy={target_policy} with analysis.map_for_example={map_for_example}: every wrong "
        f"example needs {missing} (the wrong examples would silently drop out of the analysis). Use "
        f"analysis.map_for_example={target_policy} (the {target_policy}'s map stands for every example), or "
        f"attribution.target_policy=paper (both maps for wrong answers)."
    )


DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ModelSettings:
    """The VQA model (``model.*``): its config name, its registered ``kind``
    (:mod:`vqa_interp.models.registry`), the checkpoint, the input geometry, and every other key of
    ``model.*`` as ``options`` (a plain dict the kind checks: ``backbone``, ``dims``, ``train`` ...)."""

    name: str = "embedded"
    kind: str = "kazemi"
    checkpoint: str | None = None
    input_size: int = 64
    central_fraction: float = 1.0
    options: dict = field(default_factory=dict, hash=False)

    @property
    def input(self) -> dict:
        return {"size": self.input_size, "central_fraction": self.central_fraction}


@dataclass(frozen=True)
class AttributionSettings:
    """The attribution method and how maps are computed (``method.*``, ``attribution.*``)."""

    method: str = "saliency"
    options: dict = field(default_factory=dict, hash=False)  # the method's own keys (name excluded)
    batch_size: int = option(16, "maps per batch, at most (memory.budget sizes every batch)", minimum=1)
    target_policy: str = option(
        "paper",
        "which answers get a map: paper (the label, and the prediction when wrong) | label | prediction",
        choices=TARGET_POLICIES,
    )
    channel_reduction: str = "max_abs"


@dataclass(frozen=True)
class ScoringSettings(ScoringOptions):
    """Everything that changes a score but not the maps (``k``, ``preprocessing.*``, ``scoring.*``):
    the scorer's :class:`~vqa_interp.metrics.prepare.ScoringOptions` plus which human map is used."""

    human: str = option("mean", "the human map scored against: mean | annotator | each", choices=HUMAN_MODES)
    annotator: int = option(1, "the annotator when human=annotator (1-based, as in {question_id}_{n}.png)", minimum=1)
    workers: int = option(1, "threads that score questions (one item per question)", minimum=1)
    metrics: tuple[str, ...] | str | None = option(
        None,
        "null: every registered metric but the slow ones (emd); "
        "all; or a list of names (checked by the metric registry)",
    )
    tie_policy: str = option(
        "fractional",
        "top-k ties: fractional (ties share the free slots) | include | index (the lowest index)",
        choices=TIE_POLICIES,
    )
    dice: str = option("soft", "soft (of the min-max maps) | hard (of the top-k regions)", choices=DICE_KINDS)
    fork: bool = option(True, "score in a forked process while the model is explained (Linux, CPU); false: in turn")


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs are recorded (``tracking.*``)."""

    uri: str = option("sqlite:///mlruns/mlflow.db", "the MLflow tracking store (or $MLFLOW_TRACKING_URI)")
    artifact_root: str = option("mlruns/artifacts", "where a new experiment keeps its artifacts")
    experiment: str = option("vqa-interp", "the MLflow experiment")
    log_maps: bool = option(True, "log every map (maps/maps.npz) and the question explorer")


@dataclass(frozen=True)
class MemorySettings:
    """``memory.*``: the budget every batching stage sizes its batches from (:mod:`vqa_interp.pipeline.memory`)."""

    budget: str = option(
        "auto",
        "auto (a quarter of the memory available at the start, at most 1 GiB; 80% of a "
        "GPU's free) | a size such as 4GB",
        kind=str,
    )


SECTIONS = (
    ("data", DataSettings),
    ("attribution", AttributionSettings),
    ("scoring", ScoringSettings),
    ("analysis", AnalysisSettings),
    ("explain", ExplainSettings),
    ("tracking", TrackingSettings),
    ("memory", MemorySettings),
)  # config section -> its options class (docs, --help, YAML check)


@dataclass(frozen=True)
class Settings:
    """One run's settings, stage by stage."""

    data: DataSettings
    model: ModelSettings
    attribution: AttributionSettings
    scoring: ScoringSettings
    analysis: AnalysisSettings
    tracking: TrackingSettings
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    # the run's batch sizes, set once the model is loaded
    batching: Any = field(default=None, hash=False, compare=False)
    home: str = ".vqa-interp"
    cache: str = ".vqa-interp/cache"
    seed: int = 0
    device: str = "cpu"
    resolved: dict = field(default_factory=dict, hash=False, repr=False)  # the whole resolved config


# ------------------------------------------------------------------ validation helpers
def _missing(cfg) -> None:
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hints = {
            "data.root": "the folder holding the VQA 1.0 json files, val2014/ and vqahat_val/",
            "model.checkpoint": "the pytorch-vqa checkpoint file (e.g. 2017-08-04_00.55.19.pth)",
        }
        raise ConfigError(
            "missing mandatory value(s): "
            + "; ".join(f"{k} ({hints.get(k, 'see conf/')}); set {k}=..." for k in missing)
        )


def _ids(value, key: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        ids = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{key}={value!r}: expected a list of integer question ids, e.g. {key}=[458752000,458752001], or null."
        ) from exc
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"{key} lists {repeated[:5]} more than once; list each question once.")
    return ids


def _section(cfg, name: str) -> dict:
    from omegaconf import OmegaConf

    part = cfg.get(name)
    return OmegaConf.to_container(part, resolve=True) if part is not None else {}


# ------------------------------------------------------------------ DictConfig -> Settings
def from_config(cfg) -> Settings:
    """Validate a composed config and turn it into :class:`Settings` (raises :class:`ConfigError`)."""
    from omegaconf import OmegaConf

    _missing(cfg)
    load_plugins(cfg.get("plugins") or [])
    device = str(cfg.device)
    one_of(device.split(":")[0], DEVICES, "device")
    check_device(device)
    attribution = attribution_settings(cfg)
    analysis = analysis_settings(cfg)
    problem = target_combination_problem(attribution.target_policy, analysis.map_for_example)
    if problem:
        raise ConfigError(problem)
    return Settings(
        data=data_settings(_section(cfg, "data")),
        model=model_settings(_section(cfg, "model")),
        attribution=attribution,
        scoring=scoring_settings(cfg),
        analysis=analysis,
        tracking=tracking_settings(cfg),
        explain=read_options(ExplainSettings, _section(cfg, "explain"), "explain"),
        memory=memory_settings(_section(cfg, "memory")),
        home=str(cfg.paths.home),
        cache=str(cfg.paths.cache),
        seed=int(cfg.seed),
        device=device,
        resolved=OmegaConf.to_container(cfg, resolve=True),
    )


def attribution_settings(cfg) -> AttributionSettings:
    """``method.*`` (checked by the method) and ``attribution.*``."""
    from vqa_interp.attribution import METHODS
    from vqa_interp.attribution.compute import CHANNEL_REDUCTIONS

    method_cfg = _section(cfg, "method")
    method = method_cfg.pop("name", None)
    one_of(method, sorted(METHODS), "method.name")
    METHODS[method].validate(method_cfg)
    reduction = cfg.preprocessing.channel_reduction
    one_of(reduction, CHANNEL_REDUCTIONS, "preprocessing.channel_reduction")
    return read_options(
        AttributionSettings,
        _section(cfg, "attribution"),
        "attribution",
        method=method,
        options=method_cfg,
        channel_reduction=reduction,
    )


def analysis_settings(cfg) -> AnalysisSettings:
    """``confidence.*``, ``analysis.*`` (each floor's options checked by its method) and ``seed``."""
    from vqa_interp.attribution import METHODS

    low = number(cfg.confidence.low, "confidence.low", "a probability in [0, 1]")
    high = number(cfg.confidence.high, "confidence.high", "a probability in [0, 1]")
    if not (0 <= low < high <= 1):
        raise ConfigError(
            f"confidence.low={low}, confidence.high={high}: expected 0 <= low < high <= 1 "
            "(the paper: low 0.25, high 0.75)."
        )
    values = _section(cfg, "analysis")
    baseline_options = values.get("baseline_options") or {}
    for name, options in baseline_options.items():
        one_of(name, sorted(m for m in METHODS if METHODS[m].kind == "baseline"), "analysis.baseline_options")
        METHODS[name].validate(options or {})
    return read_options(
        AnalysisSettings,
        values,
        "analysis",
        low=low,
        high=high,
        seed=integer(cfg.seed, "seed", 0),
        baseline_options=baseline_options,
        panel_ids=_ids(values.get("panel_ids"), "analysis.panel_ids"),
    )


def scoring_settings(cfg) -> ScoringSettings:
    """``k``, ``preprocessing.*`` and ``scoring.*`` (the scorer's keys are checked by ScoringOptions)."""
    from vqa_interp.metrics.registry import run_metrics

    values, p = _section(cfg, "scoring"), _section(cfg, "preprocessing")
    metrics = values.get("metrics")
    if metrics is not None and not isinstance(metrics, str):
        metrics = tuple(metrics)
    run_metrics(metrics)  # checks the names (ConfigError)
    if metrics == ("all",):
        metrics = "all"
    steps = p.get("steps")
    if isinstance(steps, str) or not isinstance(steps, (list, tuple)):
        raise ConfigError(
            f"preprocessing.steps={steps!r}; expected a list, e.g. preprocessing.steps=[minmax,unit_sum]."
        )
    return read_options(
        ScoringSettings,
        values,
        "scoring",
        k=cfg.k,
        size=p.get("size"),
        steps=tuple(steps),
        eps=p.get("eps"),
        tie_policy=values.get("tie_policy"),
        dice=values.get("dice"),
        resample=p.get("resample", "bilinear"),
        metrics=metrics,
    )


def data_settings(values: dict) -> DataSettings:
    """``data.*``: the shared keys, and the dataset's own keys read by its ``Options`` class."""
    from vqa_interp.data.datasets import DATASETS

    name = values.get("name")
    one_of(name, sorted(DATASETS), "data.name")
    own = DATASETS[name].Options
    data, rest = read_options(
        DataSettings,
        values,
        "data",
        keep_unknown=True,
        question_ids=_ids(values.get("question_ids"), "data.question_ids"),
    )
    if own is None and rest:
        shared = sorted(f.name for f in dataclasses.fields(DataSettings) if f.name != "options")
        raise ConfigError(f"data.{sorted(rest)[0]} is not a key of data.name={name}; expected one of {shared}.")
    if not data.shard < data.num_shards:
        raise ConfigError(
            f"data.num_shards={data.num_shards}, data.shard={data.shard}: expected integers with "
            "0 <= shard < num_shards."
        )
    return dataclasses.replace(data, options=read_options(own, rest, "data") if own is not None else None)


def model_settings(m: dict) -> ModelSettings:
    """``model.*``: its kind, checkpoint and input geometry; the other keys are the kind's to check."""
    geometry = m.pop("input", None) or {}
    if not isinstance(m.get("kind"), str):
        raise ConfigError(
            f"model.kind={m.get('kind')!r}: expected the name of a registered model kind (e.g. kazemi); "
            "each conf/model/*.yaml sets it."
        )
    input_size = integer(geometry.get("size"), "model.input.size", 2)
    central_fraction = number(geometry.get("central_fraction", 1.0), "model.input.central_fraction", "0 < f <= 1")
    if not 0 < central_fraction <= 1:
        raise ConfigError(
            f"model.input.central_fraction={central_fraction}; expected 0 < central_fraction <= 1 (pytorch-vqa: 0.875)."
        )
    return ModelSettings(
        name=str(m.pop("name", m["kind"])),
        kind=m.pop("kind"),
        checkpoint=m.pop("checkpoint", None),
        input_size=input_size,
        central_fraction=central_fraction,
        options=m,
    )


def load_plugins(modules) -> None:
    """Import each module named in ``plugins`` (before any lookup), so that a user's own methods,
    metrics and datasets register themselves without editing the package."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(str(name))
        except ImportError as exc:
            raise ConfigError(
                f"plugins: cannot import {name!r} ({exc}); expected an importable module (on "
                "PYTHONPATH) that registers methods, metrics or datasets."
            ) from exc


def memory_settings(m: dict) -> MemorySettings:
    from vqa_interp.util.memory import budget_problem

    memory = read_options(MemorySettings, m, "memory")
    problem = budget_problem(memory.budget)
    if problem:
        raise ConfigError(problem)
    return memory


def tracking_settings(cfg) -> TrackingSettings:
    """Only the ``tracking`` part of a config (the sweep callback needs no more)."""
    return read_options(TrackingSettings, _section(cfg, "tracking"), "tracking")


def as_dict(value: Any) -> Any:
    """A settings dataclass as a plain dict (for signatures and logging)."""
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) else value
