"""The structured spectrogram stream of the small ALM (`AlmConfig.inputs: spectrogram | both`), after
SDD-APALLM (arXiv 2601.23066): besides the raw-audio encoding, the model reads an explicit band x time grid
of log energies, so fine time-frequency artefacts reach the LM as tokens of their own instead of being
summarised (or drowned by semantic cues) inside a speech encoder.

Per clip: |STFT|^2 (Hann window of 2 hops, hop `spectrogram_hop_ms`), summed into `spectrogram_bands`
equal-width bands from 0 Hz to Nyquist, in dB relative to the clip's loudest band-frame (level-invariant;
floored at -80 dB, scaled by 1/20); every `spectrogram_patch` frames form one patch (bands x frames values),
patch-embedded by one Linear layer to the LM width, plus a learned band-energy-stream embedding. Clips are
analysed one by one at their own length, so an item's tokens do not depend on its batch mates.
"""
from __future__ import annotations

import torch
from torch import nn

from spoofrl.alm.config import AlmConfig

FLOOR_DB = -80.0


def band_energies(wave: torch.Tensor, sample_rate: int, bands: int, hop_ms: float) -> torch.Tensor:
    """[T, bands] dB of one 1-D clip relative to its loudest cell, floored at FLOOR_DB."""
    hop = max(int(round(sample_rate * hop_ms / 1000)), 1)
    n_fft = 2 * hop
    if wave.numel() < n_fft:
        wave = torch.nn.functional.pad(wave, (0, n_fft - wave.numel()))
    spec = torch.stft(wave.float(), n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=wave.device),
                      center=False, return_complex=True).abs().pow(2)         # [n_fft/2 + 1, T]
    edges = torch.linspace(0, spec.shape[0], bands + 1, device=wave.device).round().long()
    power = torch.stack([spec[edges[i]:max(int(edges[i + 1]), int(edges[i]) + 1)].sum(0) for i in range(bands)],
                        dim=-1)                                               # [T, bands]
    db = 10 * torch.log10(power.clamp_min(1e-12))
    return (db - db.max()).clamp_min(FLOOR_DB)


class SpectrogramEncoder(nn.Module):
    """waves [B, S] + lengths [B] -> band-grid patch embeddings [B, P, lm_width] + patch counts [B]."""

    def __init__(self, cfg: AlmConfig):
        super().__init__()
        self.sample_rate, self.bands = cfg.sample_rate, cfg.spectrogram_bands
        self.hop_ms, self.patch = cfg.spectrogram_hop_ms, cfg.spectrogram_patch
        self.embed = nn.Linear(self.bands * self.patch, cfg.lm_width)
        self.norm = nn.LayerNorm(cfg.lm_width)
        self.stream = nn.Parameter(torch.zeros(cfg.lm_width))   # marks these positions as the spectrogram's

    def patches(self, wave: torch.Tensor) -> torch.Tensor:
        """[P, bands * patch] of one clip (the last frames padded at the floor to a whole patch)."""
        grid = band_energies(wave, self.sample_rate, self.bands, self.hop_ms) / 20.0   # [T, bands], in [-4, 0]
        extra = (-grid.shape[0]) % self.patch
        if extra:
            grid = torch.cat([grid, grid.new_full((extra, self.bands), FLOOR_DB / 20.0)])
        return grid.view(-1, self.patch, self.bands).reshape(-1, self.patch * self.bands)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(wave.device.type, enabled=False):
            grids = [self.patches(wave[i, :int(n)]) for i, n in enumerate(lengths.tolist())]
        counts = torch.tensor([g.shape[0] for g in grids], device=wave.device)
        out = wave.new_zeros((len(grids), int(counts.max()), self.embed.out_features), dtype=torch.float32)
        for i, g in enumerate(grids):
            out[i, :g.shape[0]] = self.norm(self.embed(g)) + self.stream
        return out, counts
