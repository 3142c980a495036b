from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from spoofrl.config import apply_overrides, describe, differences, flatten, from_dict, option, to_dict
from spoofrl.errors import ConfigError


@dataclass
class Inner:
    beta: float = option(0.04, "KL weight")
    kind: Literal["k1", "k3"] = option("k3", "estimator")


@dataclass
class Outer:
    lr: float = option(1e-3, "learning rate")
    steps: int = option(10, "steps")
    epsilon: Optional[float] = option(0.2, "clip")
    inner: Inner = option(factory=Inner, doc="section")
    tags: list[str] = option(factory=list, doc="tags")


def test_from_dict_converts_and_nests():
    cfg = from_dict(Outer, {"lr": 1, "inner": {"beta": 0}, "epsilon": None, "tags": ["a"]})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.inner.beta == 0.0 and cfg.inner.kind == "k3"
    assert cfg.epsilon is None
    assert to_dict(cfg)["inner"] == {"beta": 0.0, "kind": "k3"}


@pytest.mark.parametrize("data, msg", [
    ({"lrr": 1}, "unknown option 'lrr'"),
    ({"inner": {"betta": 1}}, "in inner"),
    ({"steps": 1.5}, "steps: expected an integer"),
    ({"inner": {"kind": "k2"}}, "inner.kind: 'k2' is not one of"),
    ({"steps": True}, "expected an integer"),
])
def test_from_dict_rejects_bad_input_naming_the_key(data, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(Outer, data)


def test_overrides_parse_yaml_values():
    data = apply_overrides({"inner": {"beta": 0.04}}, ["inner.beta=0", "epsilon=null", "tags=[x, y]", "steps=5"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.beta == 0.0 and cfg.epsilon is None and cfg.tags == ["x", "y"] and cfg.steps == 5
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["novalue"])


def test_exponent_without_a_dot_is_a_number_in_yaml_and_overrides():
    # PyYAML (YAML 1.1) reads `1e-6` as a string; a learning rate written that way must still work
    import yaml
    data = apply_overrides(yaml.safe_load("lr: 1e-6\ninner: {beta: 4E-2}"), ["epsilon=-2e+1"])
    cfg = from_dict(Outer, data)
    assert (cfg.lr, cfg.inner.beta, cfg.epsilon) == (1e-6, 0.04, -20.0)
    with pytest.raises(ConfigError, match="lr: expected a number, got '1e-6x'"):
        from_dict(Outer, {"lr": "1e-6x"})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"steps": "1e3"})


def test_describe_lists_every_option_with_doc():
    rows = {r[0]: r for r in describe(Outer)}
    assert rows["inner.beta"][3] == "KL weight"
    assert rows["lr"][2] == "0.001"
    assert set(rows) == {"lr", "steps", "epsilon", "inner", "inner.beta", "inner.kind", "tags"}


def test_differences_of_flattened_configs():
    old = {"optim": {"lr": 1e-3, "eps": 1e-6}, "model": {"frontend": {"name": "lfcc"}}, "device": "cpu"}
    new = {"optim": {"lr": 1e-4, "eps": 1e-6}, "model": {"frontend": {"name": "x" * 100}}, "device": "cuda"}
    assert flatten(old) == {"optim.lr": 1e-3, "optim.eps": 1e-6, "model.frontend.name": "lfcc", "device": "cpu"}
    assert flatten(old, keep_whole=("model",))["model"] == {"frontend": {"name": "lfcc"}}
    changes = differences(flatten(old, keep_whole=("model",)), flatten(new, keep_whole=("model",)), ignore=("device",))
    assert changes[1] == "optim.lr: 0.001 -> 0.0001"
    assert changes[0].startswith("model: {'frontend': {'name': 'lfcc'}} -> {'frontend': {'name': 'xxx")
    assert changes[0].endswith("...") and len(changes[0].split(" -> ")[1]) == 60
