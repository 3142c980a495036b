"""Training objectives, plugged into the one trainer loop by name (`spoofrl.training.registry.OBJECTIVES`).

- `sft` (`sft.SFTObjective`): cross-entropy with optional class weights and label smoothing;
- `grpo` (`grpo.GRPOObjective`): GRPO with the detector's softmax as the policy (arXiv 2603.02914).
A new objective is one file here (a class with the `base.Objective` attributes, built as `cls(cfg.objective,
class_weights)`) plus one line in the registry table; `objective.name` and `stages` name it.
"""
from __future__ import annotations

import torch

from spoofrl.training.objectives.base import Objective, Stats, probability_stats
from spoofrl.training.registry import OBJECTIVES


def build_objective(cfg, name: str, class_weights: torch.Tensor | None = None) -> Objective:
    """The objective registered as `name`, with the options of `cfg` (an ObjectiveConfig)."""
    return OBJECTIVES.get(name)(cfg, class_weights)


__all__ = ["Objective", "Stats", "OBJECTIVES", "build_objective", "probability_stats"]
