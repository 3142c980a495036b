"""Linear-frequency cepstral coefficients (LFCC), the ASVspoof 2019/2021 baseline front-end, on torch.stft.

Power spectrum -> triangular filters equally spaced in Hz -> log -> DCT-II (orthonormal) -> first
`n_lfcc` coefficients, optionally with first and second regression deltas appended.
The ASVspoof 2021 LFCC-LCNN baseline uses 20 filters, 20 coefficients, 20 ms windows, 10 ms hops,
a 512-point FFT and deltas + delta-deltas (60 dimensions): these are the defaults.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spoofrl.config import ConfigError, option
from spoofrl.features.spectral import (check_no_empty_filters, check_stft_options, delta_kernel, deltas,
                                       power_spectrogram)
from spoofrl.models.base import Frontend, check_positive, samples_to_frames


def linear_filterbank(n_filters: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """[n_filters, n_fft // 2 + 1] triangular filters whose centres are equally spaced in Hz."""
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = torch.linspace(f_min, f_max, n_filters + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_in, n_out] orthonormal DCT-II basis: x @ dct gives the first n_out coefficients."""
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    k = torch.arange(n_out, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


class LFCC(Frontend):
    """LFCC (+ deltas): [B, frames, n_lfcc * (1 + delta_order)]."""

    @dataclass
    class Config:
        sample_rate: int = option(16000, "input sample rate (Hz)")
        n_fft: int = option(512, "FFT size (samples)")
        win_length: int = option(320, "analysis window (samples); 20 ms at 16 kHz")
        hop_length: int = option(160, "hop between frames (samples); 10 ms at 16 kHz")
        n_filters: int = option(20, "number of linearly spaced triangular filters")
        n_lfcc: int = option(20, "cepstral coefficients kept (at most n_filters), c0 included")
        f_min: float = option(0.0, "lowest filter edge (Hz)")
        f_max: float = option(8000.0, "highest filter edge (Hz); at most sample_rate / 2")
        delta_order: int = option(2, "0: static only; 1: + deltas; 2: + deltas and delta-deltas")
        delta_width: int = option(2, "frames each side in the delta regression (HTK's DELTAWINDOW)")
        log_floor: float = option(1e-10, "filter energies are clamped to at least this before the log")

        def validate(self):
            check_stft_options(self.n_fft, self.win_length, self.hop_length, self.f_min, self.f_max,
                               self.sample_rate)
            if not 1 <= self.n_lfcc <= self.n_filters:
                raise ConfigError(f"n_lfcc must be in 1..n_filters ({self.n_filters}), got {self.n_lfcc}")
            if self.delta_order not in (0, 1, 2):
                raise ConfigError(f"delta_order must be 0, 1 or 2, got {self.delta_order}")
            if self.delta_width < 1:
                raise ConfigError(f"delta_width must be >= 1, got {self.delta_width}")
            check_positive(log_floor=self.log_floor)
            check_no_empty_filters(linear_filterbank(self.n_filters, self.n_fft, self.sample_rate, self.f_min,
                                                     self.f_max), "linear", self.n_fft)

    def __init__(self, cfg: "LFCC.Config"):
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.n_lfcc * (1 + cfg.delta_order)
        fb = linear_filterbank(cfg.n_filters, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max)
        self.register_buffer("filters", fb, persistent=False)
        self.register_buffer("dct", dct_matrix(cfg.n_filters, cfg.n_lfcc), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self.register_buffer("delta_kernel", delta_kernel(cfg.n_lfcc, cfg.delta_width), persistent=False)

    def encode(self, wave, lengths):
        cfg = self.cfg
        power = power_spectrogram(wave, cfg.n_fft, cfg.hop_length, cfg.win_length, self.window)
        energies = torch.matmul(self.filters, power).clamp_min(cfg.log_floor).log().transpose(1, 2)
        feats = torch.matmul(energies, self.dct)  # [B, frames, n_lfcc]
        parts = [feats]
        for _ in range(cfg.delta_order):
            parts.append(deltas(parts[-1], self.delta_kernel))
        out = torch.cat(parts, dim=-1)
        return out, samples_to_frames(lengths, cfg.hop_length, out.shape[1])
