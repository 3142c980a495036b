"""Log-mel filterbank front-end on torch.stft (batched, on the model's device)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import librosa
import torch

from spoofrl.config import option
from spoofrl.features.spectral import check_no_empty_filters, check_stft_options, power_spectrogram
from spoofrl.models.base import Frontend, check_positive, samples_to_frames


def mel_filterbank(cfg: "LogMel.Config") -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] Slaney-style mel filters (librosa's default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters; check_no_empty_filters says why
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min,
                                 fmax=cfg.f_max)
    return torch.tensor(fb, dtype=torch.float32)


class LogMel(Frontend):
    """Log mel-filterbank energies, one vector per 10 ms frame: [B, frames, n_mels]."""

    @dataclass
    class Config:
        sample_rate: int = option(16000, "input sample rate (Hz)")
        n_fft: int = option(512, "FFT size (samples)")
        win_length: int = option(400, "analysis window (samples); 25 ms at 16 kHz")
        hop_length: int = option(160, "hop between frames (samples); 10 ms at 16 kHz")
        n_mels: int = option(80, "number of mel bands")
        f_min: float = option(20.0, "lowest band edge (Hz)")
        f_max: float = option(8000.0, "highest band edge (Hz); at most sample_rate / 2")
        log_floor: float = option(1e-10, "energies are clamped to at least this before the log")

        def validate(self):
            check_stft_options(self.n_fft, self.win_length, self.hop_length, self.f_min, self.f_max,
                               self.sample_rate)
            check_positive(n_mels=self.n_mels, log_floor=self.log_floor)
            check_no_empty_filters(mel_filterbank(self), "mel", self.n_fft)

    def __init__(self, cfg: "LogMel.Config"):
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.n_mels
        self.register_buffer("mel_fb", mel_filterbank(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def encode(self, wave, lengths):
        power = power_spectrogram(wave, self.cfg.n_fft, self.cfg.hop_length, self.cfg.win_length, self.window)
        mel = torch.matmul(self.mel_fb, power).clamp_min(self.cfg.log_floor).log().transpose(1, 2)
        return mel, samples_to_frames(lengths, self.cfg.hop_length, mel.shape[1])
