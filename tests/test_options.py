"""Every option has one definition: its options class (vqa_interp.util.options). The YAML defaults
in conf/ are checked against it, values are checked once when read, and the docs' reference
tables and the config's --help come from it."""

import dataclasses

import pytest
import yaml

from conftest import ROOT
from vqa_interp.errors import ConfigError
from vqa_interp.settings import SECTIONS
from vqa_interp.util.options import check_value, default_values, option, option_rows, read_options

CONF = ROOT / "conf"


def _yaml(path):
    return yaml.safe_load(path.read_text())


def _interpolated(value) -> bool:
    return isinstance(value, str) and "${" in value


@pytest.mark.parametrize("section,cls", SECTIONS, ids=[name for name, _ in SECTIONS])
def test_the_yaml_defaults_are_the_options_class_defaults(section, cls):
    config = _yaml(CONF / "config.yaml")
    values = _yaml(CONF / "data" / "embedded.yaml") if section == "data" else config.get(section, {})
    defaults = default_values(cls)
    assert defaults, f"{cls.__name__} documents no option"
    for key, value in values.items():
        if section == "data" and key not in defaults:
            continue  # the embedded dataset's own keys: checked below
        if (section, key) == ("analysis", "baseline_options"):
            continue  # each floor's options are its method's: checked below
        assert key in defaults, f"{section}.{key} is in conf/ but not an option of {cls.__name__}"
        if not _interpolated(value):
            expected = defaults[key]
            assert (list(expected) if isinstance(expected, tuple) else expected) == value, f"{section}.{key}"


def test_a_datasets_own_keys_are_its_options_class():
    from vqa_interp.data.datasets import DATASETS

    own = default_values(DATASETS["embedded"].Options)
    shared = default_values(SECTIONS[0][1])
    values = _yaml(CONF / "data" / "embedded.yaml")
    assert {k: v for k, v in values.items() if k not in shared} == own
    assert DATASETS["vqahat"].Options is None
    assert set(_yaml(CONF / "data" / "vqahat.yaml")) <= set(shared)


