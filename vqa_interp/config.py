"""Validation of a composed config, before any work: each error names the key and what is allowed."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vqa_interp.attribution import METHODS, OPTIONS
from vqa_interp.errors import ConfigError
from vqa_interp.preprocessing import CHANNEL_REDUCTIONS, STEPS
from vqa_interp.scoring import DICE_KINDS, TIE_POLICIES

TARGET_POLICIES = ("paper", "label", "prediction")
HUMAN_MODES = ("mean", "annotator", "each")
MAP_FOR_EXAMPLE = ("prediction", "label")
DEVICES = ("cpu", "cuda")


def _choice(value, allowed, key):
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; expected one of {list(allowed)}.")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value (missing mandatory values included)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hints = {"data.root": "the folder holding the VQA 1.0 json files, val2014/ and vqahat_val/",
                 "model.checkpoint": "the pytorch-vqa checkpoint file (e.g. 2017-08-04_00.55.19.pth)"}
        raise ConfigError("missing mandatory value(s): " + "; ".join(
            f"{k} ({hints.get(k, 'see conf/')}); set {k}=..." for k in missing))
    k = cfg.k
    if not isinstance(k, (int, float)) or not 0 < k < 1:
        raise ConfigError(f"k={k!r} is out of range; expected 0 < k < 1 (the fraction of pixels in a top-k region, "
                          "the paper used 0.1).")
    low, high = cfg.confidence.low, cfg.confidence.high
    if not (0 <= low < high <= 1):
        raise ConfigError(f"confidence.low={low}, confidence.high={high}: expected 0 <= low < high <= 1 "
                          "(the paper: low 0.25, high 0.75).")
    method = cfg.method.name
    _choice(method, sorted(METHODS), "method.name")
    unknown = set(cfg.method) - {"name"} - OPTIONS[method]
    if unknown:
        raise ConfigError(f"method {method!r} has unknown option(s) {sorted(unknown)}; "
                          f"allowed: {sorted(OPTIONS[method]) or 'none'}.")
    p = cfg.preprocessing
    _choice(p.channel_reduction, CHANNEL_REDUCTIONS, "preprocessing.channel_reduction")
    for step in p.steps:
        _choice(step, STEPS, "preprocessing.steps[]")
    if not isinstance(p.size, int) or p.size < 2:
        raise ConfigError(f"preprocessing.size={p.size!r}; expected an integer >= 2 (the paper: 448).")
    if not p.eps > 0:
        raise ConfigError(f"preprocessing.eps={p.eps!r}; expected a small positive number (the paper: 1e-6).")
    _choice(cfg.scoring.tie_policy, TIE_POLICIES, "scoring.tie_policy")
    _choice(cfg.scoring.dice, DICE_KINDS, "scoring.dice")
    _choice(cfg.scoring.human, HUMAN_MODES, "scoring.human")
    if not isinstance(cfg.scoring.annotator, int) or cfg.scoring.annotator < 1:
        raise ConfigError(f"scoring.annotator={cfg.scoring.annotator!r}; expected an integer >= 1.")
    if not isinstance(cfg.scoring.workers, int) or cfg.scoring.workers < 1:
        raise ConfigError(f"scoring.workers={cfg.scoring.workers!r}; expected an integer >= 1.")
    _choice(cfg.attribution.target_policy, TARGET_POLICIES, "attribution.target_policy")
    if not isinstance(cfg.attribution.batch_size, int) or cfg.attribution.batch_size < 1:
        raise ConfigError(f"attribution.batch_size={cfg.attribution.batch_size!r}; expected an integer >= 1.")
    _choice(cfg.analysis.map_for_example, MAP_FOR_EXAMPLE, "analysis.map_for_example")
    if not 0 < cfg.analysis.alpha < 1:
        raise ConfigError(f"analysis.alpha={cfg.analysis.alpha}; expected 0 < alpha < 1.")
    _choice(str(cfg.device).split(":")[0], DEVICES, "device")
    d = cfg.data
    if not isinstance(d.num_shards, int) or d.num_shards < 1 or not isinstance(d.shard, int) \
            or not 0 <= d.shard < d.num_shards:
        raise ConfigError(f"data.num_shards={d.num_shards}, data.shard={d.shard}: expected integers with "
                          "0 <= shard < num_shards.")
    if d.limit is not None and (not isinstance(d.limit, int) or d.limit < 1):
        raise ConfigError(f"data.limit={d.limit!r}; expected a positive integer or null.")
    _choice(cfg.model.backbone.type, ("small_cnn", "resnet"), "model.backbone.type")
