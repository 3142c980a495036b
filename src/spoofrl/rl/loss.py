"""The GRPO policy loss over per-sample log-probabilities of any action.

Inputs are log pi(a) of N actions for each of B inputs: [B, N] when an action is one step (a class label),
or [B, N, T] with a mask [B, N, T] when it is a token sequence (log-prob of each generated token). Per token,

    ratio   = exp(logp - old_logp)                       old_logp = None -> logp.detach() (ratio 1, gradient
                                                         of log pi: the unclipped "GRPO_s" variant of the
                                                         binary-detection study, arXiv 2603.02914)
    surr    = min(ratio * A, clip(ratio, 1 - eps, 1 + eps_high) * A)   (PPO clipping, arXiv 1707.06347;
                                                         eps_high > eps is DAPO's clip-higher, arXiv 2503.14476)
    kl      = k1: logp - ref_logp,  k3: exp(ref - logp) - (ref - logp) - 1   (Schulman's estimators; GRPO
                                                         and the study use k3)
    loss_t  = -(surr - beta * kl)

`surrogate="logp"` writes the unclipped on-policy surrogate as A * logp instead of ratio * A: the same
gradient (the ratio is 1 with gradient grad log pi), but the loss *value* is -mean(A log pi) + beta KL, the
quantity the AntiDeepfake reference logs for the 'w/o negative reward' ablation (A = raw reward), so its
training curves are comparable. Only without clipping, old policy or off-policy samples (there the two differ).

Off-policy samples (mixed-policy GRPO, arXiv 2509.16990: the ground truth added to the group) have a
behaviour log-probability of 0 (probability 1), so their ratio is pi(a) itself, and they are never clipped.

Normalisation (`loss_type`, TRL names):
- `grpo`: mean over the tokens of each sequence, then over sequences (DeepSeekMath GRPO);
- `bnpo`: sum over all tokens / number of tokens in this process's batch;
- `dapo`: sum over all tokens / number of tokens in the whole batch across processes (DAPO's token-level loss);
- `dr_grpo`: sum over all tokens / (sequences x max_tokens), a constant normaliser (Dr. GRPO, arXiv 2503.20783).
For one-step actions (T = 1) all four give the mean over the B x N samples.

Samples enumerated with probabilities (`weights` [B, N], the exact estimator) replace the 1/N average with
that probability; `sample_weights` [B] multiply each input's terms (class-balanced losses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist

LossType = Literal["grpo", "bnpo", "dapo", "dr_grpo"]
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
KLEstimator = Literal["k1", "k3"]
KL_ESTIMATORS = ("k1", "k3")
Surrogate = Literal["ratio", "logp"]
SURROGATES = ("ratio", "logp")


@dataclass
class LossOutput:
    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3") -> torch.Tensor:
    """Per-sample estimate of KL(pi || ref) from log-probs of actions drawn from pi."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        delta = ref_logp - logp
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def _as_tokens(x: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """[B, N] -> [B, N, 1] so one code path serves labels and token sequences."""
    if x is None:
        return None
    return x.unsqueeze(-1) if ndim == 2 else x


def _sequence_weights(shape: torch.Size, weights: torch.Tensor | None, sample_weights: torch.Tensor | None,
                      device) -> torch.Tensor:
    """Weight of each (input, sample) pair in the average: 1/(B N), or probability / B; times input weights."""
    b, n = shape[0], shape[1]
    w = torch.full((b, n), 1.0 / (b * n), device=device) if weights is None else weights.float() / b
    if sample_weights is not None:
        w = w * sample_weights.float().view(-1, 1).to(device)
    return w


def _global_sum(value: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of a scalar over all processes (and the world size); itself when not distributed."""
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        return value, dist.get_world_size()
    return value.detach(), 1


def _normalise(per_token: torch.Tensor, mask: torch.Tensor, seq_w: torch.Tensor, loss_type: str,
               max_tokens: int | None) -> torch.Tensor:
    tokens = mask.sum(-1)                                   # [B, N]
    summed = (per_token * mask).sum(-1)                     # [B, N]
    if loss_type == "grpo":
        return (seq_w * summed / tokens.clamp_min(1)).sum()
    if loss_type == "bnpo":
        return (seq_w * summed).sum() / (seq_w * tokens).sum().clamp_min(1e-12)
    if loss_type == "dapo":
        total, world = _global_sum((seq_w * tokens).sum())
        # DDP averages gradients over processes, so scale by the world size to get sum / global tokens
        return (seq_w * summed).sum() * world / total.clamp_min(1e-12)
    if loss_type == "dr_grpo":
        return (seq_w * summed).sum() / float(max_tokens or mask.shape[-1])
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def _token_mean(x: torch.Tensor, mask: torch.Tensor, seq_w: torch.Tensor) -> torch.Tensor:
    """Weighted mean over sequences of the per-sequence token mean (for statistics)."""
    per_seq = (x * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    return (seq_w * per_seq).sum() / seq_w.sum().clamp_min(1e-12)


def policy_loss(logp: torch.Tensor, advantages: torch.Tensor, *, mask: torch.Tensor | None = None,
                old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
                weights: torch.Tensor | None = None, off_policy: torch.Tensor | None = None,
                sample_weights: torch.Tensor | None = None, epsilon: float | None = 0.2,
                epsilon_high: float | None = None, beta: float = 0.0, kl_estimator: KLEstimator = "k3",
                loss_type: LossType = "grpo", max_tokens: int | None = None,
                surrogate: Surrogate = "ratio") -> LossOutput:
    """The clipped, KL-regularised group policy loss and its statistics (see the module doc).

    logp [B, N] or [B, N, T] (with mask); advantages [B, N]; old_logp / ref_logp like logp; weights [B, N]
    (exact estimator) or None; off_policy [B, N] bool; sample_weights [B]; epsilon None = no clipping.
    """
    ndim = logp.dim()
    if ndim not in (2, 3):
        raise ValueError(f"logp must be [B, N] or [B, N, T], got shape {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:2]:
        raise ValueError(f"advantages {tuple(advantages.shape)} do not match logp {tuple(logp.shape[:2])}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp (log-probs of the reference policy)")
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if surrogate == "logp" and (epsilon is not None or old_logp is not None or off_policy is not None):
        raise ValueError("surrogate 'logp' is the unclipped on-policy form: it needs epsilon None, no old_logp "
                         "and no off-policy samples")
    logp3 = _as_tokens(logp, ndim)
    mask3 = torch.ones_like(logp3) if mask is None else _as_tokens(mask, ndim).to(logp3.dtype)
    behaviour = logp3.detach() if old_logp is None else _as_tokens(old_logp, ndim).detach()
    off3 = None
    if off_policy is not None:
        off3 = off_policy.bool().unsqueeze(-1).expand_as(logp3)
        behaviour = torch.where(off3, torch.zeros_like(behaviour), behaviour)  # behaviour probability 1
    adv = advantages.detach().float().unsqueeze(-1)
    ratio = torch.exp(logp3 - behaviour)
    surr = ratio * adv if surrogate == "ratio" else logp3 * adv
    clipped_mask = torch.zeros_like(ratio, dtype=torch.bool)
    if epsilon is not None:
        high = epsilon if epsilon_high is None else epsilon_high
        clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high) * adv
        clipped_mask = ((ratio < 1.0 - epsilon) & (adv < 0)) | ((ratio > 1.0 + high) & (adv > 0))
        if off3 is not None:
            clipped = torch.where(off3, surr, clipped)  # off-policy samples are never clipped
            clipped_mask = clipped_mask & ~off3
        surr = torch.minimum(surr, clipped)
    per_token = -surr
    kl = None
    if ref_logp is not None:
        kl = kl_estimate(logp3, _as_tokens(ref_logp, ndim).detach(), kl_estimator)
        if beta != 0.0:
            per_token = per_token + beta * kl
    seq_w = _sequence_weights(logp3.shape, weights, sample_weights, logp3.device)
    loss = _normalise(per_token, mask3, seq_w, loss_type, max_tokens)
    stats = {"clip_frac": _token_mean(clipped_mask.float(), mask3, seq_w).detach(),
             "ratio_mean": _token_mean(ratio.detach(), mask3, seq_w)}
    if kl is not None:
        stats["kl"] = _token_mean(kl.detach(), mask3, seq_w)
    return LossOutput(loss, stats)


__all__ = ["policy_loss", "kl_estimate", "LossOutput", "LOSS_TYPES", "KL_ESTIMATORS", "LossType", "KLEstimator"]
