"""Frame-wise feed-forward network + pooling + linear: the light back-end of EnvSSLAM-FFN (fused frozen
SSL layers -> FFN), also a reasonable head for any front-end."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from spoofrl.config import ConfigError, option
from spoofrl.models.base import Backend, check_dropout
from spoofrl.models.pooling import POOLING_DOC, Pooling, PoolingName


class FFN(Backend):
    """LayerNorm -> [Linear -> activation -> dropout] per hidden size, frame by frame -> pooling -> Linear(2)."""

    @dataclass
    class Config:
        hidden: list[int] = option(factory=lambda: [256, 128], doc="sizes of the frame-wise hidden layers")
        activation: Literal["gelu", "relu", "silu"] = option("gelu", "non-linearity between layers")
        dropout: float = option(0.2, "dropout after each hidden layer")
        pooling: PoolingName = option("mean", POOLING_DOC)
        input_norm: bool = option(True, "layer-normalise the input features (SSL layers differ in scale)")

        def validate(self):
            if not self.hidden or any(h < 1 for h in self.hidden):
                raise ConfigError(f"hidden must list positive sizes, got {self.hidden}")
            check_dropout(dropout=self.dropout)

    def __init__(self, cfg: "FFN.Config", in_dim: int):
        super().__init__()
        self.cfg = cfg
        act = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[cfg.activation]
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if cfg.input_norm else []
        size = in_dim
        for width in cfg.hidden:
            layers += [nn.Linear(size, width), act(), nn.Dropout(cfg.dropout)]
            size = width
        self.frames = nn.Sequential(*layers)
        self.pool = Pooling(cfg.pooling, size)
        self.out = nn.Linear(Pooling.out_dim(cfg.pooling, size), 2)

    def forward(self, feats, lengths):
        return self.out(self.pool(self.frames(feats), lengths))
