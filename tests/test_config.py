"""Every option of every config group composes and validates; bad values are named."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from vqa_interp.errors import ConfigError
from vqa_interp.settings import from_config as validate

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["data", "model", "method", "preprocessing", "confidence", "experiment"]
MANDATORY = {
    "data=vqahat": ["data.root=/data", "model=kazemi", "model.checkpoint=/m.pth"],
    "model=kazemi": ["model.checkpoint=/m.pth"],
    "experiment=paper": ["data.root=/data", "model.checkpoint=/m.pth"],
}


def _compose(overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def _options():
    for group in GROUPS:
        for path in sorted((CONF / group).glob("*.yaml")):
            yield f"{group}={path.stem}"


@pytest.mark.parametrize("option", list(_options()))
def test_every_group_option_composes_and_validates(option):
    override = f"+{option}" if option.startswith("experiment=") else option
    cfg = _compose([override, *MANDATORY.get(option, [])])
    validate(cfg)


def test_method_aliases_resolve_to_the_method():
    assert _compose(["method=salien"]).method.name == "saliency"
    assert _compose(["method=ggrdcm"]).method.layer == "cam"


@pytest.mark.parametrize(
    "override,key",
    [
        ("k=0", "k=0"),
        ("k=1.5", "k=1.5"),
        ("confidence.low=0.8", "confidence.low"),
        ("scoring.tie_policy=random", "scoring.tie_policy"),
        ("scoring.dice=fuzzy", "scoring.dice"),
        ("preprocessing.steps=[minmax,log]", "preprocessing.steps"),
        ("+method.smooth=3", "unknown option"),
        ("data.shard=2", "data.shard"),
        ("device=tpu", "device"),
        ("attribution.target_policy=both", "target_policy"),
    ],
)
def test_bad_values_are_named_with_the_allowed_ones(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace(".", r"\.")):
        validate(_compose([override]))


def test_mandatory_paths_are_named():
    with pytest.raises(ConfigError, match="data.root"):
        validate(_compose(["data=vqahat"]))
