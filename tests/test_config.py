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


def test_overrides_index_lists_and_append_one_past_the_end():
    data = {"stages": [{"objective": "sft", "steps": 2}, {"objective": "grpo"}], "optim": {"betas": [0.9, 0.999]}}
    out = apply_overrides(data, ["stages[1].options.beta=0.1", "stages[0].steps=5", "optim.betas[1]=0.98",
                                 "stages[2]={objective: grpo, lr: 0.01}", "stages[2].steps=0"])
    assert out["stages"] == [{"objective": "sft", "steps": 5}, {"objective": "grpo", "options": {"beta": 0.1}},
                             {"objective": "grpo", "lr": 0.01, "steps": 0}]
    assert out["optim"]["betas"] == [0.9, 0.98] and data["stages"][0]["steps"] == 2   # a copy
    for override, msg in [("stages[5].lr=1", r"stages has 2 item\(s\); index 5 is past its end \(index 2 appends"),
                          ("optim[0]=1", "optim is not a list"),
                          ("stages[x]=1", "is not a key or key\\[index\\]"),
                          ("stages[0].steps.x=1", r"stages\[0\].steps is not a section"),
                          ("schedule.milestones[0]=3", "schedule.milestones is not in the config.*whole list")]:
        with pytest.raises(ConfigError, match=msg):
            apply_overrides(data, [override])


def test_train_config_overrides_a_stage_and_names_a_bad_one():
    from spoofrl.training.config import load_train_config
    stages = {"stages": [{"objective": "sft", "steps": 2}, {"objective": "grpo"}]}
    cfg = load_train_config(stages, ["stages[1].lr=0.5", "stages[1].options.beta=0.0"])
    assert cfg.stages[1].lr == 0.5 and cfg.stages[1].options == {"beta": 0.0} and cfg.stages[0].lr is None
    with pytest.raises(ConfigError, match=r"stages\[1\].start \(from an override\): 'first' is not one of"):
        load_train_config(stages, ["stages[1].start=first"])


def test_describe_lists_the_fields_of_list_items():
    from spoofrl.training.config import TrainConfig
    keys = [row[0] for row in describe(TrainConfig)]
    assert keys.index("stages") + 1 == keys.index("stages[].objective")
    assert {"stages[].steps", "stages[].start", "stages[].reference", "stages[].reset_optimizer"} <= set(keys)


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


@dataclass
class Ranged:
    lr: float = option(1e-3, "learning rate", gt=0, le=10)
    seed: int = option(0, "seed", ge=0, lt=2**32)
    betas: list[float] = option(factory=lambda: [0.9, 0.999], doc="betas", ge=0, lt=1)
    eps: Optional[float] = option(None, "optional", gt=0)
    free: float = option(0.0, "any finite number")
    wild: float = option(0.0, "may be .inf (documented)", finite=False)
    inner: Inner = option(factory=Inner, doc="section")


@pytest.mark.parametrize("data, msg", [
    ({"lr": float("nan")}, r"^lr: must be a finite number, got nan$"),
    ({"lr": 0}, r"^lr: must be in \(0, 10\], got 0$"),
    ({"lr": 11}, r"^lr: must be in \(0, 10\], got 11$"),
    ({"seed": -1}, r"^seed: must be in \[0, 4294967296\), got -1$"),
    ({"seed": 2**32}, r"^seed: must be in \[0, 4294967296\), got 4294967296$"),
    ({"betas": [0.9, 1.0]}, r"^betas\[1\]: must be in \[0, 1\), got 1$"),
    ({"eps": 0.0}, r"^eps: must be > 0, got 0$"),
    ({"free": float("inf")}, r"^free: must be a finite number, got inf$"),
    ({"inner": {"beta": float("-inf")}}, r"^inner.beta: must be a finite number, got -inf$"),
])
def test_declared_ranges_and_finiteness_name_the_key(data, msg):
    with pytest.raises(ConfigError, match=msg) as info:
        from_dict(Ranged, data)
    assert info.value.key == msg.strip("^").split(":")[0].replace("\\", "")


def test_values_in_range_pass_and_ranges_are_documented():
    cfg = from_dict(Ranged, {"lr": 10, "seed": 2**32 - 1, "betas": [0, 0.5], "eps": None, "wild": float("inf")})
    assert (cfg.lr, cfg.seed, cfg.eps, cfg.wild) == (10.0, 2**32 - 1, None, float("inf"))
    rows = {r[0]: r for r in describe(Ranged)}
    assert rows["lr"][3] == "learning rate (allowed: (0, 10])"
    assert rows["seed"][3] == "seed (allowed: [0, 4294967296))" and rows["eps"][3] == "optional (allowed: > 0)"
    assert rows["free"][3] == "any finite number"
    with pytest.raises(TypeError):
        option(0.0, "two lower bounds", ge=0, gt=0)


def test_yaml_key_lines_and_error_location(tmp_path):
    from spoofrl.config import OptionError, error_location, key_line, load_yaml_lines
    path = tmp_path / "x.yaml"
    path.write_text("# comment\nlr: 0.1\ninner:\n  beta: 1\n  kind: k3\nbetas:\n  - 0.9\n  - 0.5\n"
                    "base: &b {beta: 2}\nother:\n  <<: *b\n  kind: k1\n")
    data, lines = load_yaml_lines(path)
    assert data["other"] == {"beta": 2, "kind": "k1"}
    assert [lines[k] for k in ("lr", "inner", "inner.beta", "betas[1]", "other.kind")] == [2, 3, 4, 8, 12]
    assert key_line(lines, "inner.nope") == 3 and key_line(lines, "betas[1]") == 8 and key_line(lines, "zz") is None
    err = OptionError("inner.betta: ...", key="inner.betta", reason="unknown option 'betta'")
    assert error_location(err, "x.yaml", lines) == "x.yaml:3: inner.betta: unknown option 'betta'"
    err = OptionError("inner.beta: ...", key="inner.beta", reason="must be > 0")
    assert error_location(err, "x.yaml", lines, overridden=("inner.beta",)) == \
        "x.yaml: inner.beta (from --set): must be > 0"
    assert error_location(ConfigError("plain"), "x.yaml", lines) == "x.yaml: plain"


def test_unknown_key_and_wrong_type_errors_carry_the_key():
    with pytest.raises(ConfigError, match="unknown option 'betta'") as info:
        from_dict(Outer, {"inner": {"betta": 1}})
    assert info.value.key == "inner.betta"
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, {"tags": ["a", 3.5, []]})
    assert info.value.key == "tags[2]"


def test_bad_yaml_in_an_override_is_one_line():
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, ["optim.lr=[1,"])
    message = str(info.value)
    assert "\n" not in message and "optim.lr=[1," in message and "not valid YAML" in message


def test_the_no_negative_ablation_refuses_clipping_or_scaling_it_never_has():
    """`--set objective.negative=false` on the clipped grpo recipe would train another variant than the
    study's 'w/o negative reward' (its gradient differs): refused, naming what to set."""
    from spoofrl.training import load_train_config
    for extra in ([], ["objective.epsilon=null"], ["objective.scale_rewards=none"]):
        with pytest.raises(ConfigError, match="objective.negative.*epsilon=null.*scale_rewards=none"):
            load_train_config("grpo", ["objective.negative=false", *extra])
    cfg = load_train_config("grpo", ["objective.negative=false", "objective.epsilon=null",
                                     "objective.scale_rewards=none"])
    assert not cfg.objective.negative and cfg.objective.epsilon is None
    assert load_train_config("grpo-noneg", []).objective.negative is False
