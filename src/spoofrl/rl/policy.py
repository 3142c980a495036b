"""Policies: what GRPO needs from a model, whatever its actions are.

A Policy turns a batch of `inputs` (anything its model understands) into actions and their log-probabilities:

- `sample(inputs, num, generator)` -> actions for each of the B inputs, `num` each: [B, num] class labels,
  or [B, num, T] token sequences;
- `log_prob(inputs, actions)` -> `LogProbs(logp, mask)`: logp [B, N] for one-step actions, or [B, N, T]
  per-token log-probs with a validity mask for sequences;
- `enumerate_actions(inputs)` -> every action [B, K] when the action space is small (a classifier's labels),
  enabling the `exact` estimator (weight each action by its probability instead of sampling); None otherwise;
- `entropy(inputs)` -> [B] entropy of the action distribution, when cheap (None otherwise).

`CategoricalPolicy` is the classifier: a softmax over K labels from `logits_fn(inputs) -> [B, K]` (for a
detector, K = 2 over (spoof, bonafide)). A generative detector (an audio LLM writing a rationale and a
verdict) implements the same four methods over token sequences and reuses the whole GRPO core.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F


@dataclass
class LogProbs:
    logp: torch.Tensor                 # [B, N] or [B, N, T]
    mask: torch.Tensor | None = None   # [B, N, T] bool for token sequences; None for one-step actions


class Policy(ABC):
    @abstractmethod
    def sample(self, inputs: Any, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`num` actions per input, drawn from the policy (no gradient)."""

    @abstractmethod
    def log_prob(self, inputs: Any, actions: torch.Tensor) -> LogProbs:
        """Log-probabilities of the given actions (with gradient unless the policy is frozen)."""

    def enumerate_actions(self, inputs: Any) -> torch.Tensor | None:
        """All actions [B, K] for a small discrete action space; None if it cannot be enumerated."""
        return None

    def entropy(self, inputs: Any) -> torch.Tensor | None:
        """Entropy [B] of the action distribution of each input, or None."""
        return None

    def reset(self) -> None:
        """Forget anything cached for the last batch (called before and after each loss evaluation)."""


class CategoricalPolicy(Policy):
    """Softmax over K classes of `logits_fn(inputs) -> [B, K]`.

    The logits of the last `inputs` object are memoised until `reset()`, so sampling, log-probs and entropy
    of one batch cost one forward pass. `grad=False` makes a frozen policy (old or reference model): its forward runs
    under `torch.no_grad()`.
    """

    def __init__(self, logits_fn: Callable[[Any], torch.Tensor], *, grad: bool = True, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.logits_fn = logits_fn
        self.grad = grad
        self.temperature = temperature
        self._memo: tuple[Any, torch.Tensor] | None = None

    def reset(self) -> None:
        self._memo = None

    def logits(self, inputs: Any) -> torch.Tensor:
        if self._memo is not None and self._memo[0] is inputs:
            return self._memo[1]
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            logits = self.logits_fn(inputs).float() / self.temperature
        if logits.dim() != 2:
            raise ValueError(f"logits_fn must return [B, K], got shape {tuple(logits.shape)}")
        self._memo = (inputs, logits)
        return logits

    def log_probs_all(self, inputs: Any) -> torch.Tensor:
        """Log-probabilities of every class [B, K]."""
        return F.log_softmax(self.logits(inputs), dim=-1)

    def sample(self, inputs: Any, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = F.softmax(self.logits(inputs).detach(), dim=-1)
        return torch.multinomial(probs, num, replacement=True, generator=generator)

    def log_prob(self, inputs: Any, actions: torch.Tensor) -> LogProbs:
        logp_all = self.log_probs_all(inputs)
        return LogProbs(torch.gather(logp_all, 1, actions.to(logp_all.device).long()))

    def enumerate_actions(self, inputs: Any) -> torch.Tensor:
        logits = self.logits(inputs)
        b, k = logits.shape
        return torch.arange(k, device=logits.device).expand(b, k)

    def entropy(self, inputs: Any) -> torch.Tensor:
        logp = self.log_probs_all(inputs).detach()
        return -(logp.exp() * logp).sum(-1)


__all__ = ["Policy", "CategoricalPolicy", "LogProbs"]
