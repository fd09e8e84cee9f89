"""The composed config as plain frozen dataclasses: the only module that reads a ``DictConfig``.

:func:`from_config` validates every value first (each error names the key, what is allowed and
the fix) and returns a :class:`Settings`; every stage takes these dataclasses, never the config.
Lists of allowed values come from the registries (methods, metrics, datasets), never from a
hand-kept tuple here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vqa_interp.errors import ConfigError
from vqa_interp.metrics.prepare import ScoringOptions

TARGET_POLICIES = ("paper", "label", "prediction")
HUMAN_MODES = ("mean", "annotator", "each")
MAP_FOR_EXAMPLE = ("prediction", "label")
ANALYSIS_TESTS = ("cluster_bootstrap", "student", "welch", "mannwhitney")
# (attribution.target_policy, analysis.map_for_example) pairs where the map that stands for an
# example is not computed for some examples: refused, saying which to use instead
MISSING_MAP = {
    ("label", "prediction"): "a wrong answer's map of the prediction, which target_policy=label does not compute",
    ("prediction", "label"): "a wrong answer's map of the label, which target_policy=prediction does not compute",
}


def target_combination_problem(target_policy: str, map_for_example: str) -> str:
    """"" when every example has the map that stands for it, else a one-line config error."""
    missing = MISSING_MAP.get((target_policy, map_for_example))
    if not missing:
        return ""
    return (f"attribution.target_policy={target_policy} with analysis.map_for_example={map_for_example}: every wrong "
            f"example needs {missing} (the wrong examples would silently drop out of the analysis). Use "
            f"analysis.map_for_example={target_policy} (the {target_policy}'s map stands for every example), or "
            f"attribution.target_policy=paper (both maps for wrong answers).")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DataSettings:
    """Which questions, images and human maps (``data.*``)."""
    name: str = "embedded"
    root: str | None = None
    split: str = "val"
    seed: int = 0
    n_train_images: int = 3000
    n_val_images: int = 100
    questions: str | None = None
    annotations: str | None = None
    images: str | None = None
    human_maps: str | None = None
    limit: int | None = None
    question_ids: tuple[int, ...] | None = None
    num_shards: int = 1
    shard: int = 0
    skip_missing_images: bool = False
    skip_bad_images: bool = False


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
    options: dict = field(default_factory=dict, hash=False)   # the method's own keys (name excluded)
    batch_size: int = 16
    target_policy: str = "paper"
    channel_reduction: str = "max_abs"
    device: str = "cpu"


@dataclass(frozen=True)
class ScoringSettings(ScoringOptions):
    """Everything that changes a score but not the maps (``k``, ``preprocessing.*``, ``scoring.*``):
    the scorer's :class:`~vqa_interp.metrics.prepare.ScoringOptions` plus which human map is used."""
    human: str = "mean"
    annotator: int = 1
    workers: int = 1
    metrics: tuple[str, ...] | str | None = None   # None: every metric but the slow ones; "all"; or names
    fork: bool = True         # score in a forked process beside the explain stage (vqa_interp.pipeline.execute)


@dataclass(frozen=True)
class AnalysisSettings:
    """The correct/wrong x confidence analysis (``confidence.*``, ``analysis.*``)."""
    low: float = 0.25
    high: float = 0.75
    map_for_example: str = "prediction"
    test: str = "cluster_bootstrap"           # the primary two-sample test (analysis.test)
    alpha: float = 0.05
    bootstrap: int = 2000
    n_panels: int = 4
    min_group: int = 10
    min_images: int = 5
    panel_ids: tuple[int, ...] | None = None
    seed: int = 0
    baselines: bool = True                    # score the floors and the human ceiling in every run
    baseline_options: dict = field(default_factory=dict, hash=False)   # {"centre": {"sigma": 0.25}, ...}
    sanity: bool = False                      # model-randomisation sanity checks (Adebayo et al.)
    sanity_questions: int = 50


