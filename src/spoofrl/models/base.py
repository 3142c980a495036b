"""Interfaces every front-end and back-end implements, plus small shared tensor helpers.

Front-end: waveform batch [B, T] (float32, at the model's sample rate, on the model's device) + lengths [B]
  in samples -> features [B, F, D] + frame lengths [B]. `out_dim` = D.
  A front-end runs in two stages so that a frozen encoder's output can be cached (see features/cache.py):
    `encode(wave, lengths) -> (raw [B, F, ...], frame_lengths)`   the expensive, possibly frozen part;
    `head(raw, frame_lengths) -> feats [B, F, D]`                  a cheap trainable part (identity by default),
  e.g. an SSL encoder's hidden states (encode) and their learnable layer weighting / projection (head).
  The frame axis of `raw` is always axis 1.
Back-end: features [B, F, D] + frame lengths -> logits [B, 2] over (spoof, bonafide).
Each component has a nested `Config` dataclass of documented options (see spoofrl.config.option);
its constructor takes that config (and, for back-ends, the front-end's `out_dim`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from spoofrl.config import to_dict
from spoofrl.errors import ConfigError


class Frontend(nn.Module):
    @dataclass
    class Config:
        pass

    out_dim: int
    # True when caching `encode` outputs on disk pays off (an expensive frozen encoder such as an SSL model);
    # parameter-free spectral front-ends are cheaper to recompute than to read back.
    cache_recommended: bool = False

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def head(self, raw: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        return raw

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, frame_lengths = self.encode(wave, lengths)
        return self.head(raw, frame_lengths), frame_lengths

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters used by `encode` (all of them unless a subclass has a trainable head)."""
        return self.parameters()

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """Tensors that determine `encode`'s output (fingerprinted into feature-cache keys)."""
        return self.state_dict()

    @property
    def is_frozen(self) -> bool:
        """True when `encode` has no trainable parameter, so its output for an input never changes."""
        return not any(p.requires_grad for p in self.encoder_parameters())

    def resolved_options(self) -> dict[str, Any]:
        """Every option needed to rebuild this component (saved beside its weights)."""
        return to_dict(self.cfg)

    def encode_signature(self) -> dict[str, Any]:
        """The options that determine `encode`'s output (part of feature-cache keys); head-only options
        are left out so that changing them reuses a cache."""
        return self.resolved_options()


class Backend(nn.Module):
    @dataclass
    class Config:
        pass

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def resolved_options(self) -> dict[str, Any]:
        return to_dict(self.cfg)


def check_positive(**values: float) -> None:
    """ConfigError unless every value is > 0 (NaN fails too); for option validation."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def check_dropout(**probabilities: float) -> None:
    """ConfigError unless every value is a dropout probability in [0, 1) (NaN fails too)."""
    for name, p in probabilities.items():
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {p}")


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, F] bool mask, True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: [B, F, D] -> [B, D]."""
    mask = frame_mask(lengths, feats.shape[1]).to(feats.dtype)[..., None]
    return (feats * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def masked_mean_std(feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Concatenated mean and standard deviation over valid frames: [B, F, D] -> [B, 2D]."""
    mask = frame_mask(lengths, feats.shape[1]).to(feats.dtype)[..., None]
    count = mask.sum(1).clamp_min(1.0)
    mean = (feats * mask).sum(1) / count
    var = (((feats - mean[:, None]) ** 2) * mask).sum(1) / count
    return torch.cat([mean, (var + eps).sqrt()], dim=-1)


def masked_max(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Maximum over valid frames: [B, F, D] -> [B, D]."""
    mask = frame_mask(lengths, feats.shape[1])[..., None]
    return feats.masked_fill(~mask, torch.finfo(feats.dtype).min).amax(1)


def zero_padding(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set frames past each length to 0 ([B, F, ...]), so padding looks the same whatever produced it."""
    mask = frame_mask(lengths, feats.shape[1])
    return feats * mask.reshape(*mask.shape, *([1] * (feats.dim() - 2))).to(feats.dtype)


def samples_to_frames(lengths: torch.Tensor, hop: int, total_frames: int | torch.Tensor) -> torch.Tensor:
    """Frame counts of a centred STFT-like analysis with hop `hop`, capped at `total_frames`."""
    return torch.minimum(lengths // hop + 1, torch.as_tensor(total_frames, device=lengths.device))


def pooled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Frame counts after a ceil-mode pooling by `factor` along time."""
    return (lengths + factor - 1) // factor