@pytest.mark.parametrize("path", sorted((CONF / "method").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_method_yaml_holds_its_registered_defaults(path):
    from vqa_interp.attribution import METHODS

    values = _yaml(path)
    if set(values) == {"defaults"}:  # an alias: the paper's short name of another method's file
        assert (CONF / "method" / f"{values['defaults'][0]}.yaml").exists()
        return
    method = METHODS[values.pop("name")]
    assert values == method.options, path.name


def test_the_floors_options_in_config_yaml_are_their_methods_defaults():
    from vqa_interp.attribution import METHODS

    floors = _yaml(CONF / "config.yaml")["analysis"]["baseline_options"]
    for name, options in floors.items():
        assert options == METHODS[name].options, name


def test_every_option_says_what_it_means_and_the_generated_reference_lists_it():
    import importlib.util

    from vqa_interp.data.datasets import DATASETS

    spec = importlib.util.spec_from_file_location("reference_pages", ROOT / "docs" / "reference_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.config_page()
    classes = [(name, cls) for name, cls in SECTIONS] + [("data", c.Options) for c in DATASETS.values() if c.Options]
    for prefix, cls in classes:
        for row in option_rows(cls, prefix):
            assert len(row["meaning"]) > 10, row
            assert f"| `{row['key']}` | `{row['default']}` | {row['allowed']} |" in page, row["key"]


@dataclasses.dataclass(frozen=True)
class _Toy:
    flag: bool = option(True, "a flag that only true or false sets")
    count: int = option(3, "a count of at least one", minimum=1)
    share: float = option(0.5, "a share strictly between 0 and 1", above=0, below=1)
    mode: str = option("a", "one of two modes", choices=("a", "b"))
    limit: int | None = option(None, "an optional limit", kind=int, minimum=1)
    names: tuple = option(("x",), "a list of names", items=str)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"flag": "no"}, "toy.flag='no'; expected true or false."),
        ({"flag": 0}, "toy.flag=0; expected true or false."),
        ({"count": 0}, "toy.count=0; expected an integer >= 1."),
        ({"count": 2.5}, "toy.count=2.5; expected an integer >= 1."),
        ({"count": True}, "toy.count=True; expected an integer >= 1."),
        ({"share": 1}, "toy.share=1.0; expected a number > 0 and < 1."),
        ({"share": float("nan")}, "toy.share=nan; expected a number > 0 and < 1."),
        ({"mode": "c"}, "toy.mode='c' is not allowed; expected one of ['a', 'b']."),
        ({"limit": 0}, "toy.limit=0; expected an integer >= 1 or null."),
        ({"names": "x"}, "toy.names='x'; expected a list"),
        ({"count": None}, "toy.count=null; expected an integer >= 1."),
        (
            {"unknown": 1},
            "toy.unknown is not a key of toy; expected one of ['count', 'flag', 'limit', 'mode', 'names', 'share']",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError) as caught:
        read_options(_Toy, values, "toy")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_good_values_are_read_typed_and_missing_keys_keep_their_defaults():
    toy = read_options(_Toy, {"count": 2, "share": 0.25, "limit": None, "names": ["p", "q"]}, "toy")
    assert toy == _Toy(flag=True, count=2, share=0.25, mode="a", limit=None, names=("p", "q"))
    assert read_options(_Toy, {"share": 1}, "toy", share=0.9).share == 0.9  # given by the caller: not read
    same, unknown = read_options(_Toy, {"mode": "b", "extra": 3}, "toy", keep_unknown=True)
    assert same.mode == "b" and unknown == {"extra": 3}
    assert check_value(7, dataclasses.fields(_Toy)[1].metadata, "toy.count") == 7
    rows = {row["key"]: row for row in option_rows(_Toy, "toy")}
    assert rows["toy.share"]["allowed"] == "a number > 0 and < 1" and rows["toy.limit"]["default"] == "null"
    assert rows["toy.names"]["default"] == "[x]"


@pytest.mark.parametrize("path", sorted((CONF / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_model_yaml_holds_options_of_its_kind(path):
    """Every key of a model file (but name, kind, checkpoint, input) is a field of its kind's options
    class and passes its checks; a kind's own file (name = kind) holds the class's defaults."""
    from omegaconf import OmegaConf

    from vqa_interp.models.registry import model_kind

    values = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in ("name", "checkpoint", "input")}
    kind = model_kind(values.pop("kind"))
    assert kind.options is not None, f"model.kind={kind.name} has no options class"
    read_options(kind.options, OmegaConf.to_container(OmegaConf.create(values), resolve=True), "model")
    if path.stem == kind.name:
        defaults = default_values(kind.options)
        for key, value in values.items():
            if not isinstance(value, dict) and not _interpolated(value) and value != "???":
                assert defaults[key] == value, f"{path.name}: model.{key}"


def test_a_model_key_its_kind_does_not_know_is_one_line_before_any_work():
    from hydra import compose, initialize_config_dir

    from vqa_interp.models.registry import check_model_settings
    from vqa_interp.settings import from_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for model, override, message in [
            ("embedded", "+model.answer_mode=open", "model.answer_mode is not a key of model"),
            ("embedded_llava", "model.max_new_tokens=0", "model.max_new_tokens=0; expected an integer >= 1"),
            ("embedded_llava", "model.answer_mode=best", "model.answer_mode='best' is not allowed"),
            ("embedded_vilt", "model.max_answers=many", "model.max_answers='many'; expected an integer >= 1"),
            ("embedded", "model.dims=3", "model.dims=3; expected a group of keys"),
        ]:
            settings = from_config(compose("config", overrides=[f"model={model}", override]))
            with pytest.raises(ConfigError) as caught:
                check_model_settings(settings.model)
            assert str(caught.value).startswith(message), str(caught.value)
