"""The classifier's GRPO objective takes its rewards from the reward registry (`objective.rewards`)."""
from __future__ import annotations

import pytest
import torch

from spoofrl.errors import ConfigError
from spoofrl.rewards import REWARDS, build_rewards
from spoofrl.training import load_train_config, train
from spoofrl.training.config import ObjectiveConfig, objective_rewards
from spoofrl.rewards.labels import LABEL_NAMES, LabelRewards
from test_train_run import read_rows, small_config
from test_train_data import write_toy_corpus


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=8, n_dev=4)


def test_label_names_follow_the_class_indices():
    assert LABEL_NAMES == ("spoof", "bonafide")


@pytest.mark.parametrize("correct, wrong", [(1.0, 0.0), (1.0, -1.0), (0.3, -0.7)])
def test_default_rewards_equal_the_study_label_reward(correct, wrong):
    """No `rewards` given: the `answer` reward on label names, equal to the tensor label reward value for value."""
    cfg = ObjectiveConfig(name="grpo", reward_correct=correct, reward_wrong=wrong)
    fn = LabelRewards(build_rewards(objective_rewards(cfg)))
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 2, (5, 64), generator=g)
    targets = torch.randint(0, 2, (5,), generator=g)
    expected = torch.where(actions == targets.view(-1, 1), torch.tensor(correct), torch.tensor(wrong))
    assert torch.equal(fn(actions, targets), expected)


def test_rewards_with_reward_correct_is_refused(manifest):
    with pytest.raises(ConfigError, match="objective.rewards: with `rewards` given"):
        load_train_config(small_config(manifest, objective={"name": "grpo", "reward_wrong": -1.0,
                                                            "rewards": [{"name": "answer"}]}))
    with pytest.raises(ConfigError, match=r"objective.rewards\[0\].name: unknown reward 'acuracy'"):
        load_train_config(small_config(manifest, objective={"name": "grpo", "rewards": [{"name": "acuracy"}]}))


@pytest.fixture
def says_bonafide():
    """A user reward registered by name: 1 for the completion 'bonafide', whatever the truth."""
    @REWARDS.register("says_bonafide")
    def reward(completions, **_):
        return [1.0 if c == "bonafide" else 0.0 for c in completions]
    yield "says_bonafide"
    REWARDS._entries.pop("says_bonafide")


def test_a_registered_reward_drives_the_classifier(manifest, tmp_path, says_bonafide):
    """GRPO with only a reward for saying 'bonafide' pushes every utterance towards bona fide; with two
    rewards, each is logged as reward/<name>/mean."""
    from spoofrl.inference import score_utterances
    from spoofrl.data.manifest import read_manifest
    from spoofrl.models import load_model
    objective = {"name": "grpo", "num_generations": 16, "beta": 0.0, "epsilon": None,
                 "rewards": [{"name": says_bonafide}]}
    cfg = load_train_config(small_config(manifest, objective=objective, optim={"lr": 0.05},
                                         schedule={"steps": 12, "eval_every": 0, "log_every": 4}))
    run = train(cfg, tmp_path / "run")
    scores = score_utterances(load_model(run), read_manifest(manifest), device="cpu")
    assert (scores > 0).mean() >= 0.9, scores   # log-odds of bona fide: nearly everything called bona fide
    rows = read_rows(run)
    assert float(rows[-1]["reward_mean"]) > float(rows[0]["reward_mean"])
    two = dict(objective, rewards=[{"name": "answer"}, {"name": says_bonafide, "weight": 0.1}])
    run2 = train(load_train_config(small_config(manifest, objective=two, schedule={"steps": 2, "eval_every": 0})),
                 tmp_path / "two")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(run2 / "tb")).Reload().Tags()["scalars"]
    assert {"train/reward/answer/mean", f"train/reward/{says_bonafide}/mean", "train/reward/total/mean"} <= set(tags)
