"""Mean-pool over time + linear layer: the AntiDeepfake back-end (Wang et al.), SSL features -> 2 logits."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from spoofrl.config import option
from spoofrl.models.base import Backend, check_dropout, masked_mean


class PoolLinear(Backend):
    """Mean over valid frames -> dropout -> Linear(2) (AntiDeepfake's head on SSL features)."""

    @dataclass
    class Config:
        dropout: float = option(0.0, "dropout on the pooled vector")
        normalize: bool = option(True, "layer-normalise frame features before pooling (log-mel scales vary)")

        def validate(self):
            check_dropout(dropout=self.dropout)

    def __init__(self, cfg: "PoolLinear.Config", in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.norm = nn.LayerNorm(in_dim) if cfg.normalize else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(in_dim, 2)

    def forward(self, feats, lengths):
        return self.head(self.drop(masked_mean(self.norm(feats), lengths)))
