"""A small ResNet over the feature image (time x frequency), as used for spoofing countermeasures on
log-mel / LFCC inputs: a 3x3 stem, stages of basic residual blocks (the first stage at full resolution, each
later one halving time and frequency), then statistics pooling over valid frames, an embedding layer and
a linear output."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spoofrl.config import ConfigError, option
from spoofrl.models.base import Backend, check_dropout, check_positive, pooled_lengths, zero_padding
from spoofrl.models.cnn_blocks import InputNorm, image_to_frames
from spoofrl.models.pooling import POOLING_DOC, Pooling, PoolingName


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch-norm and a shortcut (1x1 convolution when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(Backend):
    """Small ResNet (basic blocks) -> pooling over frames -> embedding -> Linear(2)."""

    @dataclass
    class Config:
        channels: list[int] = option(factory=lambda: [16, 32, 64, 128], doc="channels of each stage")
        blocks: list[int] = option(factory=lambda: [2, 2, 2, 2], doc="residual blocks in each stage")
        embed_dim: int = option(128, "size of the utterance embedding before the output layer")
        pooling: PoolingName = option("mean_std", POOLING_DOC)
        dropout: float = option(0.0, "dropout on the embedding")
        input_norm: bool = option(True, "batch-normalise each input feature dimension first")

        def validate(self):
            if not self.channels or len(self.channels) != len(self.blocks):
                raise ConfigError(f"channels and blocks need one entry per stage, got {self.channels} and "
                                  f"{self.blocks}")
            if any(c < 1 for c in self.channels) or any(b < 1 for b in self.blocks):
                raise ConfigError("channels and blocks must be positive")
            check_positive(embed_dim=self.embed_dim)
            check_dropout(dropout=self.dropout)

    def __init__(self, cfg: "ResNet.Config", in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.input_norm = InputNorm(in_dim, cfg.input_norm)
        first = cfg.channels[0]
        self.stem = nn.Sequential(nn.Conv2d(1, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU(True))
        stages, channels, freq = [], first, in_dim
        for i, (width, count) in enumerate(zip(cfg.channels, cfg.blocks)):
            stride = 1 if i == 0 else 2
            freq = (freq + stride - 1) // stride
            stages += [BasicBlock(channels if j == 0 else width, width, stride if j == 0 else 1) for j in range(count)]
            channels = width
        self.stages = nn.Sequential(*stages)
        self.downsampling = 2 ** (len(cfg.channels) - 1)
        frame_dim = channels * freq
        self.pool = Pooling(cfg.pooling, frame_dim)
        self.embed = nn.Sequential(nn.Linear(Pooling.out_dim(cfg.pooling, frame_dim), cfg.embed_dim),
                                   nn.LayerNorm(cfg.embed_dim), nn.ReLU(True), nn.Dropout(cfg.dropout))
        self.out = nn.Linear(cfg.embed_dim, 2)

    def forward(self, feats, lengths):
        x = self.input_norm(feats, lengths).unsqueeze(1)  # [B, 1, F, D]
        frames = image_to_frames(self.stages(self.stem(x)))  # [B, F / 2^(stages-1), C * D']
        frame_lengths = pooled_lengths(lengths, self.downsampling)
        return self.out(self.embed(self.pool(zero_padding(frames, frame_lengths), frame_lengths)))
