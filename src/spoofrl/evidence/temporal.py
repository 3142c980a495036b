"""Time-domain measures: frame-energy discontinuities inside speech and the noise floor of the pauses."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spoofrl.evidence.config import EvidenceConfig
from spoofrl.evidence.frames import Spectra, band_masks, frames_span_s, runs


@dataclass(frozen=True)
class Discontinuity:
    """A jump of frame energy: `size_db` (signed: > 0 rises) between the frames centred at start_s and end_s."""
    time_s: float
    start_s: float
    end_s: float
    size_db: float


def comparison_lag(cfg: EvidenceConfig) -> int:
    """Frames apart whose windows do not overlap: adjacent, non-overlapping frames."""
    return int(np.ceil(cfg.frame_length / cfg.hop_length))


def discontinuities(spec: Spectra, cfg: EvidenceConfig) -> list[Discontinuity]:
    """Jumps of at least cfg.jump_db between adjacent non-overlapping frames, both inside speech.

    Overlapping frames would spread one step over several small differences; comparing frames one frame
    length apart sees the whole step once. Of the candidates within one lag of each other only the
    largest is kept, so one step gives one event."""
    lag = comparison_lag(cfg)
    if spec.energy_db.size <= lag:
        return []
    jump = spec.energy_db[lag:] - spec.energy_db[:-lag]
    inside = spec.speech[lag:] & spec.speech[:-lag]
    size = np.where(inside, np.abs(jump), 0.0)
    events = []
    for t in np.flatnonzero(size >= cfg.jump_db):
        neighbourhood = size[max(t - lag, 0):t + lag + 1]
        if size[t] < neighbourhood.max() or np.argmax(neighbourhood) + max(t - lag, 0) != t:
            continue  # not the (first) largest jump around here
        start, end = float(spec.centres_s[t]), float(spec.centres_s[t + lag])
        events.append(Discontinuity((start + end) / 2, start, end, float(jump[t])))
    return events


@dataclass
class NoiseFloor:
    level_db: float           # mean pause power relative to the mean speech power
    level_dbfs: float         # mean pause power re. a full-scale square wave (mean square 1)
    tilt_db_per_oct: float    # slope of the pause spectrum over the bands, dB per octave
    span_s: tuple[float, float]  # the longest run of pause frames


def pause_frames(spec: Spectra, cfg: EvidenceConfig) -> np.ndarray:
    """Frames at or below the pause_percentile of frame energy."""
    return spec.energy_db <= np.percentile(spec.energy_db, cfg.pause_percentile)


def noise_tilt(pause_power: np.ndarray, spec: Spectra, cfg: EvidenceConfig) -> float:
    """Least-squares slope of the pause level per band (dB) against log2 of the band centre (octaves)."""
    masks = band_masks(spec.freqs_hz, cfg.bands, cfg.nyquist)
    level = np.array([10 * np.log10(pause_power[m].mean() + spec.floor) for m in masks])
    octaves = np.log2([(lo + hi) / 2 for lo, hi in cfg.bands])
    if octaves.size < 2:
        return 0.0
    return float(np.polyfit(octaves, level, 1)[0])


def noise_floor(spec: Spectra, cfg: EvidenceConfig) -> NoiseFloor:
    pauses = pause_frames(spec, cfg)
    pause_power = spec.power[pauses].mean(axis=0)
    frame_power = spec.power.sum(axis=1)
    level = float(frame_power[pauses].mean()) + spec.floor
    speech_level = float(frame_power[spec.speech].mean()) + spec.floor
    a, b = max(runs(pauses), key=lambda run: run[1] - run[0])  # the first of the longest
    span = frames_span_s(spec, a, b - 1, cfg.hop_ms)
    return NoiseFloor(float(10 * np.log10(level / speech_level)), float(10 * np.log10(level)),
                      noise_tilt(pause_power, spec, cfg), span)


def temporal_measures(spec: Spectra, cfg: EvidenceConfig) -> dict:
    """All time-domain measures of a clip, keyed by Measures field name."""
    events = discontinuities(spec, cfg)
    floor = noise_floor(spec, cfg)
    return {"discontinuities": events, "discontinuity_rate_per_s": len(events) / spec.duration_s,
            "noise_floor_db": floor.level_db, "noise_floor_dbfs": floor.level_dbfs,
            "noise_tilt_db_per_oct": floor.tilt_db_per_oct, "pause_span_s": floor.span_s}
