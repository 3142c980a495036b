"""SFT: cross-entropy with optional class weights and label smoothing (the study's SFT baseline)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from spoofrl.training.config import ObjectiveConfig
from spoofrl.training.objectives.base import probability_stats


class SFTObjective:
    name = "sft"
    needs_old_policy = False
    needs_reference = False
    sample_weighted = False

    def __init__(self, cfg: ObjectiveConfig, class_weights: torch.Tensor | None = None):
        self.label_smoothing = cfg.label_smoothing
        if cfg.class_weights:
            class_weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
        self.class_weights = class_weights

    def __call__(self, batch, access, sample_weights, generator):
        logits = access.logits()
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, batch.targets, weight=weight, label_smoothing=self.label_smoothing)
        return loss, probability_stats(logits, batch.targets)