@dataclass(frozen=True)
class ExplainSettings:
    """What the model used, beside where it looked (``explain.*``): the question's words, the image's
    share of the attribution, and the faithfulness of each map (deletion/insertion)."""
    tokens: bool = True           # token attributions (Layer IG on the word embedding)
    share: bool = True            # image vs question share (one joint IG pass)
    faithfulness: bool = True     # RISE deletion/insertion curves per map, and of random maps
    ig_steps: int = 32            # IG steps of the token and share passes
    steps: int = 10               # deletion/insertion: fractions 0, 1/steps, ..., 1
    substrate: str = "blur"       # what a removed pixel becomes: blur (the blurred image) | mean (its mean colour)
    blur_sigma: float = 0.25      # Gaussian sigma as a fraction of the side (substrate=blur)
    batch_size: int = 64          # targets per chunk, and images per forward of the deletion/insertion curves
    ig_batch_size: int = 128      # scaled inputs per pass of the IG passes (each a forward + backward)
    n_token_panels: int = 6       # questions in the token figure


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs are recorded (``tracking.*``)."""
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "vqa-interp"
    log_maps: bool = True


@dataclass(frozen=True)
class MemorySettings:
    """``memory.*``: the budget every batching stage sizes its batches from (:mod:`vqa_interp.pipeline.memory`)."""
    budget: str = "auto"


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
    batching: Any = field(default=None, hash=False, compare=False)   # the run's batch sizes, set once the model is loaded
    home: str = ".vqa-interp"
    cache: str = ".vqa-interp/cache"
    seed: int = 0
    device: str = "cpu"
    resolved: dict = field(default_factory=dict, hash=False, repr=False)   # the whole resolved config


# ------------------------------------------------------------------ validation helpers
def _choice(value, allowed, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; expected one of {list(allowed)}.")


def _flag(value, key: str) -> bool:
    """An on/off key: only true or false (``no``, ``off``, ``0`` are refused, never read as true)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}; expected true or false.")
    return value


def _number(value, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a number; expected {what}.")
    return float(value)


def _integer(value, key: str, minimum: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}; expected an integer >= {minimum}{what}.")
    return int(value)


def _missing(cfg) -> None:
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hints = {"data.root": "the folder holding the VQA 1.0 json files, val2014/ and vqahat_val/",
                 "model.checkpoint": "the pytorch-vqa checkpoint file (e.g. 2017-08-04_00.55.19.pth)"}
        raise ConfigError("missing mandatory value(s): " + "; ".join(
            f"{k} ({hints.get(k, 'see conf/')}); set {k}=..." for k in missing))


def _ids(value, key: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        ids = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}={value!r}: expected a list of integer question ids, e.g. "
                          f"{key}=[458752000,458752001], or null.") from exc
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"{key} lists {repeated[:5]} more than once; list each question once.")
    return ids


