"""Shared pieces of the spectral front-ends: a batched power spectrogram on torch.stft and time derivatives."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spoofrl.errors import ConfigError


def check_stft_options(n_fft: int, win_length: int, hop_length: int, f_min: float, f_max: float,
                       sample_rate: int) -> None:
    """Raise ConfigError on an impossible analysis setting (checked once, at build time)."""
    if not 0 < win_length <= n_fft:
        raise ConfigError(f"win_length {win_length} must be in 1..n_fft ({n_fft})")
    if hop_length < 1:
        raise ConfigError(f"hop_length must be >= 1, got {hop_length}")
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(f"need 0 <= f_min < f_max <= sample_rate/2; got f_min={f_min}, f_max={f_max}, "
                          f"sample_rate={sample_rate}")


def check_no_empty_filters(filters: torch.Tensor, what: str, n_fft: int) -> None:
    """ConfigError when a filter covers no FFT bin: its log energy would be a constant (the log floor), a
    dimension that carries nothing, a sign of too many bands for the FFT size or a too narrow band range."""
    empty = int((filters.sum(dim=1) <= 0).sum())
    if empty:
        raise ConfigError(f"{empty} of {filters.shape[0]} {what} filters cover no FFT bin with n_fft={n_fft}; "
                          f"use fewer filters, a larger n_fft or a wider f_min..f_max")


def power_spectrogram(wave: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
                      window: torch.Tensor) -> torch.Tensor:
    """|STFT|^2 of a batch [B, T] -> [B, n_fft // 2 + 1, frames] (centred frames, reflect padding).

    Very short inputs (shorter than half the FFT) are zero-padded first, since reflect padding needs
    n_fft // 2 samples. While exporting to ONNX (whose exporter cannot take torch.stft's complex output)
    the same transform runs as a convolution with a windowed DFT basis."""
    if wave.shape[-1] <= n_fft // 2:
        wave = F.pad(wave, (0, n_fft // 2 + 1 - wave.shape[-1]))
    if torch.onnx.is_in_onnx_export():
        return _power_spectrogram_by_conv(wave, n_fft, hop_length, window)
    spec = torch.stft(wave, n_fft, hop_length, win_length, window, center=True, return_complex=True)
    return spec.real ** 2 + spec.imag ** 2


def _power_spectrogram_by_conv(wave: torch.Tensor, n_fft: int, hop_length: int,
                               window: torch.Tensor) -> torch.Tensor:
    """torch.stft(center=True, reflect) power, computed as a strided convolution (ONNX friendly)."""
    full = torch.zeros(n_fft, dtype=torch.float64)
    offset = (n_fft - window.shape[0]) // 2  # torch.stft centres a shorter window inside the FFT frame
    full[offset:offset + window.shape[0]] = window.detach().to("cpu", torch.float64)
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * n / n_fft
    basis = torch.cat([torch.cos(angle) * full, -torch.sin(angle) * full]).to(wave.dtype).to(wave.device)
    padded = F.pad(wave.unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect")
    spec = F.conv1d(padded, basis.unsqueeze(1), stride=hop_length)
    real, imag = spec.chunk(2, dim=1)
    return real ** 2 + imag ** 2


def delta_kernel(dim: int, width: int) -> torch.Tensor:
    """[dim, 1, 2 * width + 1] depthwise kernel of the HTK delta regression (for `deltas`).

    d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum n^2), with N = `width`."""
    n = torch.arange(-width, width + 1, dtype=torch.float32)
    taps = n / (2 * (n[width + 1:] ** 2).sum())
    return taps.expand(dim, 1, -1).contiguous()


def deltas(feats: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Regression deltas along time of [B, F, D] features, edges replicated; `kernel` from `delta_kernel`."""
    width = kernel.shape[-1] // 2
    padded = F.pad(feats.transpose(1, 2), (width, width), mode="replicate")  # [B, D, F + 2N]
    return F.conv1d(padded, kernel, groups=kernel.shape[0]).transpose(1, 2)
