"""GRPO: the detector's softmax over (spoof, bonafide) is the policy; rewards, advantages and the clipped,
KL-regularised loss come from `spoofrl.rl` (every option in docs/training.md).

Rewards come from the reward registry (`objective.rewards`, docs/rewards.md) as for a generative policy: each
sampled label is handed to the rewards as its name ("spoof" / "bonafide", the completion text) and the
utterance's label as the `label` column, so the default `answer` reward is the study's 1/0 label reward.
"""
from __future__ import annotations

import torch

from spoofrl.rewards import build_rewards
from spoofrl.rewards.labels import LabelRewards
from spoofrl.rl import CategoricalPolicy, GRPOSettings, grpo_loss
from spoofrl.training.config import ObjectiveConfig, objective_rewards
from spoofrl.training.objectives.base import probability_stats


def grpo_settings(cfg: ObjectiveConfig) -> GRPOSettings:
    # 'w/o negative' (raw rewards, no clipping) logs -mean(r log p) + beta KL as the study's code does
    reinforce = not cfg.negative and cfg.epsilon is None and not cfg.mixed_policy
    return GRPOSettings(num_generations=cfg.num_generations, estimator=cfg.estimator,
                        scale_rewards="none" if not cfg.negative else cfg.scale_rewards, center=cfg.negative,
                        std_eps=cfg.std_eps, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, beta=cfg.beta,
                        kl_estimator=cfg.kl_estimator, loss_type=cfg.loss_type, mixed_policy=cfg.mixed_policy,
                        surrogate="logp" if reinforce else "ratio")


class GRPOObjective:
    name = "grpo"
    sample_weighted = True

    def __init__(self, cfg: ObjectiveConfig, class_weights: torch.Tensor | None = None):
        self.cfg = cfg
        self.settings = grpo_settings(cfg)
        self.reward = LabelRewards(build_rewards(objective_rewards(cfg), prefix="objective.rewards"))
        # the old policy matters only with clipping, and only when it lags behind the current one
        self.needs_old_policy = cfg.epsilon is not None and cfg.old_policy_refresh_steps > 1
        self.needs_reference = cfg.beta > 0

    def __call__(self, batch, access, sample_weights, generator):
        t = self.cfg.temperature
        holder: dict[str, torch.Tensor] = {}

        def current(_):
            holder["logits"] = access.logits()
            return holder["logits"]

        policy = CategoricalPolicy(current, temperature=t)
        old = CategoricalPolicy(lambda _: access.old_logits(), grad=False, temperature=t) \
            if self.needs_old_policy else None
        ref = CategoricalPolicy(lambda _: access.ref_logits(), grad=False, temperature=t) \
            if self.needs_reference else None
        out = grpo_loss(policy, batch, batch.targets, self.reward, self.settings, old_policy=old, ref_policy=ref,
                        sample_weights=sample_weights, generator=generator)
        stats = dict(out.stats)
        probs = probability_stats(holder["logits"], batch.targets)
        stats.update({"p_true": probs["p_true"], "accuracy": probs["accuracy"]})
        if len(self.reward.rewards.rewards) > 1:  # one reward: its statistics are reward_mean / reward_std
            stats.update(self.reward.stats)
        return out.loss, stats
