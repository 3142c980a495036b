"""One GRPO loss evaluation: actions -> rewards -> advantages -> clipped, KL-regularised policy loss.

Works with any `Policy` (class labels or token sequences) and any reward function. The trainer decides
which old / reference policies exist (see spoofrl.training.objectives); this module only combines them.

Estimators of the expected loss over the policy's actions:
- `sampled`: draw `num_generations` actions per input (GRPO; the study draws G = 64 labels per utterance);
- `exact`: enumerate every action and weight it by its (detached) probability. Same expectation as the
  sampled loss and its gradient, no sampling noise; only for small action spaces (`enumerate_actions`).
Labels are drawn from the current policy, as the binary-detection study's code does; the old policy only
enters through the clipped ratio.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from spoofrl.rl.advantages import ScaleRewards, compute_advantages, reward_stats
from spoofrl.rl.loss import KLEstimator, LossType, Surrogate, policy_loss
from spoofrl.rl.policy import LogProbs, Policy

Estimator = Literal["sampled", "exact"]


@dataclass
class GRPOSettings:
    """Numerical options of the GRPO loss (the training config's `objective` maps onto these)."""

    num_generations: int = 64
    estimator: Estimator = "sampled"
    scale_rewards: ScaleRewards = "batch"
    center: bool = True
    std_eps: float = 1e-5
    epsilon: float | None = 0.2
    epsilon_high: float | None = None
    beta: float = 0.04
    kl_estimator: KLEstimator = "k3"
    loss_type: LossType = "grpo"
    mixed_policy: bool = False
    max_tokens: int | None = None
    surrogate: Surrogate = "ratio"   # "logp": A*log pi instead of ratio*A (same gradient; see rl.loss)


@dataclass
class GRPOOutput:
    loss: torch.Tensor
    stats: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    weights: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _exact_weights(logprobs: LogProbs) -> torch.Tensor:
    """Probability of each enumerated action (sequence probability = exp of its summed token log-probs)."""
    logp = logprobs.logp.detach()
    if logp.dim() == 3:
        logp = (logp * logprobs.mask.to(logp.dtype)).sum(-1)
    w = logp.exp()
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


def _choose_actions(policy: Policy, inputs: Any, settings: GRPOSettings, num_on_policy: int,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, bool]:
    if settings.estimator == "exact":
        actions = policy.enumerate_actions(inputs)
        if actions is None:
            raise ValueError("estimator 'exact' needs a policy whose actions can be enumerated")
        return actions, True
    if settings.estimator != "sampled":
        raise ValueError(f"estimator must be 'sampled' or 'exact', got {settings.estimator!r}")
    return policy.sample(inputs, num_on_policy, generator), False


def grpo_loss(policy: Policy, inputs: Any, targets: Any, reward_fn: Callable[..., torch.Tensor],
              settings: GRPOSettings, *, old_policy: Policy | None = None, ref_policy: Policy | None = None,
              offpolicy_actions: torch.Tensor | None = None, sample_weights: torch.Tensor | None = None,
              generator: torch.Generator | None = None, context: dict | None = None) -> GRPOOutput:
    """GRPO loss of one batch.

    old_policy None: ratio = exp(logp - logp.detach()) (no old model; with refresh every step the old
    policy *is* the current one). ref_policy is needed when settings.beta != 0 (and used for the KL
    statistic whenever given). offpolicy_actions [B, 1(, T)]: the ground truth for mixed_policy (default:
    `targets` as labels). sample_weights [B]: per-input loss weights.
    """
    policies = [p for p in (policy, old_policy, ref_policy) if p is not None]
    for p in policies:
        p.reset()
    try:
        return _grpo_loss(policy, inputs, targets, reward_fn, settings, old_policy, ref_policy, offpolicy_actions,
                          sample_weights, generator, context or {})
    finally:
        for p in policies:
            p.reset()


def _grpo_loss(policy, inputs, targets, reward_fn, settings, old_policy, ref_policy, offpolicy_actions,
               sample_weights, generator, context) -> GRPOOutput:
    g = settings.num_generations
    if g < 1:
        raise ValueError(f"num_generations must be >= 1, got {g}")
    # mixed-policy GRPO keeps the group size: G - 1 drawn samples plus the ground truth
    num_on_policy = g - 1 if settings.mixed_policy else g
    if settings.mixed_policy and settings.estimator == "sampled" and num_on_policy < 1:
        raise ValueError("mixed_policy with the sampled estimator needs num_generations >= 2")
    actions, enumerated = _choose_actions(policy, inputs, settings, num_on_policy, generator)
    n_on = actions.shape[1]
    if settings.mixed_policy:
        extra = offpolicy_actions if offpolicy_actions is not None else torch.as_tensor(targets).view(-1, 1)
        actions = torch.cat([actions, extra.to(actions.device, actions.dtype)], dim=1)
    off_policy = None
    if settings.mixed_policy:
        off_policy = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
        off_policy[:, n_on:] = True

    logprobs = policy.log_prob(inputs, actions)
    weights = None
    if enumerated:
        on_w = _exact_weights(LogProbs(logprobs.logp[:, :n_on],
                                       None if logprobs.mask is None else logprobs.mask[:, :n_on]))
        if settings.mixed_policy:
            # same share as in the sampled group: (G-1)/G on-policy, 1/G for the ground truth
            on_share = (g - 1) / g
            off_w = torch.full((on_w.shape[0], actions.shape[1] - n_on), 1.0 / g, device=on_w.device)
            weights = torch.cat([on_w * on_share, off_w], dim=1)
        else:
            weights = on_w

    rewards = reward_fn(actions, targets, **context).to(logprobs.logp.device).float()
    advantages = compute_advantages(rewards, weights=weights, scale_rewards=settings.scale_rewards,
                                    center=settings.center, eps=settings.std_eps)
    old_logp = old_policy.log_prob(inputs, actions).logp if old_policy is not None else None
    ref_logp = ref_policy.log_prob(inputs, actions).logp if ref_policy is not None else None
    out = policy_loss(logprobs.logp, advantages, mask=logprobs.mask, old_logp=old_logp, ref_logp=ref_logp,
                      weights=weights, off_policy=off_policy, sample_weights=sample_weights,
                      epsilon=settings.epsilon, epsilon_high=settings.epsilon_high, beta=settings.beta,
                      kl_estimator=settings.kl_estimator, loss_type=settings.loss_type,
                      max_tokens=settings.max_tokens, surrogate=settings.surrogate)
    stats = dict(out.stats)
    stats.update(reward_stats(rewards, weights))
    abs_adv = advantages.detach().abs()
    stats["advantage_abs"] = abs_adv.mean() if weights is None else (weights * abs_adv).sum(1).mean()
    entropy = policy.entropy(inputs)
    if entropy is not None:
        stats["entropy"] = entropy.detach().float().mean()
    return GRPOOutput(out.loss, stats, actions, rewards, advantages, weights)


__all__ = ["GRPOSettings", "GRPOOutput", "grpo_loss", "Estimator"]
