"""GRPO for generative policies: one rollout (generate, score, record log-probs) and then the loss over it.

`grpo_loss` (spoofrl.rl.grpo) samples, scores and differentiates in one call. For a token-sequence policy
(an audio LLM writing a rationale and a verdict) this module splits the step the way TRL's GRPOTrainer does:

    rollout = make_rollout(policy, batch, rewards, settings, ref_policy=ref, num_iterations=2)
    history = train_on_rollout(policy, rollout, settings, optimizer, num_iterations=2, micro_batch_size=4)

`make_rollout`, everything under torch.no_grad() and each piece once per rollout: G completions per item
(G - 1 plus the reference text under mixed-policy GRPO), their texts, every reward of the `RewardSet`
scored once, group advantages, the old policy's per-token log-probs (only when they can differ from the
current ones: an explicit `old_policy`, or num_iterations > 1) and the reference policy's.
`rollout_loss` takes the clipped, KL-regularised loss of `spoofrl.rl.loss.policy_loss` over the rollout in
micro-batches of items, each backpropagated on its own, weighted so that the gradient is the one of the
whole rollout in one forward, for every loss_type. `train_on_rollout` takes `num_iterations` optimizer
steps on one rollout.

Correspondence with TRL (GRPOConfig names):
- `num_iterations` is TRL's num_iterations (mu in the GRPO paper): optimizer passes per rollout. With 1 the
  old log-probs are not computed; the ratio is exp(logp - logp.detach()) = 1 with the gradient of log pi,
  as TRL's `per_token_logps.detach()`. Passes after the first see ratio != 1, so clipping acts.
- micro-batches ~ TRL's per_device_train_batch_size x gradient_accumulation_steps: the B x G sequences never
  go through one forward with gradient.
- `mask_truncated_completions` is TRL's option: a completion with no EOS within the length limit keeps its
  reward and its place in the advantage statistics but gets a zero loss mask.

Where spoofrl differs:
- micro_batch_size counts items (each with its G completions), not completions: a group stays together;
- the micro-batch weighting is exact for every loss_type. TRL divides grpo / bnpo / dr_grpo micro-batch
  losses by the number of accumulation steps, which equals the full-batch loss only for equal micro-batches
  (and never for bnpo's per-micro-batch token count); here grpo / dr_grpo are weighted by each micro-batch's
  share of the sequences and bnpo / dapo divide by the token count of the whole rollout (dapo: of all
  processes, like TRL's num_items_in_batch);
- rewards are the text rewards of `spoofrl.rewards` (columns as one dict, a sample no reward applies to is
  an error); advantages follow `compute_advantages` (its `batch` scaling differs from TRL's, see there).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from spoofrl.rewards.base import RewardContext, RewardScores, RewardSet
from spoofrl.rl.advantages import compute_advantages, reward_stats
from spoofrl.rl.grpo import GRPOSettings
from spoofrl.rl.loss import LOSS_TYPES, LossOutput, policy_loss
from spoofrl.rl.policy import LogProbs, Policy
from spoofrl.rows import Rows, row_indices



@dataclass
class Rollout:
    """B items with N completions each, and what the loss needs of them, recorded once."""

    inputs: Any                          # the batch (an AlmBatch, or a tensor of inputs)
    actions: torch.Tensor                # [B, N, T] token ids
    mask: torch.Tensor                   # [B, N, T] bool loss mask (truncated ones zeroed if asked)
    old_logp: torch.Tensor | None        # [B, N, T] behaviour log-probs; None: the current ones (ratio 1)
    ref_logp: torch.Tensor | None        # [B, N, T] reference log-probs; None: no reference policy
    rewards: torch.Tensor                # [B, N] total reward
    advantages: torch.Tensor             # [B, N]
    off_policy: torch.Tensor | None      # [B, N] bool: the reference text of mixed-policy GRPO
    truncated: torch.Tensor              # [B, N] bool: no EOS within the length limit
    texts: list[list[str]]               # B lists of N decoded completions
    stats: dict[str, float] = field(default_factory=dict)
    per_reward: dict[str, torch.Tensor] = field(default_factory=dict)   # name -> [B, N], NaN: not applicable

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_generations(self) -> int:
        return int(self.actions.shape[1])

    def select(self, rows: Rows) -> Rollout:
        """The sub-rollout of items `rows` (indices, a bool mask or a slice), e.g. one micro-batch. The
        token axis is kept whole, so normalisers that depend on it (dr_grpo) stay those of the rollout."""
        idx = row_indices(rows, len(self))

        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[torch.tensor(idx, dtype=torch.long, device=x.device)]

        return replace(self, inputs=select_inputs(self.inputs, idx), actions=pick(self.actions),
                       mask=pick(self.mask), old_logp=pick(self.old_logp), ref_logp=pick(self.ref_logp),
                       rewards=pick(self.rewards), advantages=pick(self.advantages),
                       off_policy=pick(self.off_policy), truncated=pick(self.truncated),
                       texts=[self.texts[i] for i in idx],
                       per_reward={k: pick(v) for k, v in self.per_reward.items()})


def select_inputs(inputs: Any, rows: Sequence[int]) -> Any:
    """Items `rows` of a batch: a tensor indexed along its first axis, else its own `select` (AlmBatch)."""
    if isinstance(inputs, torch.Tensor):   # first: a tensor's own select(dim, index) means something else
        return inputs[torch.tensor(list(rows), dtype=torch.long, device=inputs.device)]
    if hasattr(inputs, "select"):
        return inputs.select(list(rows))
    raise TypeError(f"cannot take items of a {type(inputs).__name__}: give the batch a select(rows) method")


def item_chunks(size: int, micro_batch_size: int | None) -> list[list[int]]:
    """Consecutive micro-batches of item indices; the last one may be smaller. None: one batch."""
    if micro_batch_size is None:
        return [list(range(size))]
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1 or None, got {micro_batch_size}")
    return [list(range(i, min(i + micro_batch_size, size))) for i in range(0, size, micro_batch_size)]


# --- the rollout ---------------------------------------------------------------------------------------------
def make_rollout(policy: Policy, inputs: Any, rewards: RewardSet, settings: GRPOSettings, *,
                 old_policy: Policy | None = None, ref_policy: Policy | None = None,
                 reference_texts: Sequence[str] | None = None, columns: dict[str, list] | None = None,
                 prompts: Sequence[str] | None = None, generator: torch.Generator | None = None,
                 num_iterations: int = 1, step: int = 0, mask_truncated_completions: bool = False,
                 micro_batch_size: int | None = None) -> Rollout:
    """Generate, decode, score and record log-probs once for the `num_iterations` optimizer passes to come.

    reference_texts (default inputs.references): one per item, the off-policy member of each group under
    settings.mixed_policy. columns / prompts (default inputs.columns / inputs.prompts): one entry per item,
    handed to the rewards repeated N times, item-major. micro_batch_size: items per no-grad scoring forward
    (None: all at once). The policy needs `sample` and `log_prob`, plus either `completions(actions)`
    (mask, text, truncated; AlmPolicy) or `decode(actions)` and an `eos_token_id`; under mixed_policy also
    `reference_actions(texts, length)`."""
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    if settings.estimator != "sampled":
        raise ValueError("a rollout samples its completions: settings.estimator must be 'sampled'")
    policies = [p for p in (policy, old_policy, ref_policy) if p is not None]
    for p in policies:
        p.reset()
    try:
        with torch.no_grad():
            return _make_rollout(policy, inputs, rewards, settings, old_policy, ref_policy, reference_texts,
                                 columns, prompts, generator, num_iterations, step, mask_truncated_completions,
                                 micro_batch_size)
    finally:
        for p in policies:
            p.reset()


def _make_rollout(policy, inputs, rewards, settings, old_policy, ref_policy, reference_texts, columns, prompts,
                  generator, num_iterations, step, mask_truncated, micro_batch_size) -> Rollout:
    actions, off_policy = _sample_groups(policy, inputs, settings, reference_texts, generator)
    # the policy's own no-grad log-probs serve twice when it has no `completions`: mask and old log-probs
    needs_old = old_policy is None and num_iterations > 1
    own = _frozen_logprobs(policy, inputs, actions, micro_batch_size) \
        if needs_old or not hasattr(policy, "completions") else None
    valid, texts, truncated = _describe(policy, actions, own)
    scores = _score(rewards, inputs, actions, valid, texts, columns, prompts, step)
    total = scores.total.to(actions.device)
    advantages = compute_advantages(total, scale_rewards=settings.scale_rewards, center=settings.center,
                                    eps=settings.std_eps)
    if old_policy is not None:
        old_logp = _frozen_logprobs(old_policy, inputs, actions, micro_batch_size).logp
    else:
        old_logp = own.logp if needs_old else None
    ref_logp = None if ref_policy is None else _frozen_logprobs(ref_policy, inputs, actions, micro_batch_size).logp
    # TRL's mask_truncated_completions: out of the loss only; the reward and the group statistics keep them
    mask = valid & ~truncated.unsqueeze(-1) if mask_truncated else valid
    stats = _rollout_stats(scores, total, advantages, valid, truncated, off_policy)
    return Rollout(inputs, actions, mask, old_logp, ref_logp, total, advantages, off_policy, truncated, texts,
                   stats, {k: v.to(actions.device) for k, v in scores.per_reward.items()})


def _sample_groups(policy, inputs, settings, reference_texts, generator
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, G, T] completions: G drawn, or under mixed_policy G - 1 drawn plus the reference text last."""
    g = settings.num_generations
    if g < 1:
        raise ValueError(f"num_generations must be >= 1, got {g}")
    if not settings.mixed_policy:
        return policy.sample(inputs, g, generator), None
    if g < 2:
        raise ValueError("mixed_policy needs num_generations >= 2 (G - 1 samples plus the reference)")
    texts = reference_texts if reference_texts is not None else getattr(inputs, "references", None)
    if texts is None:
        raise ValueError("mixed_policy needs reference_texts (or inputs with references), one per item")
    sampled = policy.sample(inputs, g - 1, generator)
    sampled, reference = _aligned_reference(policy, sampled, list(texts))
    actions = torch.cat([sampled, reference.to(sampled.device, sampled.dtype)], dim=1)
    off_policy = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
    off_policy[:, -1] = True
    return actions, off_policy


