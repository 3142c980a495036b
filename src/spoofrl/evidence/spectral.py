"""Frequency-domain measures: band energies, long-term bandwidth and codec band limiting, spectral flatness
and phase irregularity per band. Formulas in docs/evidence.md."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spoofrl.evidence.config import EvidenceConfig
from spoofrl.evidence.frames import DYNAMIC_RANGE_DB, Spectra, band_masks


def band_energy_db(spec: Spectra, masks: list[np.ndarray]) -> list[float]:
    """Each band's share of the clip's total power over all frames, in dB (0 dB = all the power).

    Bands that partition 0..Nyquist have shares summing to 1 in linear power."""
    per_bin = spec.power.sum(axis=0)
    total = per_bin.sum() + spec.floor
    return [float(10 * np.log10(per_bin[m].sum() / total + 10 ** -12)) for m in masks]


def long_term_spectrum_db(spec: Spectra, cfg: EvidenceConfig) -> np.ndarray:
    """Mean power per bin over the speech frames, moving-averaged over cfg.smooth_hz, in dB."""
    ltas = spec.power[spec.speech].mean(axis=0)
    width = max(1, round(cfg.smooth_hz / (spec.freqs_hz[1] - spec.freqs_hz[0])) | 1)  # odd
    kernel = np.ones(width)
    # normalise by the kernel's coverage so the edge bins are averages too, not shrunk towards zero
    smooth = np.convolve(ltas, kernel, mode="same") / np.convolve(np.ones_like(ltas), kernel, mode="same")
    return 10 * np.log10(smooth + spec.floor)


def speech_band_level_db(ltas_db: np.ndarray, freqs_hz: np.ndarray, cfg: EvidenceConfig) -> float:
    lo, hi = cfg.speech_band_hz
    return float(np.median(ltas_db[(freqs_hz >= lo) & (freqs_hz <= hi)]))


def bandwidth_hz(ltas_db: np.ndarray, freqs_hz: np.ndarray, cfg: EvidenceConfig) -> float:
    """The highest frequency whose long-term level is within bandwidth_drop_db of the speech band's level."""
    threshold = speech_band_level_db(ltas_db, freqs_hz, cfg) - cfg.bandwidth_drop_db
    above = np.flatnonzero(ltas_db >= threshold)
    return float(freqs_hz[above[-1]]) if above.size else float(cfg.speech_band_hz[1])


@dataclass
class BandLimit:
    flagged: bool
    cutoff_hz: float | None   # the bandwidth when flagged
    drop_db: float            # median level just below the bandwidth minus median level just above it


def band_limit(ltas_db: np.ndarray, freqs_hz: np.ndarray, bandwidth: float, cfg: EvidenceConfig) -> BandLimit:
    """A codec-like cliff at the bandwidth: the level falls by cliff_db or more within cliff_width_hz.

    Above the bandwidth the spectrum is, by its definition, bandwidth_drop_db under the speech band, so a
    deep drop right at it means a cut-off, not the gentle fall of speech's spectral tilt."""
    below = ltas_db[(freqs_hz >= bandwidth - cfg.cliff_width_hz) & (freqs_hz < bandwidth)]
    above = ltas_db[(freqs_hz > bandwidth) & (freqs_hz <= bandwidth + cfg.cliff_width_hz)]
    if below.size < 2 or above.size < 2:  # the spectrum reaches (almost) Nyquist: nothing is cut
        return BandLimit(False, None, 0.0)
    drop = float(np.median(below) - np.median(above))
    flagged = drop >= cfg.cliff_db and bandwidth <= cfg.band_limit_max_hz
    return BandLimit(flagged, bandwidth if flagged else None, drop)


def flatness(spec: Spectra, cfg: EvidenceConfig) -> list[float]:
    """Per band: median over speech frames of 10 log10(geometric mean / arithmetic mean of the power), in
    dB: 0 for a perfectly flat band, about -2.5 for white noise, -10 and below for resolved harmonics.
    In dB rather than as a ratio near 0, so that spreads and z-scores of tonal bands are meaningful.

    Measured through the longer pitch window: a 25 ms frame does not resolve the harmonics of a 150 Hz
    voice (their main lobes overlap), which would make voiced speech look half noise."""
    masks = band_masks(spec.long_freqs_hz, cfg.bands, cfg.nyquist)
    power = spec.long_power[spec.speech]
    power = power + power.mean() * 10 ** (-DYNAMIC_RANGE_DB / 10)
    out = []
    for m in masks:
        band = power[:, m]
        geometric = np.exp(np.mean(np.log(band), axis=1))
        out.append(float(np.median(10 * np.log10(geometric / band.mean(axis=1)))))
    return out


def phase_irregularity(spec: Spectra, masks: list[np.ndarray]) -> list[float]:
    """Per band: power-weighted mean of |wrap(phi_t - 2 phi_t-1 + phi_t-2)| (rad) over speech frames.

    The second time difference of the STFT phase is zero for any steady sinusoid (whatever its frequency
    offset from the bin centre), about pi/2 on average for noise; smeared or re-estimated vocoder phase
    lies between. Weighting by power keeps empty bins from dominating."""
    phase = np.angle(spec.stft)
    second = np.angle(np.exp(1j * (phase[2:] - 2 * phase[1:-1] + phase[:-2])))  # wrapped to (-pi, pi]
    frames = spec.speech[2:] & spec.speech[1:-1] & spec.speech[:-2]
    if not frames.any():  # fewer than three consecutive speech frames: use all frames
        frames = np.ones_like(frames)
    weight = spec.power[2:][frames] + spec.floor
    deviation = np.abs(second[frames])
    return [float(np.sum(weight[:, m] * deviation[:, m]) / np.sum(weight[:, m])) for m in masks]


def spectral_measures(spec: Spectra, cfg: EvidenceConfig) -> dict:
    """All frequency-domain measures of a clip, keyed by Measures field name."""
    masks = band_masks(spec.freqs_hz, cfg.bands, cfg.nyquist)
    ltas_db = long_term_spectrum_db(spec, cfg)
    bandwidth = bandwidth_hz(ltas_db, spec.freqs_hz, cfg)
    limit = band_limit(ltas_db, spec.freqs_hz, bandwidth, cfg)
    return {"band_energy_db": band_energy_db(spec, masks), "bandwidth_hz": bandwidth,
            "flatness_db": flatness(spec, cfg), "phase_irregularity_rad": phase_irregularity(spec, masks),
            "band_limited": limit.flagged, "band_limit_hz": limit.cutoff_hz, "band_limit_drop_db": limit.drop_db}
