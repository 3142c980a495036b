"""Rewards of RL fine-tuning, on text: a completion (and its dataset columns) -> one number or None.

    from spoofrl.rewards import build_rewards, RewardContext
    rewards = build_rewards([{"name": "answer"}, {"name": "format", "weight": 0.1}])
    scores = rewards.score(completions, completion_ids, prompts, columns, RewardContext(num_generations=4))
    scores.total        # [B, N] float32, for the advantages
    scores.stats        # {"reward/answer/mean": ..., ...} for the logs

The call signature, the built-in rewards and how to add one: docs/rewards.md.
"""
from spoofrl.rewards.base import (
    FunctionReward,
    Reward,
    RewardContext,
    RewardFn,
    RewardOutputError,
    RewardScores,
    RewardSet,
    WeightedReward,
    batch_column,
    reward_from_function,
)
from spoofrl.rewards.registry import REWARDS
from spoofrl.rewards.spec import RewardSpec, build_reward, build_rewards, reward_options

__all__ = ["REWARDS", "FunctionReward", "Reward", "RewardContext", "RewardFn", "RewardOutputError",
           "RewardScores", "RewardSet", "RewardSpec", "WeightedReward", "batch_column", "build_reward",
           "build_rewards", "reward_from_function", "reward_options"]