# ------------------------------------------------------------------ DictConfig -> Settings
def from_config(cfg) -> Settings:
    """Validate a composed config and turn it into :class:`Settings` (raises :class:`ConfigError`)."""
    from omegaconf import OmegaConf

    from vqa_interp.attribution import METHODS
    from vqa_interp.data.datasets import DATASETS
    from vqa_interp.attribution.compute import CHANNEL_REDUCTIONS
    from vqa_interp.metrics.prepare import STEPS

    _missing(cfg)
    load_plugins(cfg.get("plugins") or [])
    low = _number(cfg.confidence.low, "confidence.low", "a probability in [0, 1]")
    high = _number(cfg.confidence.high, "confidence.high", "a probability in [0, 1]")
    if not (0 <= low < high <= 1):
        raise ConfigError(f"confidence.low={low}, confidence.high={high}: expected 0 <= low < high <= 1 "
                          "(the paper: low 0.25, high 0.75).")
    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    method = method_cfg.pop("name", None)
    _choice(method, sorted(METHODS), "method.name")
    METHODS[method].validate(method_cfg)

    p = cfg.preprocessing
    _choice(p.channel_reduction, CHANNEL_REDUCTIONS, "preprocessing.channel_reduction")
    for step in p.steps:
        _choice(step, STEPS, "preprocessing.steps[]")
    eps = _number(p.eps, "preprocessing.eps", "a small positive number (the paper: 1e-6)")
    if not eps > 0:
        raise ConfigError(f"preprocessing.eps={p.eps!r}; expected a small positive number (the paper: 1e-6).")
    s = cfg.scoring
    _choice(s.human, HUMAN_MODES, "scoring.human")
    annotator = _integer(s.annotator, "scoring.annotator", 1, " (1-based, as in {question_id}_{n}.png)")
    workers = _integer(s.workers, "scoring.workers", 1)
    fork = s.get("fork", True)
    if not isinstance(fork, bool):
        raise ConfigError(f"scoring.fork={fork!r}; expected true (score in a forked process while the model is "
                          "explained) or false (one after the other).")

    a = cfg.attribution
    _choice(a.target_policy, TARGET_POLICIES, "attribution.target_policy")
    batch_size = _integer(a.batch_size, "attribution.batch_size", 1)
    device = str(cfg.device)
    _choice(device.split(":")[0], DEVICES, "device")
    check_device(device)

    an = cfg.analysis
    _choice(an.map_for_example, MAP_FOR_EXAMPLE, "analysis.map_for_example")
    _choice(an.get("test", "cluster_bootstrap"), ANALYSIS_TESTS, "analysis.test")
    problem = target_combination_problem(a.target_policy, an.map_for_example)
    if problem:
        raise ConfigError(problem)
    alpha = _number(an.alpha, "analysis.alpha", "0 < alpha < 1")
    if not 0 < alpha < 1:
        raise ConfigError(f"analysis.alpha={an.alpha}; expected 0 < alpha < 1.")
    bootstrap = _integer(an.bootstrap, "analysis.bootstrap", 1, " (bootstrap resamples for the 95% CIs)")
    n_panels = _integer(an.n_panels, "analysis.n_panels", 0)
    min_group = _integer(an.get("min_group", 10), "analysis.min_group", 2)
    min_images = _integer(an.get("min_images", 5), "analysis.min_images", 2)
    baseline_options = OmegaConf.to_container(an.baseline_options, resolve=True) if an.get("baseline_options") else {}
    for name, options in baseline_options.items():
        _choice(name, sorted(m for m in METHODS if METHODS[m].kind == "baseline"), "analysis.baseline_options")
        METHODS[name].validate(options or {})

    d = cfg.data
    _choice(d.name, sorted(DATASETS), "data.name")
    num_shards = _integer(d.num_shards, "data.num_shards", 1)
    if isinstance(d.shard, bool) or not isinstance(d.shard, int) or not 0 <= d.shard < num_shards:
        raise ConfigError(f"data.num_shards={d.num_shards}, data.shard={d.shard}: expected integers with "
                          "0 <= shard < num_shards.")
    if d.limit is not None:
        _integer(d.limit, "data.limit", 1, " or null")
    m = OmegaConf.to_container(cfg.model, resolve=True)
    geometry = m.pop("input", None) or {}
    if not isinstance(m.get("kind"), str):
        raise ConfigError(f"model.kind={m.get('kind')!r}: expected the name of a registered model kind (e.g. kazemi); "
                          "each conf/model/*.yaml sets it.")

    data = DataSettings(
        name=d.name, root=d.root, split=d.split, seed=d.get("seed", 0), n_train_images=d.get("n_train_images", 0),
        n_val_images=d.get("n_val_images", 0), questions=d.questions, annotations=d.annotations, images=d.images,
        human_maps=d.human_maps, limit=d.limit, question_ids=_ids(d.question_ids, "data.question_ids"),
        num_shards=num_shards, shard=int(d.shard), skip_missing_images=_flag(d.skip_missing_images, "data.skip_missing_images"),
        skip_bad_images=_flag(d.get("skip_bad_images", False), "data.skip_bad_images"))
    input_size = _integer(geometry.get("size"), "model.input.size", 2)
    central_fraction = _number(geometry.get("central_fraction", 1.0), "model.input.central_fraction", "0 < f <= 1")
    if not 0 < central_fraction <= 1:
        raise ConfigError(f"model.input.central_fraction={central_fraction}; expected 0 < central_fraction <= 1 "
                          "(pytorch-vqa: 0.875).")
    model = ModelSettings(name=str(m.pop("name", m["kind"])), kind=m.pop("kind"), checkpoint=m.pop("checkpoint", None),
                          input_size=input_size, central_fraction=central_fraction, options=m)
    attribution = AttributionSettings(method=method, options=method_cfg, batch_size=batch_size,
                                      target_policy=a.target_policy, channel_reduction=p.channel_reduction,
                                      device=device)
    from vqa_interp.metrics.registry import run_metrics

    metrics = s.get("metrics")
    if metrics is not None and not isinstance(metrics, str):
        metrics = tuple(metrics)
    run_metrics(metrics)   # checks the names (ConfigError)
    if metrics == ("all",):
        metrics = "all"
    # k, size, resample, tie policy, dice: checked by ScoringOptions, where they are defined
    scoring = ScoringSettings(k=cfg.k, size=p.size, steps=tuple(p.steps), eps=eps, tie_policy=s.tie_policy,
                              dice=s.dice, resample=p.get("resample", "bilinear"), human=s.human, annotator=annotator,
                              workers=workers, metrics=metrics, fork=fork)
    analysis = AnalysisSettings(low=low, high=high, map_for_example=an.map_for_example, test=an.get("test", "cluster_bootstrap"),
                                alpha=alpha,
                                bootstrap=bootstrap, n_panels=n_panels, min_group=min_group, min_images=min_images,
                                panel_ids=_ids(an.get("panel_ids"), "analysis.panel_ids"),
                                seed=_integer(cfg.seed, "seed", 0),
                                baselines=_flag(an.get("baselines", True), "analysis.baselines"),
                                baseline_options=baseline_options, sanity=_flag(an.get("sanity", False), "analysis.sanity"),
                                sanity_questions=_integer(an.get("sanity_questions", 50), "analysis.sanity_questions", 2))
    tracking = tracking_settings(cfg)
    explain = explain_settings(cfg.get("explain") or {})
    memory = memory_settings(cfg.get("memory") or {})
    return Settings(data=data, model=model, attribution=attribution, scoring=scoring, analysis=analysis,
                    tracking=tracking, explain=explain, memory=memory, home=str(cfg.paths.home), cache=str(cfg.paths.cache), seed=int(cfg.seed),
                    device=device, resolved=OmegaConf.to_container(cfg, resolve=True))


