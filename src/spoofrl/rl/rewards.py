"""Reward functions: (actions, targets, context) -> rewards [B, N] as floats.

`actions` is whatever a Policy produced for B inputs and N samples each: class indices [B, N] for a
classifier, token ids [B, N, T] for a generative model. A reward function scores each of the N samples of
each input; it never needs gradients. Several rewards combine with weights into one scalar per sample,
the way TRL's `reward_weights` do; FT-GRPO (arXiv 2601.02983) weights accuracy : format : frequency-time
grounding as 1 : 0.1 : 0.1. The binary-detection study (arXiv 2603.02914) uses one reward: 1 when the
sampled label equals the truth, 0 otherwise (`LabelMatchReward`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch


class RewardFunction(Protocol):
    """Anything callable as `fn(actions, targets, **context) -> Tensor[B, N]` with a `name` for logging."""

    name: str

    def __call__(self, actions: torch.Tensor, targets: Any, **context: Any) -> torch.Tensor: ...


@dataclass
class LabelMatchReward:
    """`correct` when the sampled label equals the target label, else `wrong` (study: 1 and 0).

    actions [B, N] integer labels; targets [B] integer labels.
    """

    correct: float = 1.0
    wrong: float = 0.0
    name: str = "label_match"

    def __call__(self, actions: torch.Tensor, targets: torch.Tensor, **context: Any) -> torch.Tensor:
        if actions.dim() != 2:
            raise ValueError(f"LabelMatchReward expects actions [B, N], got shape {tuple(actions.shape)}")
        hit = actions == targets.to(actions.device).view(-1, 1)
        values = torch.tensor([self.wrong, self.correct], dtype=torch.float32, device=actions.device)
        return values[hit.long()]


@dataclass
class FunctionReward:
    """Wrap a plain function `fn(actions, targets, **context) -> [B, N]` (numbers or a tensor) as a reward."""

    fn: Callable[..., Any]
    name: str = "custom"

    def __call__(self, actions: torch.Tensor, targets: Any, **context: Any) -> torch.Tensor:
        out = torch.as_tensor(self.fn(actions, targets, **context), dtype=torch.float32, device=actions.device)
        if out.shape != actions.shape[:2]:
            raise ValueError(f"reward '{self.name}' returned shape {tuple(out.shape)}, expected "
                             f"{tuple(actions.shape[:2])} (one value per input and sample)")
        return out


class WeightedRewards:
    """A weighted sum of reward functions: r = sum_i w_i r_i (weights default to 1 each).

    `components` returns each function's own rewards so a trainer can log them separately.
    """

    def __init__(self, functions: Sequence[RewardFunction], weights: Sequence[float] | None = None):
        if not functions:
            raise ValueError("WeightedRewards needs at least one reward function")
        weights = [1.0] * len(functions) if weights is None else [float(w) for w in weights]
        if len(weights) != len(functions):
            raise ValueError(f"{len(functions)} reward functions but {len(weights)} weights")
        self.functions = list(functions)
        self.weights = weights
        self.name = "+".join(f.name for f in self.functions)

    def _evaluate(self, actions: torch.Tensor, targets: Any, context: dict) -> list[torch.Tensor]:
        values = []
        for fn in self.functions:
            value = fn(actions, targets, **context).float()
            if value.shape != actions.shape[:2]:
                raise ValueError(f"reward '{fn.name}' returned shape {tuple(value.shape)}, expected "
                                 f"{tuple(actions.shape[:2])}")
            values.append(value)
        return values

    def components(self, actions: torch.Tensor, targets: Any, **context: Any) -> dict[str, torch.Tensor]:
        """Each function's unweighted rewards [B, N], by name (for logging)."""
        return {fn.name: v for fn, v in zip(self.functions, self._evaluate(actions, targets, context))}

    def __call__(self, actions: torch.Tensor, targets: Any, **context: Any) -> torch.Tensor:
        values = self._evaluate(actions, targets, context)
        return sum(w * r for w, r in zip(self.weights, values))


__all__ = ["RewardFunction", "LabelMatchReward", "FunctionReward", "WeightedRewards"]
