"""Light CNN (LCNN) with max-feature-map activations, the ASVspoof 2019/2021 LFCC-LCNN baseline back-end
(Lavrentyeva et al., 2019; Wang & Yamagishi, 2021).

Input features [B, F, D] are treated as a one-channel time x frequency image. Nine convolutions with
max-feature-map (MFM: split the channels in two halves, keep the element-wise maximum) and four 2x2
max-poolings reduce it 16-fold along both axes; each remaining frame (channels x frequency) then goes through
two bidirectional LSTM layers with a residual connection (Wang's variant; `lstm: false` skips them),
is averaged over valid frames and mapped to 2 logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spoofrl.config import ConfigError, option
from spoofrl.models.base import Backend, check_dropout, masked_mean, pooled_lengths, zero_padding
from spoofrl.models.cnn_blocks import InputNorm, image_to_frames

_LAYOUT = [
    # kernel, channels after MFM, batch-norm after, 2x2 max-pool after (pool comes before the batch-norm)
    (5, 32, False, True),
    (1, 32, True, False), (3, 48, True, True),
    (1, 48, True, False), (3, 64, False, True),
    (1, 64, True, False), (3, 32, True, False),
    (1, 32, True, False), (3, 32, False, True),
]
_POOLINGS = sum(1 for *_, pool in _LAYOUT if pool)


class MaxFeatureMap(nn.Module):
    """Element-wise maximum of the two halves of the channel axis (halves the channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return torch.maximum(first, second)


class LCNN(Backend):
    """LCNN (MFM) over the feature image -> optional BLSTM -> mean over frames -> Linear(2)."""

    @dataclass
    class Config:
        width: float = option(1.0, "multiplier on every layer's channel count (1.0 = the published sizes)")
        lstm: bool = option(True, "two residual bidirectional LSTM layers before pooling (Wang's LCNN-LSTM)")
        dropout: float = option(0.7, "dropout on the convolutional output (0.7 in the published model)")
        input_norm: bool = option(True, "batch-normalise each input feature dimension first")

        def validate(self):
            if not self.width > 0:
                raise ConfigError(f"width must be > 0, got {self.width}")
            check_dropout(dropout=self.dropout)

    def __init__(self, cfg: "LCNN.Config", in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.input_norm = InputNorm(in_dim, cfg.input_norm)
        layers: list[nn.Module] = []
        channels = 1
        for kernel, out, batch_norm, pool in _LAYOUT:
            out = max(1, round(out * cfg.width))
            layers += [nn.Conv2d(channels, 2 * out, kernel, padding=kernel // 2), MaxFeatureMap()]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            channels = out
        self.convs = nn.Sequential(*layers)
        freq = in_dim
        for _ in range(_POOLINGS):
            freq = (freq + 1) // 2
        dim = channels * freq
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.lstm:
            self.lstm1 = nn.LSTM(dim, dim // 2 or 1, batch_first=True, bidirectional=True)
            self.lstm2 = nn.LSTM(2 * (dim // 2 or 1), dim // 2 or 1, batch_first=True, bidirectional=True)
            lstm_dim = 2 * (dim // 2 or 1)
            self.lstm_skip = nn.Identity() if lstm_dim == dim else nn.Linear(dim, lstm_dim)
            dim = lstm_dim
        self.out = nn.Linear(dim, 2)

    def forward(self, feats, lengths):
        x = self.input_norm(feats, lengths).unsqueeze(1)  # [B, 1, F, D]
        frames = self.drop(image_to_frames(self.convs(x)))  # [B, F/16, C * D/16]
        frame_lengths = pooled_lengths(lengths, 2 ** _POOLINGS)
        frames = zero_padding(frames, frame_lengths)
        if self.cfg.lstm:
            hidden, _ = self.lstm1(frames)
            hidden, _ = self.lstm2(hidden)
            frames = hidden + self.lstm_skip(frames)
        return self.out(masked_mean(frames, frame_lengths))
