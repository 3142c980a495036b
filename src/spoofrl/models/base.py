"""Interfaces every front-end and back-end implements.

Front-end: waveform batch [B, T] (float32, 16 kHz, on the model's device) + lengths [B] in samples
  -> features [B, F, D] + frame lengths [B]. `out_dim` = D.
Back-end: features [B, F, D] + frame lengths -> logits [B, 2] over (spoof, bonafide).
Each component has a nested `Config` dataclass of documented options (see spoofrl.config.option);
its constructor takes that config (and, for back-ends, the front-end's `out_dim`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class Frontend(nn.Module):
    @dataclass
    class Config:
        pass

    out_dim: int

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Backend(nn.Module):
    @dataclass
    class Config:
        pass

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, F] bool mask, True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: [B, F, D] -> [B, D]."""
    mask = frame_mask(lengths, feats.shape[1]).to(feats.dtype)[..., None]
    return (feats * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def samples_to_frames(lengths: torch.Tensor, hop: int, total_frames: int) -> torch.Tensor:
    """Frame counts of a centred STFT-like analysis with hop `hop`, capped at `total_frames`."""
    return torch.clamp(lengths // hop + 1, max=total_frames)
