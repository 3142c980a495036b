"""Generative SFT: teacher-forced cross-entropy of each item's target completion (+ EOS) given its audio and
prompt; prompt, audio and padding carry no loss (TRL's SFTTrainer with completion_only_loss). The loss is the
mean over the batch's target tokens (transformers' labels loss); under data.balance: loss each item's tokens
are weighted by its class weight."""
from __future__ import annotations

import torch

from spoofrl.errors import ConfigError
from spoofrl.training.config import ObjectiveConfig


class GenerativeSFT:
    name = "sft"
    needs_old_policy = False
    needs_reference = False
    sample_weighted = True

    def __init__(self, cfg: ObjectiveConfig, class_weights: torch.Tensor | None = None):
        if cfg.label_smoothing or cfg.class_weights:
            raise ConfigError("objective.label_smoothing / class_weights are options of the detector's SFT; for "
                              "task generation use data.balance: loss to weight the classes")

    def __call__(self, batch, access, sample_weights, generator):
        targets = access.model.completions_from_text(batch.references)
        logp, mask = access.score(batch, targets, grad=True)
        tokens = mask.sum(dim=(1, 2)).float()                       # [B]
        weight = torch.ones_like(tokens) if sample_weights is None else sample_weights.float()
        loss = -(logp.sum(dim=(1, 2)) * weight).sum() / (tokens * weight).sum().clamp_min(1)
        with torch.no_grad():
            per_token = logp.detach()[mask]
        return loss, {"target_tokens": tokens.mean(), "p_token": per_token.exp().mean()}
