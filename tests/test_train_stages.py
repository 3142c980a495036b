"""Staged training (`stages: [...]`) and the objective registry: one loop, objectives by name."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spoofrl.config import to_dict
from spoofrl.errors import ConfigError
from spoofrl.training import load_train_config, train
from spoofrl.training.config import config_differences, describe_stages, resolved_stages
from spoofrl.training.registry import OBJECTIVES
from test_train_run import _weights, read_rows, small_config
from test_train_data import write_toy_corpus


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=8, n_dev=4)


GRPO_OPTIONS = {"num_generations": 8, "old_policy_refresh_steps": 3, "beta": 0.04}


def test_stages_list_trains_exactly_as_the_sft_then_grpo_shorthand(manifest, tmp_path):
    """The shorthand is two stages: the same run, bit for bit (weights, reference, metrics)."""
    short = load_train_config(small_config(manifest, objective={
        "name": "sft_then_grpo", "sft_steps": 4, "grpo_start": "best", "grpo_reference": "switch", **GRPO_OPTIONS}))
    staged = load_train_config({**small_config(manifest, objective=GRPO_OPTIONS), "stages": [
        {"objective": "sft", "steps": 4}, {"objective": "grpo", "start": "best", "reference": "switch"}]})
    assert describe_stages(short) == describe_stages(staged) == "sft -> grpo"
    a, b = train(short, tmp_path / "short"), train(staged, tmp_path / "staged")
    for name in ("model.safetensors", "stage1/model.safetensors", "stage1/grpo_start.safetensors",
                 "last/reference.safetensors", "last/old_policy.safetensors"):
        wa, wb = _weights(a, name), _weights(b, name)
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa), name
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    assert json.loads((b / "summary.json").read_text())["objective"] == "sft -> grpo"


def test_three_stages_with_their_own_options(manifest, tmp_path):
    """sft -> grpo (beta 0: no reference) -> grpo (beta 0.5, reference = the run's initial model): each stage
    runs its steps with its own options, keeps its model in stageK/ and logs GRPO statistics only when GRPO."""
    cfg = load_train_config({**small_config(manifest, objective={"num_generations": 8, "epsilon": None},
                                            schedule={"steps": 9, "log_every": 1, "eval_every": 3}),
                             "stages": [{"objective": "sft", "steps": 3},
                                        {"objective": "grpo", "steps": 3, "options": {"beta": 0.0}, "start": "last"},
                                        {"objective": "grpo", "options": {"beta": 0.5}, "reference": "init",
                                         "lr": 0.001}]})
    assert [s.objective for s in resolved_stages(cfg)] == ["sft", "grpo", "grpo"]
    run = train(cfg, tmp_path / "run")
    rows = {int(r["step"]): r for r in read_rows(run)}
    assert all(rows[s]["reward_mean"] == "" for s in (1, 2, 3))            # SFT
    assert all(rows[s]["reward_mean"] != "" for s in range(4, 10))         # GRPO
    assert all(rows[s]["kl"] == "" for s in (4, 5, 6))                     # beta 0: no reference, no KL
    assert all(rows[s]["kl"] != "" for s in (7, 8, 9))
    assert float(rows[7]["lr"]) <= 0.001 + 1e-12 < float(rows[4]["lr"])   # the last stage's own learning rate
    for folder in ("stage1", "stage2"):
        assert (run / folder / "model.safetensors").is_file()
    assert (run / "stage2" / "grpo_start.safetensors").is_file()
    # reference: init = the model before any training, not the start of stage 3
    ref, start3 = _weights(run, "last/reference.safetensors"), _weights(run, "stage2/grpo_start.safetensors")
    assert any(not np.array_equal(ref[k].numpy(), start3[k].numpy()) for k in ref if k in start3)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 9 and summary["objective"] == "sft -> grpo -> grpo"


@pytest.mark.parametrize("stages, objective, match", [
    ([{"objective": "sft", "steps": 2}, {"objective": "grpo"}], {"name": "sft_then_grpo", "sft_steps": 2},
     "objective.name: sft_then_grpo is the shorthand"),
    ([{"objective": "sft"}, {"objective": "grpo"}], {}, r"stages\[0\].steps: every stage but the last"),
    ([{"objective": "sft", "steps": 2}, {"objective": "grpo", "steps": 3}], {}, r"stages\[1\].steps: the last"),
    ([{"objective": "sft", "steps": 2}, {"objective": "ppo"}], {}, r"stages\[1\].objective: unknown objective 'ppo'; "
                                                                   r"known: grpo, sft"),
    ([{"objective": "sft", "steps": 2}, {"objective": "grpo", "options": {"betta": 0}}], {},
     r"stages\[1\].options.*unknown option 'betta'"),
    ([{"objective": "sft", "steps": 2}, {"objective": "grpo", "options": {"beta": -1}}], {},
     r"stages\[1\].options.beta"),
    ([{"objective": "sft", "steps": 20}, {"objective": "grpo"}], {}, r"schedule.steps: must exceed the steps"),
])
def test_bad_stages_are_one_line_errors_naming_the_key(manifest, stages, objective, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config({**small_config(manifest, objective=objective), "stages": stages})


def test_unknown_objective_name_lists_the_known_ones(manifest):
    with pytest.raises(ConfigError, match=r"objective.name: unknown objective 'dpo'; known: grpo, sft, sft_then_grpo"):
        load_train_config(small_config(manifest, objective={"name": "dpo"}))


def test_a_run_folder_from_before_stages_existed_resumes_without_differences(manifest):
    """Options added since a run folder was made (task, stages, objective.rewards) count as their defaults."""
    cfg = to_dict(load_train_config(small_config(manifest)))
    old = {k: v for k, v in cfg.items() if k not in ("stages", "task")}
    old["objective"] = {k: v for k, v in cfg["objective"].items() if k != "rewards"}
    assert cfg["stages"] == [] and cfg["task"] == "detection" and config_differences(old, cfg) == []
    changed = dict(cfg, stages=[{"objective": "sft", "steps": 1}, {"objective": "grpo"}])
    assert config_differences(old, changed) == ["stages: [] -> [{'objective': 'sft', 'steps': 1}, {'objective': 'grpo'}]"]
    assert config_differences(old, dict(cfg, task="other")) == ["task: 'detection' -> 'other'"]


def test_unknown_task_lists_the_known_ones(manifest):
    with pytest.raises(ConfigError, match=r"task: unknown task 'asr'; known: detection"):
        load_train_config({**small_config(manifest), "task": "asr"})


class HalfLossObjective:
    """A user objective: half the cross-entropy (registered by name; the trainer knows nothing of it)."""
    name = "half_ce"
    needs_old_policy = needs_reference = sample_weighted = False

    def __init__(self, cfg, class_weights=None):
        pass

    def __call__(self, batch, access, sample_weights, generator):
        logits = access.logits()
        return 0.5 * torch.nn.functional.cross_entropy(logits, batch.targets), {}


@pytest.fixture
def half_ce():
    OBJECTIVES.add("half_ce", HalfLossObjective)
    yield "half_ce"
    OBJECTIVES._entries.pop("half_ce")


def test_a_registered_objective_is_one_registry_line(manifest, tmp_path, half_ce):
    """One registry line makes an objective usable by name, alone or as a stage, with no change to the trainer."""
    cfg = load_train_config({**small_config(manifest, schedule={"steps": 4, "log_every": 1}),
                             "stages": [{"objective": "sft", "steps": 2}, {"objective": half_ce}]})
    run = train(cfg, tmp_path / "run")
    rows = {int(r["step"]): r for r in read_rows(run)}
    assert sorted(rows) == [1, 2, 3, 4] and all(rows[s]["loss"] != "" for s in rows)
    assert json.loads((run / "summary.json").read_text())["objective"] == "sft -> half_ce"
    single = load_train_config(small_config(manifest, objective={"name": half_ce}, schedule={"steps": 2}))
    assert describe_stages(single) == half_ce and train(single, tmp_path / "single").is_dir()
