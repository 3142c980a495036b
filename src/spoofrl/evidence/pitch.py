"""Periodicity measures: an autocorrelation F0 track, harmonic-to-noise ratio, jitter and F0 smoothness.

F0 and HNR follow Boersma's (1993) autocorrelation method: per pitch frame (Hann window), the normalised
autocorrelation of the frame divided by that of the window, sinc-interpolated to 1/`LAG_UPSAMPLE` sample
by zero-padding the power spectrum. Its peak r in the F0 lag range (with Praat's octave cost) gives the
period; r itself gives HNR = 10 log10(r / (1 - r)). Jitter is measured period by period: each cycle is
matched to the next by normalised cross-correlation. librosa.pyin would do for F0 but costs ~0.4 s per
3 s clip on one core (after a ~2 s JIT start), several times all the other measures together.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spoofrl.evidence.config import EvidenceConfig
from spoofrl.evidence.frames import Spectra, frames_span_s, runs

LAG_UPSAMPLE = 4            # autocorrelation evaluated every 1/4 sample
HNR_LIMIT_DB = 40.0         # |HNR| is capped here (r within 1e-4 of 0 or 1)
MAX_PERIOD_FACTOR = 1.3     # consecutive periods differing more than this are not one voice (Praat's default)
MIN_RUN_FRAMES = 3          # voiced runs shorter than this carry no contour (second differences need 3)
PITCH_BLOCK = 256           # frames per block of autocorrelations (bounds memory on long clips)
BAND_LAG_SEARCH = 1.5       # band HNR: r's peak within this many samples of the full-band period


@dataclass
class PitchTrack:
    f0_hz: np.ndarray       # per frame, 0 where unvoiced
    r: np.ndarray           # per frame: normalised autocorrelation at the chosen lag (0 outside speech)
    r_bands: list[np.ndarray]  # the same restricted to the bands below / above hnr_split_hz, at the full-band lag
    voiced: np.ndarray      # bool per frame


def _fine_autocorrelation(power: np.ndarray, n_fft: int) -> np.ndarray:
    """Autocorrelation at lags 0, 1/U, 2/U, ... samples from a power spectrum of an n_fft-point FFT."""
    return np.fft.irfft(power, n=n_fft * LAG_UPSAMPLE, axis=-1)


def _parabolic_peak(y: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offset (-0.5..0.5) and value of the parabola through y[i-1], y[i], y[i+1], row by row."""
    rows = np.arange(y.shape[0])
    left, mid, right = y[rows, i - 1], y[rows, i], y[rows, i + 1]
    curvature = left - 2 * mid + right
    safe = np.where(curvature < 0, curvature, -1.0)
    offset = np.where(curvature < 0, 0.5 * (left - right) / safe, 0.0)
    return np.clip(offset, -0.5, 0.5), mid - 0.25 * (left - right) * offset


def _normalised_autocorrelation(power: np.ndarray, window_ac: np.ndarray, n_fft: int, lo: int,
                                 hi: int) -> np.ndarray:
    """r at fine lags lo-1 .. hi+1 (in 1/LAG_UPSAMPLE samples): frame autocorrelation over its value at lag 0,
    divided by the window's (Boersma's correction for the taper)."""
    frame_ac = _fine_autocorrelation(power, n_fft)
    energy = np.maximum(frame_ac[:, :1], 1e-300)
    return (frame_ac[:, lo - 1:hi + 2] / energy) / (window_ac[lo - 1:hi + 2] / window_ac[0])