def _aligned_reference(policy, sampled: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference ids [B, 1, T'] and the samples on a common length T'.

    Generation stops once every row has ended, so the samples may be shorter than the reference: then the
    samples are padded (harmless after their EOS) up to the reference, at most the length limit. Otherwise,
    as grpo_loss's sequence path does, the reference is padded or cut to the samples' length."""
    t = sampled.shape[-1]
    natural = policy.reference_actions(texts)
    longest = _common_length(policy, sampled, natural.shape[-1])
    if longest > t:
        sampled = F.pad(sampled, (0, longest - t), value=_token_id(policy, "pad_token_id"))
    reference = natural if natural.shape[-1] == longest else policy.reference_actions(texts, length=longest)
    return sampled, reference


def _common_length(policy, sampled: torch.Tensor, reference_length: int) -> int:
    t = sampled.shape[-1]
    limit = getattr(getattr(policy, "sampling", None), "max_completion_length", None)
    pad, eos = _token_id(policy, "pad_token_id"), _token_id(policy, "eos_token_id")
    if reference_length <= t or limit is None or pad is None or eos is None:
        return t
    if not bool((sampled == eos).any(-1).all()):   # a truncated sample: padding would extend it
        return t
    return max(t, min(reference_length, int(limit)))


def _token_id(policy, name: str) -> int | None:
    """A special token id of the policy or of its model (AlmPolicy keeps them on `model`)."""
    value = getattr(policy, name, None)
    if value is None:
        value = getattr(getattr(policy, "model", None), name, None)
    return None if value is None else int(value)


def _frozen_logprobs(policy, inputs, actions: torch.Tensor, micro_batch_size: int | None) -> LogProbs:
    """log_prob of every action without gradient, in micro-batches of items, concatenated along B."""
    parts = []
    for rows in item_chunks(actions.shape[0], micro_batch_size):
        policy.reset()
        index = torch.tensor(rows, dtype=torch.long, device=actions.device)
        parts.append(policy.log_prob(select_inputs(inputs, rows) if micro_batch_size else inputs,
                                     actions[index] if micro_batch_size else actions))
    policy.reset()
    logp = torch.cat([p.logp.detach() for p in parts])
    mask = None if parts[0].mask is None else torch.cat([p.mask for p in parts])
    return LogProbs(logp, mask)


def _describe(policy, actions: torch.Tensor, own: LogProbs | None
              ) -> tuple[torch.Tensor, list[list[str]], torch.Tensor]:
    """(valid-token mask [B, N, T] bool, texts, truncated [B, N]) of the completions."""
    if hasattr(policy, "completions"):
        comps = policy.completions(actions)
        return comps.mask.to(actions.device).bool(), comps.text, comps.truncated.to(actions.device).bool()
    if own.mask is None or actions.dim() != 3:
        raise ValueError("a rollout is for token-sequence policies: log_prob must return a [B, N, T] mask")
    eos = _token_id(policy, "eos_token_id")
    if not hasattr(policy, "decode") or eos is None:
        raise TypeError(f"{type(policy).__name__} needs completions(actions), or decode(actions) and an "
                        f"eos_token_id, to give its completions' texts and truncation to the rewards")
    truncated = ~(actions == eos).any(-1)
    return own.mask.to(actions.device).bool(), policy.decode(actions), truncated


def _score(rewards: RewardSet, inputs, actions: torch.Tensor, valid: torch.Tensor, texts: list[list[str]],
           columns, prompts, step: int) -> RewardScores:
    """Every reward once on the B x N completions, flattened item-major."""
    b, n, t = actions.shape
    columns = dict(getattr(inputs, "columns", None) or {}) if columns is None else columns
    prompts = getattr(inputs, "prompts", None) if prompts is None else prompts
    for name, values in columns.items():
        if len(values) != b:
            raise ValueError(f"column {name!r} has {len(values)} values for {b} items")
    if prompts is not None and len(prompts) != b:
        raise ValueError(f"{len(prompts)} prompts for {b} items")
    flat_ids, flat_valid = actions.reshape(b * n, t).cpu(), valid.reshape(b * n, t).cpu()
    return rewards.score([text for group in texts for text in group],
                         [ids[keep].tolist() for ids, keep in zip(flat_ids, flat_valid)],
                         None if prompts is None else [p for p in prompts for _ in range(n)],
                         {k: [v for v in values for _ in range(n)] for k, values in columns.items()},
                         RewardContext(num_generations=n, step=step), shape=(b, n))


def _rollout_stats(scores: RewardScores, total, advantages, valid, truncated, off_policy) -> dict[str, float]:
    """Reward statistics (the RewardSet's per-reward ones included) and, over the drawn completions only
    (not the reference text of mixed-policy GRPO), their length and truncated share."""
    stats = dict(scores.stats)
    stats.update({k: float(v) for k, v in reward_stats(total).items()})
    stats["advantage_abs"] = float(advantages.abs().mean())
    drawn = torch.ones_like(truncated) if off_policy is None else ~off_policy
    lengths = valid.sum(-1).float()[drawn]
    stats["completion_length/mean"] = float(lengths.mean())
    stats["completion_length/max"] = float(lengths.max())
    stats["truncated_share"] = float(truncated[drawn].float().mean())
    return stats


# --- the loss over a rollout ---------------------------------------------------------------------------------
@dataclass
class _Weighting:
    """How a micro-batch's `policy_loss` is scaled so the micro-batch losses sum to the full-batch loss.

    policy_loss weights sequence (b, n) of a batch of B items by seq_w = w_b / (B N) (w_b the item's sample
    weight, 1 by default), so over a micro-batch of b' items it uses 1 / (b' N) where the whole rollout
    uses 1 / (B N):
    - grpo, dr_grpo: the micro-batch loss is sum seq_w * (sequence term) with a normaliser that does not
      depend on the batch (the sequence's own tokens; the constant max_tokens), so scaling by b' / B is exact;
    - bnpo, dapo: the loss is a token sum over a token count. Called as bnpo on a micro-batch, policy_loss
      returns S' / C' (S' = sum of w_b x token terms, C' = sum of w_b x tokens over its items; its 1 / (b' N)
      cancels). With m' = C' / (B N) and M = the sum of m' over the rollout (policy_loss's
      (seq_w * tokens).sum() of the whole rollout), the scale m' / M turns it into S' / (B N M), whose sum
      over micro-batches is bnpo's full-batch loss. For dapo the scale is m' world / M_global, M_global = M
      summed over processes: policy_loss's dapo, sum * world / M_global (DDP then averages over processes).
      The counts come from the loss mask, fixed for the rollout, so each scale is a constant and the
      gradient is exact too.
    dapo is never passed to policy_loss in a micro-batch: it would all_reduce its count on every call, and
    processes with different numbers of micro-batches would deadlock. The one all_reduce is in `for_rollout`.
    """

    loss_type: str
    item_weight: torch.Tensor        # [B] w_b
    token_mass: torch.Tensor         # [B] w_b * tokens of item b / (B N): m' of a micro-batch is their sum
    denominator: torch.Tensor        # M (bnpo) or M_global / world (dapo); unused for grpo / dr_grpo

    @classmethod
    def for_rollout(cls, rollout: Rollout, loss_type: str, sample_weights: torch.Tensor | None) -> _Weighting:
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        b, n = rollout.actions.shape[:2]
        device = rollout.advantages.device
        weight = torch.ones(b, device=device) if sample_weights is None else \
            sample_weights.detach().float().reshape(b).to(device)
        tokens = rollout.mask.to(device).float().sum(dim=(1, 2))
        mass = weight * tokens / (b * n)
        denominator = mass.sum()
        if loss_type == "dapo":
            denominator = _global_token_mass(denominator)
        return cls(loss_type, weight, mass, denominator)

    @property
    def local_loss_type(self) -> str:
        return "bnpo" if self.loss_type == "dapo" else self.loss_type

    def loss_scale(self, rows: list[int]) -> torch.Tensor:
        if self.loss_type in ("grpo", "dr_grpo"):
            return torch.tensor(len(rows) / len(self.item_weight), device=self.token_mass.device)
        return self.token_mass[rows].sum() / self.denominator.clamp_min(1e-12)

    def stats_share(self, rows: list[int]) -> torch.Tensor:
        """Share of a micro-batch in the full-batch statistics (policy_loss's sequence-weighted means)."""
        return self.item_weight[rows].sum() / self.item_weight.sum().clamp_min(1e-12)


def _global_token_mass(local: torch.Tensor) -> torch.Tensor:
    """M_global / world: the mean over processes of the token mass (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return local
    total = local.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def _gradient_sync_skipper(policy):
    """DDP's no_sync of the policy's model, if any: micro-batches but the last accumulate locally, so each
    process syncs gradients once per pass whatever its number of micro-batches."""
    for owner in (policy, getattr(policy, "model", None)):
        no_sync = getattr(owner, "no_sync", None)
        if callable(no_sync):
            return no_sync
    return contextlib.nullcontext


def _check_loss_inputs(rollout: Rollout, settings: GRPOSettings, sample_weights) -> None:
    if settings.beta != 0.0 and rollout.ref_logp is None:
        raise ValueError("beta != 0 needs reference log-probs: make the rollout with a ref_policy")
    if rollout.actions.dim() != 3:
        raise ValueError(f"rollout actions must be [B, N, T], got shape {tuple(rollout.actions.shape)}")
    if sample_weights is not None and sample_weights.numel() != len(rollout):
        raise ValueError(f"sample_weights has {sample_weights.numel()} values for {len(rollout)} items")


def rollout_loss(policy: Policy, rollout: Rollout, settings: GRPOSettings, *, micro_batch_size: int | None = None,
                 backward: bool | Callable[[torch.Tensor], None] = True,
                 sample_weights: torch.Tensor | None = None) -> LossOutput:
    """The GRPO loss of the rollout, over micro-batches of `micro_batch_size` items (None: all at once).

    backward=True: each micro-batch's weighted loss is backpropagated at once (peak memory: one micro-batch;
    gradients accumulate in .grad) and the loss returned is detached. backward=False: the returned loss keeps
    its graph. A callable `backward` is called with each micro-batch's loss instead of loss.backward() (the
    trainer's: gradient scaling, a finite-loss check). Either way the loss and its gradient equal those of the
    whole rollout in one forward (see `_Weighting`); stats are clip_frac, ratio_mean and (with reference log-probs) kl, as policy_loss's."""
    _check_loss_inputs(rollout, settings, sample_weights)
    weighting = _Weighting.for_rollout(rollout, settings.loss_type, sample_weights)
    chunks = item_chunks(len(rollout), micro_batch_size)
    run_backward = backward if callable(backward) else (lambda loss: loss.backward()) if backward else None
    no_sync = _gradient_sync_skipper(policy) if run_backward else contextlib.nullcontext
    total = torch.zeros((), device=rollout.advantages.device)
    stats: dict[str, torch.Tensor] = {}
    try:
        for i, rows in enumerate(chunks):
            # DDP reads no_sync at forward time, so it covers the forward and the backward
            with no_sync() if i < len(chunks) - 1 else contextlib.nullcontext():
                part = rollout if len(chunks) == 1 else rollout.select(rows)
                out = _micro_batch_loss(policy, part, settings, weighting, rows, sample_weights is not None)
                if run_backward:
                    run_backward(out.loss)
            total = total + (out.loss.detach() if run_backward else out.loss)
            share = weighting.stats_share(rows)
            for key, value in out.stats.items():
                stats[key] = stats.get(key, 0.0) + share * value.detach()
    finally:
        policy.reset()
    return LossOutput(total, stats)


def _micro_batch_loss(policy, part: Rollout, settings: GRPOSettings, weighting: _Weighting, rows: list[int],
                      weighted: bool) -> LossOutput:
    """policy_loss of the items `rows` (the sub-rollout `part`), scaled to its share of the rollout's loss."""
    policy.reset()
    logprobs = policy.log_prob(part.inputs, part.actions)
    out = policy_loss(logprobs.logp, part.advantages, mask=part.mask, old_logp=part.old_logp,
                      ref_logp=part.ref_logp, off_policy=part.off_policy,
                      sample_weights=weighting.item_weight[rows] if weighted else None,
                      epsilon=settings.epsilon, epsilon_high=settings.epsilon_high, beta=settings.beta,
                      kl_estimator=settings.kl_estimator, loss_type=weighting.local_loss_type,
                      max_tokens=settings.max_tokens or part.actions.shape[-1], surrogate=settings.surrogate)
    return LossOutput(out.loss * weighting.loss_scale(rows), out.stats)


def train_on_rollout(policy: Policy, rollout: Rollout, settings: GRPOSettings, optimizer: torch.optim.Optimizer, *,
                     num_iterations: int, micro_batch_size: int | None, max_grad_norm: float | None = None,
                     sample_weights: torch.Tensor | None = None) -> list[dict[str, float]]:
    """TRL's mu loop: `num_iterations` optimizer steps on one rollout (zero grads, micro-batched loss with
    backward, clip to max_grad_norm, step). Returns per pass: loss, clip_frac, ratio_mean, kl (with a
    reference) and grad_norm (before clipping)."""
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    if num_iterations > 1 and rollout.old_logp is None:
        raise ValueError("num_iterations > 1 needs the old log-probs: make the rollout with the same "
                         "num_iterations (or an old_policy), else every pass would see ratio 1")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history = []
    for _ in range(num_iterations):
        optimizer.zero_grad(set_to_none=True)
        out = rollout_loss(policy, rollout, settings, micro_batch_size=micro_batch_size, backward=True,
                           sample_weights=sample_weights)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
        optimizer.step()
        history.append({"loss": float(out.loss), **{k: float(v) for k, v in out.stats.items()},
                        "grad_norm": float(norm)})
    return history


__all__ = ["Rollout", "item_chunks", "make_rollout", "rollout_loss", "select_inputs", "train_on_rollout"]
