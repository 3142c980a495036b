"""GRPO of a generative policy (an audio LLM): one rollout per training step, then `num_iterations` updates.

The rollout (`spoofrl.rl.rollout.make_rollout`) draws G completions per item with the KV cache, scores them
with every reward of `objective.rewards` once, computes the group advantages and records the reference's
(and, for num_iterations > 1, the behaviour policy's) per-token log-probs. Each update then takes the
clipped, KL-regularised loss over the rollout in micro-batches of `micro_batch_size` items
(`rollout_loss`, exact for every loss_type) and one optimizer step. Options keep TRL's GRPOConfig names and
meanings; where spoofrl differs is said in docs/training.md.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from spoofrl.alm.config import SamplingConfig
from spoofrl.errors import ConfigError
from spoofrl.rewards import build_rewards
from spoofrl.rl.rollout import make_rollout, rollout_loss
from spoofrl.training.config import ObjectiveConfig, objective_rewards
from spoofrl.training.objectives.grpo import grpo_settings


def rollout_sampling(cfg: ObjectiveConfig) -> SamplingConfig:
    """How rollouts draw completions (TRL's temperature, top_p, top_k, min_p, max_completion_length)."""
    return SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, min_p=cfg.min_p,
                          max_completion_length=cfg.max_completion_length, do_sample=True)


class GenerativeGRPO:
    name = "grpo"
    needs_old_policy = False    # the rollout records the behaviour log-probs itself
    sample_weighted = True
    updates_itself = True       # micro-batched backward and num_iterations optimizer steps per call

    def __init__(self, cfg: ObjectiveConfig, class_weights: torch.Tensor | None = None):
        if cfg.estimator != "sampled":
            raise ConfigError("objective.estimator: 'exact' enumerates a classifier's labels; a generative "
                              "policy's completions are sampled (use estimator: sampled)")
        if cfg.old_policy_refresh_steps != 1000 and cfg.old_policy_refresh_steps != 1:
            raise ConfigError("objective.old_policy_refresh_steps is the detector's option; for task generation "
                              "the old policy is the one that made the rollout (set num_iterations)")
        self.cfg = cfg
        self.settings = replace(grpo_settings(cfg), max_tokens=cfg.max_completion_length)
        self.rewards = build_rewards(objective_rewards(cfg), prefix="objective.rewards")
        self.sampling = rollout_sampling(cfg)
        self.needs_reference = cfg.beta > 0
        self.micro_batch_size = cfg.micro_batch_size or None

    def __call__(self, batch, access, sample_weights, generator, update):
        policy = access.policy(self.sampling)
        ref = access.ref_policy(self.sampling) if self.needs_reference else None
        rollout = make_rollout(policy, batch, self.rewards, self.settings, ref_policy=ref, generator=generator,
                               num_iterations=self.cfg.num_iterations, step=update.step_index,
                               mask_truncated_completions=self.cfg.mask_truncated_completions,
                               micro_batch_size=self.micro_batch_size)
        losses, pass_stats = [], {}
        for _ in range(self.cfg.num_iterations):
            out = rollout_loss(policy, rollout, self.settings, micro_batch_size=self.micro_batch_size,
                               backward=update.backward, sample_weights=sample_weights)
            update.step()
            losses.append(out.loss.detach())
            for key, value in out.stats.items():
                pass_stats[key] = pass_stats.get(key, 0.0) + float(value) / self.cfg.num_iterations
        stats = {**rollout.stats, **pass_stats}
        return torch.stack(losses).mean(), stats
