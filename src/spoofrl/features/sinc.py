"""Raw-waveform front-end with a sinc filterbank (SincNet; the first layer of RawNet2 and AASIST).

Each filter is a band-pass made of the difference of two windowed ideal low-pass (sinc) filters, so it
has only two parameters, its low cut-off and its bandwidth. Those are learnable (SincNet) or fixed at their
mel-spaced initial values (`learnable: false`, as in RawNet2 / AASIST). After the convolution the output is
rectified (absolute value) and max-pooled over time, as AASIST does before its encoder:
output [B, frames, n_filters] with frames = ceil(samples / pool).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from spoofrl.config import ConfigError, option
from spoofrl.models.base import Frontend, pooled_lengths


def _hz_to_mel(hz):
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


def initial_band_edges(n_filters: int, sample_rate: int, lowest_hz: float, highest_hz: float,
                       scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(low cut-offs, bandwidths) in Hz of `n_filters` adjacent bands covering lowest..highest."""
    if scale == "mel":
        edges = _mel_to_hz(torch.linspace(_hz_to_mel(lowest_hz), _hz_to_mel(highest_hz), n_filters + 1,
                                          dtype=torch.float64))
    else:
        edges = torch.linspace(lowest_hz, highest_hz, n_filters + 1, dtype=torch.float64)
    return edges[:-1].float(), (edges[1:] - edges[:-1]).float()


class SincFilterbank(Frontend):
    """Sinc band-pass filterbank on the raw waveform, rectified and max-pooled: [B, frames, n_filters]."""

    @dataclass
    class Config:
        sample_rate: int = option(16000, "input sample rate (Hz)")
        n_filters: int = option(70, "number of band-pass filters (AASIST: 70, RawNet2: 20)")
        kernel_size: int = option(129, "filter length in samples (odd; AASIST: 129, RawNet2: 1025)")
        scale: Literal["mel", "linear"] = option("mel", "spacing of the initial bands")
        learnable: bool = option(True, "learn the cut-offs (SincNet); false keeps the initial bands fixed "
                                       "(RawNet2 / AASIST)")
        min_low_hz: float = option(50.0, "lowest allowed low cut-off (Hz)")
        min_band_hz: float = option(50.0, "narrowest allowed bandwidth (Hz)")
        pool: int = option(3, "max-pool factor over time after rectification (AASIST: 3); 1 = none")
        log_compress: bool = option(False, "apply log(1 + x) to the rectified output (helps back-ends without "
                                           "an input normalisation)")

        def validate(self):
            if self.kernel_size < 3 or self.kernel_size % 2 == 0:
                raise ConfigError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
            if self.n_filters < 1 or self.pool < 1:
                raise ConfigError("n_filters and pool must be >= 1")
            if not (self.min_low_hz >= 0 and self.min_band_hz > 0):
                raise ConfigError(f"need min_low_hz >= 0 and min_band_hz > 0 (a band of zero width divides by "
                                  f"zero), got {self.min_low_hz} and {self.min_band_hz}")
            if self.min_low_hz + self.min_band_hz >= self.sample_rate / 2:
                raise ConfigError("min_low_hz + min_band_hz must stay below sample_rate / 2")

    def __init__(self, cfg: "SincFilterbank.Config"):
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.n_filters
        highest = cfg.sample_rate / 2 - (cfg.min_low_hz + cfg.min_band_hz)
        low, band = initial_band_edges(cfg.n_filters, cfg.sample_rate, 30.0, highest, cfg.scale)
        # Stored as offsets above the minimums; |.| keeps them valid whatever the optimiser does.
        low_offset, band_offset = (low - cfg.min_low_hz).clamp_min(0.0), (band - cfg.min_band_hz).clamp_min(0.0)
        if cfg.learnable:
            self.low_offset_hz = nn.Parameter(low_offset)
            self.band_offset_hz = nn.Parameter(band_offset)
        else:
            self.register_buffer("low_offset_hz", low_offset)
            self.register_buffer("band_offset_hz", band_offset)
        half = cfg.kernel_size // 2
        taps = torch.arange(-half, half + 1, dtype=torch.float32)
        self.register_buffer("taps", taps, persistent=False)
        self.register_buffer("window", torch.hamming_window(cfg.kernel_size, periodic=False), persistent=False)

    def band_edges_hz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current (low, high) cut-offs of every filter, in Hz."""
        cfg = self.cfg
        low = cfg.min_low_hz + self.low_offset_hz.abs()
        high = torch.clamp(low + cfg.min_band_hz + self.band_offset_hz.abs(), max=cfg.sample_rate / 2)
        return low, high

    def filters(self) -> torch.Tensor:
        """[n_filters, 1, kernel_size] band-pass impulse responses, unit gain at the band centre."""
        low, high = self.band_edges_hz()
        f_low, f_high = low[:, None] / self.cfg.sample_rate, high[:, None] / self.cfg.sample_rate
        centre = self.taps == 0
        t = torch.where(centre, torch.ones_like(self.taps), self.taps)  # avoid 0/0 (and NaN gradients)

        def lowpass(f):  # ideal low-pass with cut-off f (cycles/sample): 2f sinc(2 f t)
            return torch.where(centre, 2 * f, torch.sin(2 * math.pi * f * t) / (math.pi * t))

        band_pass = (lowpass(f_high) - lowpass(f_low)) * self.window
        return (band_pass / (2 * (f_high - f_low))).unsqueeze(1)

    def encode(self, wave, lengths):
        out = F.conv1d(wave.unsqueeze(1), self.filters(), padding=self.cfg.kernel_size // 2).abs()
        if self.cfg.pool > 1:
            out = F.max_pool1d(out, self.cfg.pool, ceil_mode=True)
        if self.cfg.log_compress:
            out = torch.log1p(out)
        return out.transpose(1, 2), torch.minimum(pooled_lengths(lengths, self.cfg.pool),
                                                  torch.as_tensor(out.shape[-1], device=lengths.device))