SUBSTRATES = ("blur", "mean")


def explain_settings(e) -> ExplainSettings:
    """``explain.*`` checked (a missing key keeps its default)."""
    default = ExplainSettings()
    unknown = sorted(set(e) - set(default.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"explain.{unknown[0]} is not a key of explain; expected one of "
                          f"{sorted(default.__dataclass_fields__)}.")
    flags = {key: _flag(e.get(key, getattr(default, key)), f"explain.{key}") for key in ("tokens", "share",
                                                                                       "faithfulness")}
    substrate = e.get("substrate", default.substrate)
    _choice(substrate, SUBSTRATES, "explain.substrate")
    sigma = _number(e.get("blur_sigma", default.blur_sigma), "explain.blur_sigma",
                    "a fraction of the image side, 0 < blur_sigma <= 1 (default 0.25)")
    if not 0 < sigma <= 1:
        raise ConfigError(f"explain.blur_sigma={sigma}; expected 0 < blur_sigma <= 1 (a fraction of the image side, "
                          "default 0.25).")
    return ExplainSettings(
        **flags, substrate=substrate, blur_sigma=sigma,
        ig_steps=_integer(e.get("ig_steps", default.ig_steps), "explain.ig_steps", 2, " (IG steps, default 32)"),
        steps=_integer(e.get("steps", default.steps), "explain.steps", 1, " (deletion/insertion steps, default 10)"),
        batch_size=_integer(e.get("batch_size", default.batch_size), "explain.batch_size", 1),
        ig_batch_size=_integer(e.get("ig_batch_size", default.ig_batch_size), "explain.ig_batch_size", 1),
        n_token_panels=_integer(e.get("n_token_panels", default.n_token_panels), "explain.n_token_panels", 0))


def load_plugins(modules) -> None:
    """Import each module named in ``plugins`` (before any lookup), so that a user's own methods,
    metrics and datasets register themselves without editing the package."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(str(name))
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import {name!r} ({exc}); expected an importable module (on "
                              "PYTHONPATH) that registers methods, metrics or datasets.") from exc


def check_device(device: str) -> None:
    """``device=cuda[:N]`` needs a visible GPU with that index."""
    if not device.startswith("cuda"):
        return
    index = device.partition(":")[2]
    if index and not index.isdigit():
        raise ConfigError(f"device={device!r}: expected cpu, cuda or cuda:N with N a GPU index (e.g. cuda:0).")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is visible to torch here; use device=cpu (the default).")
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device={device}: torch sees {torch.cuda.device_count()} GPU(s); choose cuda:0.."
                          f"{torch.cuda.device_count() - 1}.")


def memory_settings(m) -> MemorySettings:
    from vqa_interp.util.memory import budget_problem

    budget = m.get("budget", "auto")
    problem = budget_problem(budget)
    if problem:
        raise ConfigError(problem)
    return MemorySettings(budget=str(budget))


def tracking_settings(cfg) -> TrackingSettings:
    """Only the ``tracking`` part of a config (the sweep callback needs no more)."""
    t = cfg.tracking
    return TrackingSettings(uri=str(t.uri), artifact_root=str(t.artifact_root), experiment=str(t.experiment),
                            log_maps=_flag(t.log_maps, "tracking.log_maps"))


def as_dict(value: Any) -> Any:
    """A settings dataclass as a plain dict (for signatures and logging)."""
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) else value
