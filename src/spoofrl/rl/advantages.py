"""Group-relative advantages from rewards [B, N] (B inputs, N samples of each).

    A = (r - mean) / (std + eps)      scale_rewards = group | batch
    A =  r - mean                     scale_rewards = none   (Dr. GRPO, arXiv 2503.20783: no std scaling)
    A =  r                            center = False         (the study's "GRPO w/o neg." ablation)

- `group`: mean and std over the N samples of each input (the GRPO formula, DeepSeekMath arXiv 2402.03300;
  the binary-detection paper arXiv 2603.02914 writes it per utterance).
- `batch`: mean and std over all B x N rewards of the batch, as the binary-detection study's code does
  (nii-yamagishilab/AntiDeepfake algo/rl.py). TRL's `scale_rewards="batch"` keeps the group mean and only
  takes the std over the batch; for the expected gradient the choice of mean does not matter (a baseline
  that does not depend on the sampled action adds nothing in expectation), only its variance.
- `none`: centre per group, no scaling.

Samples are either drawn (uniform weights; the std then uses Bessel's N-1 correction like torch.std, as
TRL and the study do) or enumerated with probability `weights` (the `exact` estimator; moments are the
exact ones under those probabilities, which the sampled estimates converge to).
"""
from __future__ import annotations

from typing import Literal

import torch

ScaleRewards = Literal["group", "batch", "none"]
SCALE_CHOICES = ("group", "batch", "none")


def _uniform(rewards: torch.Tensor) -> torch.Tensor:
    return torch.full_like(rewards, 1.0 / rewards.shape[1])


def _moments(rewards: torch.Tensor, weights: torch.Tensor, dims: tuple[int, ...], bessel: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std over `dims` (weights sum to 1 over those dims)."""
    mean = (weights * rewards).sum(dims, keepdim=True)
    var = (weights * (rewards - mean) ** 2).sum(dims, keepdim=True)
    if bessel:
        n = 1
        for d in dims:
            n *= rewards.shape[d]
        if n > 1:
            var = var * n / (n - 1)
    return mean, var.clamp_min(0.0).sqrt()


def compute_advantages(rewards: torch.Tensor, *, weights: torch.Tensor | None = None,
                       scale_rewards: ScaleRewards = "group", center: bool = True,
                       eps: float = 1e-5) -> torch.Tensor:
    """Advantages [B, N] from rewards [B, N].

    weights: None for N drawn samples (uniform), else [B, N] probabilities of enumerated samples summing to 1
    over N for each input. center=False returns the raw rewards (no centring, no scaling).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, N], got shape {tuple(rewards.shape)}")
    if scale_rewards not in SCALE_CHOICES:
        raise ValueError(f"scale_rewards must be one of {SCALE_CHOICES}, got {scale_rewards!r}")
    rewards = rewards.float()
    if not center:
        return rewards.clone()
    bessel = weights is None
    w = _uniform(rewards) if weights is None else weights.float()
    if scale_rewards == "batch":
        mean, std = _moments(rewards, w / rewards.shape[0], (0, 1), bessel)
        return (rewards - mean) / (std + eps)
    mean, std = _moments(rewards, w, (1,), bessel)
    if scale_rewards == "none":
        return rewards - mean
    return (rewards - mean) / (std + eps)


def reward_stats(rewards: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean reward and mean within-group std (detached), under the same weighting as the advantages."""
    rewards = rewards.detach().float()
    w = _uniform(rewards) if weights is None else weights.detach().float()
    mean, std = _moments(rewards, w, (1,), weights is None)
    return {"reward_mean": mean.mean(), "reward_std": std.mean()}


__all__ = ["compute_advantages", "reward_stats", "ScaleRewards", "SCALE_CHOICES"]
