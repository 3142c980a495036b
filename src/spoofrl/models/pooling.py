"""Utterance-level pooling of frame features [B, F, D] -> [B, D'], aware of each utterance's true length."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from spoofrl.models.base import frame_mask, masked_mean, masked_mean_std

PoolingName = Literal["mean", "mean_std", "attentive"]
POOLING_DOC = ("'mean' over valid frames, 'mean_std' (statistics pooling: mean and standard deviation), or "
               "'attentive' (attentive statistics pooling: learnt frame weights, weighted mean and std)")


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): a small network scores each frame; the softmax of the
    scores over valid frames weights the mean and standard deviation."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.score(feats).squeeze(-1)
        logits = logits.masked_fill(~frame_mask(lengths, feats.shape[1]), torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=1)[..., None]
        mean = (weights * feats).sum(1)
        var = (weights * (feats - mean[:, None]) ** 2).sum(1)
        return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)


class Pooling(nn.Module):
    """One of the pooling methods by name; `out_dim(in_dim)` gives the pooled size."""

    def __init__(self, name: str, dim: int):
        super().__init__()
        self.name = name
        self.attention = AttentiveStatsPooling(dim) if name == "attentive" else None

    @staticmethod
    def out_dim(name: str, dim: int) -> int:
        return dim if name == "mean" else 2 * dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.name == "mean":
            return masked_mean(feats, lengths)
        if self.name == "mean_std":
            return masked_mean_std(feats, lengths)
        return self.attention(feats, lengths)