def _band_peak(r: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Per row, the largest r within BAND_LAG_SEARCH samples of the full-band lag index `best`."""
    reach = int(BAND_LAG_SEARCH * LAG_UPSAMPLE)
    cols = np.clip(best[:, None] + np.arange(-reach, reach + 1)[None, :], 0, r.shape[1] - 1)
    return np.take_along_axis(r, cols, axis=1).max(axis=1)


def _block_periodicity(power: np.ndarray, window_ac: np.ndarray, freqs: np.ndarray, cfg: EvidenceConfig):
    """(f0 Hz, r, [r per HNR split band]) of a block of pitch frames given by their power spectra."""
    n_fft = 2 * (power.shape[1] - 1)
    lo = int(np.floor(cfg.sample_rate / cfg.f0_max_hz * LAG_UPSAMPLE))
    hi = int(np.ceil(cfg.sample_rate / cfg.f0_min_hz * LAG_UPSAMPLE))
    r = _normalised_autocorrelation(power, window_ac, n_fft, lo, hi)
    lags_s = np.arange(lo - 1, hi + 2) / (LAG_UPSAMPLE * cfg.sample_rate)
    score = r - cfg.octave_cost * np.log2(cfg.f0_min_hz * lags_s)  # Praat's octave cost
    best = 1 + np.argmax(score[:, 1:-1], axis=1)
    offset, peak = _parabolic_peak(r, best)
    f0 = cfg.sample_rate * LAG_UPSAMPLE / (lo - 1 + best + offset)
    r_bands = []
    for band_lo, band_hi in hnr_bands(cfg)[1:]:
        band_power = np.where((freqs >= band_lo) & (freqs <= band_hi), power, 0.0)
        band_r = _normalised_autocorrelation(band_power, window_ac, n_fft, lo, hi)
        r_bands.append(np.clip(_band_peak(band_r, best), 0.0, 1.0))
    return f0, np.clip(peak, 0.0, 1.0), r_bands


def pitch_track(spec: Spectra, cfg: EvidenceConfig) -> PitchTrack:
    """Per-frame F0, voicing and autocorrelation peak (full band and each HNR band) of the speech frames,
    computed PITCH_BLOCK frames at a time (the upsampled autocorrelations are large)."""
    n_frames = spec.centres_s.size
    f0, r_full = np.zeros(n_frames), np.zeros(n_frames)
    r_bands = [np.zeros(n_frames) for _ in hnr_bands(cfg)[1:]]
    n_fft = 2 * (spec.long_power.shape[1] - 1)
    window_ac = _fine_autocorrelation(np.abs(np.fft.rfft(spec.long_window, n=n_fft)) ** 2, n_fft)
    speech_rows = np.flatnonzero(spec.speech)
    for start in range(0, speech_rows.size, PITCH_BLOCK):
        rows = speech_rows[start:start + PITCH_BLOCK]
        f0[rows], r_full[rows], block_bands = _block_periodicity(spec.long_power[rows], window_ac,
                                                                 spec.long_freqs_hz, cfg)
        for out, values in zip(r_bands, block_bands):
            out[rows] = values
    voiced = spec.speech & (r_full >= cfg.voicing_threshold)
    f0[~voiced] = 0.0
    return PitchTrack(f0, r_full, r_bands, voiced)


def hnr_bands(cfg: EvidenceConfig) -> list[tuple[float, float]]:
    """Bands of the HNR measure: the whole band, below the split, above it."""
    return [(0.0, cfg.nyquist), (0.0, cfg.hnr_split_hz), (cfg.hnr_split_hz, cfg.nyquist)]


def hnr_frames(track: PitchTrack, speech: np.ndarray) -> np.ndarray:
    """The frames HNR is measured on: the voiced ones, or every speech frame of a clip with (almost) no
    voicing, whose HNR then says how aperiodic it is."""
    return track.voiced if track.voiced.sum() >= MIN_RUN_FRAMES else speech


def hnr_db(r: np.ndarray, frames: np.ndarray) -> float:
    """Median over `frames` of 10 log10(r / (1 - r)), r capped so |HNR| <= HNR_LIMIT_DB."""
    limit = 1.0 / (1.0 + 10 ** (-HNR_LIMIT_DB / 10))
    capped = np.clip(r[frames], 1.0 - limit, limit)
    return float(np.median(10 * np.log10(capped / (1.0 - capped))))


def _ncc(reference: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of one segment with each row of `candidates`."""
    norms = np.sqrt(np.sum(candidates ** 2, axis=1) * np.sum(reference ** 2))
    return candidates @ reference / np.maximum(norms, 1e-300)


def cycle_periods(x: np.ndarray, start: int, end: int, period_at, cfg: EvidenceConfig) -> list[list[float]]:
    """Consecutive periods (samples) in x[start:end], in chains of cycles that each match the next.

    From a position p with local period T, the cycle x[p:p+T] is matched against x[p+L:p+L+T] for lags
    L in [T / 1.25, T * 1.25]; the best lag (parabolic refinement) is the period and p moves on by it. A
    match below the voicing threshold ends a chain."""
    chains: list[list[float]] = [[]]
    p = start
    while True:
        period = period_at(p)
        n = round(period)
        lo, hi = int(np.floor(period / MAX_PERIOD_FACTOR)), int(np.ceil(period * MAX_PERIOD_FACTOR))
        if p + hi + n > min(end, x.size) or n < 2:
            break
        candidates = np.lib.stride_tricks.sliding_window_view(x[p + lo:p + hi + n], n)
        corr = _ncc(x[p:p + n], candidates)
        j = int(np.argmax(corr[1:-1])) + 1 if corr.size >= 3 else int(np.argmax(corr))
        if corr[j] < cfg.voicing_threshold:
            if chains[-1]:
                chains.append([])
            p += n
            continue
        offset = 0.0
        if 0 < j < corr.size - 1:
            offset = float(_parabolic_peak(corr[None, :], np.array([j]))[0][0])
        found = lo + j + offset
        chains[-1].append(found)
        p += round(found)
    return [c for c in chains if c]


def jitter_pct(chains: list[list[float]]) -> float | None:
    """Praat's local jitter: mean |T_i - T_i-1| over consecutive periods / mean period, in %."""
    diffs, periods = [], []
    for chain in chains:
        t = np.asarray(chain)
        periods.extend(chain)
        if t.size < 2:
            continue
        ratio = np.maximum(t[1:], t[:-1]) / np.minimum(t[1:], t[:-1])
        diffs.extend(np.abs(np.diff(t))[ratio <= MAX_PERIOD_FACTOR])
    if len(diffs) < 2:
        return None
    return float(100 * np.mean(diffs) / np.mean(periods))


def f0_smoothness_st(f0: np.ndarray, voiced: np.ndarray) -> float | None:
    """Median |second difference| of the F0 contour in semitones, inside voiced runs (higher = rougher)."""
    values = []
    for a, b in runs(voiced):
        if b - a >= MIN_RUN_FRAMES:
            semitones = 12 * np.log2(f0[a:b])
            values.append(np.abs(np.diff(semitones, n=2)))
    return float(np.median(np.concatenate(values))) if values else None


def pitch_measures(spec: Spectra, cfg: EvidenceConfig) -> dict:
    """All periodicity measures of a clip, keyed by Measures field name."""
    track = pitch_track(spec, cfg)
    voiced_runs = [(a, b) for a, b in runs(track.voiced) if b - a >= MIN_RUN_FRAMES]
    centres = np.round(spec.centres_s * cfg.sample_rate).astype(int)

    def period_at(p: int) -> float:
        nearest = int(np.clip(np.searchsorted(centres, p), 0, centres.size - 1))
        f0 = track.f0_hz[nearest] or np.median(track.f0_hz[track.voiced])
        return cfg.sample_rate / f0

    chains: list[list[float]] = []
    for a, b in voiced_runs:
        chains.extend(cycle_periods(spec.wave, centres[a], centres[b - 1] + cfg.hop_length, period_at, cfg))
    voiced_f0 = track.f0_hz[track.voiced]
    speech_frames = max(int(spec.speech.sum()), 1)
    voiced_at = np.flatnonzero(track.voiced)
    span = frames_span_s(spec, voiced_at[0], voiced_at[-1], cfg.hop_ms) if voiced_at.size else None
    frames = hnr_frames(track, spec.speech)
    return {"hnr_db": [hnr_db(track.r, frames)] + [hnr_db(r, frames) for r in track.r_bands],
            "voiced_share": float(track.voiced.sum() / speech_frames),
            "f0_median_hz": float(np.median(voiced_f0)) if voiced_f0.size else None,
            "f0_jitter_pct": jitter_pct(chains),
            "f0_smoothness_st": f0_smoothness_st(track.f0_hz, track.voiced),
            "voiced_span_s": span}
