"""Training objectives, plugged into the one trainer loop.

An objective turns one batch into a loss and statistics, using `ModelAccess` for the logits of the current
model (with gradient) and, when it needs them, of the old policy and the frozen reference model. It also
tells the trainer which of those it needs (`needs_old_policy`, `needs_reference`), so nothing unused is kept.

- `SFTObjective`: cross-entropy with optional class weights and label smoothing (the study's SFT baseline).
- `GRPOObjective`: the detector's softmax over (spoof, bonafide) is the policy; rewards, advantages and the
  clipped, KL-regularised loss come from `spoofrl.rl` (every option in docs/training.md).
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from spoofrl.data.dataset import Batch
from spoofrl.rl import CategoricalPolicy, GRPOSettings, LabelMatchReward, grpo_loss
from spoofrl.training.config import ObjectiveConfig
from spoofrl.training.forward import ModelAccess

Stats = dict[str, float]


class Objective(Protocol):
    name: str
    needs_old_policy: bool
    needs_reference: bool

    def __call__(self, batch: Batch, access: ModelAccess, sample_weights: torch.Tensor | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def _probability_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    logp = F.log_softmax(logits.detach().float(), dim=-1)
    p_true = logp.exp().gather(1, targets.view(-1, 1)).squeeze(1)
    return {"entropy": -(logp.exp() * logp).sum(-1).mean(), "p_true": p_true.mean(),
            "accuracy": (logits.detach().argmax(-1) == targets).float().mean()}


class SFTObjective:
    name = "sft"
    needs_old_policy = False
    needs_reference = False

    def __init__(self, cfg: ObjectiveConfig, class_weights: torch.Tensor | None = None):
        self.label_smoothing = cfg.label_smoothing
        if cfg.class_weights:
            class_weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
        self.class_weights = class_weights

    def __call__(self, batch, access, sample_weights, generator):
        logits = access.logits()
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, batch.targets, weight=weight, label_smoothing=self.label_smoothing)
        return loss, _probability_stats(logits, batch.targets)


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

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg
        self.settings = grpo_settings(cfg)
        self.reward = LabelMatchReward(cfg.reward_correct, cfg.reward_wrong)
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
        probs = _probability_stats(holder["logits"], batch.targets)
        stats.update({"p_true": probs["p_true"], "accuracy": probs["accuracy"]})
        return out.loss, stats


def build_objective(cfg: ObjectiveConfig, stage: str, class_weights: torch.Tensor | None = None) -> Objective:
    """The objective of a stage: 'sft' or 'grpo'."""
    if stage == "sft":
        return SFTObjective(cfg, class_weights)
    if stage == "grpo":
        return GRPOObjective(cfg)
    raise ValueError(f"unknown objective stage {stage!r}")


def stage_names(cfg: ObjectiveConfig) -> list[str]:
    return ["sft", "grpo"] if cfg.name == "sft_then_grpo" else [cfg.name]


__all__ = ["Objective", "SFTObjective", "GRPOObjective", "build_objective", "grpo_settings", "stage_names"]
