"""Every shipped recipe in configs/train/ loads, validates and trains a few steps (shrunk to a toy corpus).

The recipes are what users start from (and posttrain.yaml builds the default detection model), so a broken
option name or an invalid combination must fail here, not in a user's first run.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from spoofrl.config import load_yaml
from spoofrl.training import load_train_config, train
from test_train_data import write_toy_corpus

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))
GRPO_RECIPES = ("grpo", "grpos", "grpo-noneg", "finetune")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=4, n_dev=2)


def shrink(manifest: Path, recipe: str) -> list[str]:
    """Overrides that keep a recipe's objective and options but make it tiny: toy data, 3 steps, G = 8."""
    overrides = [f"data.manifest={manifest}", "data.train_subsets=[train]", "data.dev_subsets=[dev]",
                 "data.crop_seconds=0.5", "data.batch_size=4", "data.workers=0", "schedule.steps=3",
                 "schedule.eval_every=3", "schedule.warmup_steps=0"]
    objective = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "train" / f"{recipe}.yaml")["objective"]
    if objective["name"] != "sft" or "num_generations" in objective:
        overrides.append("objective.num_generations=8")
    if objective["name"] == "sft_then_grpo":
        overrides.append("objective.sft_steps=1")
    return overrides


def test_the_documented_recipes_exist():
    assert {"sft", "grpo", "grpos", "grpo-noneg", "sft-then-grpo", "finetune", "posttrain"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_a_few_steps(recipe, manifest, tmp_path):
    cfg = load_train_config(recipe, shrink(manifest, recipe))
    run = train(cfg, tmp_path / recipe)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["objective"] == cfg.objective.name
    rows = (run / "metrics.csv").read_text().splitlines()
    metric = "dev_error" if cfg.task == "generation" else "dev_eer"
    assert rows[0] == f"step,epoch,loss,reward_mean,kl,clip_frac,entropy,lr,{metric}" and len(rows) > 1
    last = rows[-1].split(",")
    # GRPO steps log a mean reward, SFT steps leave it empty (sft_then_grpo ends in its GRPO stage)
    assert (last[3] != "") == (cfg.objective.name != "sft")


@pytest.mark.parametrize("recipe", GRPO_RECIPES)
def test_recipe_follows_the_study_settings(recipe):
    o = load_train_config(recipe).objective
    # arXiv 2603.02914: G = 64, 0/1 reward, KL beta 0.04 with k3 - shared by every GRPO arm of the study
    assert (o.num_generations, o.reward_correct, o.reward_wrong, o.beta, o.kl_estimator) == (64, 1.0, 0.0, 0.04, "k3")
    if recipe == "grpos":
        assert o.epsilon is None
    if recipe == "grpo-noneg":
        assert o.negative is False
