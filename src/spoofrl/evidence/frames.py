"""Input checks and the short-time analysis every measure shares.

A clip is checked (1-D, finite, not all zero, long enough), resampled to the analysis rate, and cut into
Hann-windowed frames without padding: frame t covers samples [t*hop, t*hop + frame) and is centred at
t*hop + frame/2, so no frame holds invented (padded) samples. Every power is floored `DYNAMIC_RANGE_DB`
below the clip's mean power, which keeps logs finite and makes every dB value independent of the gain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spoofrl.audio import resample
from spoofrl.errors import SpoofrlError
from spoofrl.evidence.config import EvidenceConfig

# Powers below (clip mean power - this) read as the floor: digital silence bottoms out here, not at -inf.
DYNAMIC_RANGE_DB = 120.0


class EvidenceError(SpoofrlError):
    """A clip cannot be measured: not 1-D, NaN/infinite samples, all zero, too short or too long."""


@dataclass
class Spectra:
    """The framed clip: complex STFT [frames, bins], power [frames, bins] (one-sided, summing to the frame's
    windowed mean square), frame energy (dB), frame centres (s), bin frequencies (Hz), the power floor."""
    wave: np.ndarray
    stft: np.ndarray
    power: np.ndarray
    energy_db: np.ndarray
    centres_s: np.ndarray
    freqs_hz: np.ndarray
    floor: float
    speech: np.ndarray  # bool per frame: within speech_range_db of the loudest frame
    sample_rate: int
    # the same frames seen through the longer pitch window (resolves the harmonics of low voices):
    # |FFT|^2 with an FFT of at least twice the window, so its inverse is an unwrapped autocorrelation
    long_power: np.ndarray
    long_window: np.ndarray
    long_freqs_hz: np.ndarray

    @property
    def duration_s(self) -> float:
        return self.wave.size / self.sample_rate


def prepare_wave(wave, sr: int, cfg: EvidenceConfig) -> np.ndarray:
    """The clip as float64 at cfg.sample_rate, or an EvidenceError saying what is wrong with it."""
    x = np.asarray(wave)
    if x.ndim != 1:
        raise EvidenceError(f"evidence needs a mono 1-D waveform, got an array of shape {x.shape} "
                            f"(load files with spoofrl.audio.load_audio, which mixes to mono)")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise EvidenceError(f"evidence needs real-valued samples, got dtype {x.dtype}")
    if x.size and not np.all(np.isfinite(x)):
        raise EvidenceError(f"the clip contains NaN or infinite samples ({int(np.sum(~np.isfinite(x)))} of {x.size})")
    if int(sr) != sr or sr <= 0:
        raise EvidenceError(f"sample rate must be a positive integer, got {sr}")
    x = x.astype(np.float64)
    if int(sr) != cfg.sample_rate and x.size:
        x = resample(x.astype(np.float32), int(sr), cfg.sample_rate).astype(np.float64)
    needed = cfg.frame_length + (cfg.min_frames - 1) * cfg.hop_length
    if x.size < needed:
        raise EvidenceError(f"the clip is too short for evidence: {x.size / cfg.sample_rate:.3f} s "
                            f"({x.size} samples at {cfg.sample_rate} Hz); at least {needed / cfg.sample_rate:.3f} s "
                            f"({cfg.min_frames} frames of {cfg.frame_ms:g} ms every {cfg.hop_ms:g} ms) are needed")
    if x.size > cfg.max_seconds * cfg.sample_rate:
        raise EvidenceError(f"the clip is too long for evidence: {x.size / cfg.sample_rate:.1f} s, at most "
                            f"{cfg.max_seconds:g} s (max_seconds); cut it into pieces (spoofrl.audio.chunk_signal)")
    if not np.any(x):
        raise EvidenceError(f"the clip is silent: all {x.size} samples are zero")
    return x


def frame_signal(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[frames, length] view of x: frame t starts at t*hop (no padding; the tail shorter than a hop is left out)."""
    count = 1 + (x.size - length) // hop
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:count]


def one_sided_weights(n_fft: int) -> np.ndarray:
    """Weights that make the one-sided |X|^2 sum to the two-sided total (DC and Nyquist count once)."""
    w = np.full(n_fft // 2 + 1, 2.0)
    w[0] = 1.0
    if n_fft % 2 == 0:
        w[-1] = 1.0
    return w


def analyse(x: np.ndarray, cfg: EvidenceConfig) -> Spectra:
    """Short-time spectrum of a prepared clip (see `prepare_wave`)."""
    window = np.hanning(cfg.frame_length + 2)[1:-1]  # strictly positive Hann: no wasted edge samples
    frames = frame_signal(x, cfg.frame_length, cfg.hop_length)
    stft = np.fft.rfft(frames * window, n=cfg.n_fft, axis=1)
    # Parseval: sum over bins of `power` = windowed mean square of the frame (window normalised to unit power)
    scale = one_sided_weights(cfg.n_fft) / (cfg.n_fft * np.sum(window ** 2))
    floor = float(np.mean(x ** 2)) * 10 ** (-DYNAMIC_RANGE_DB / 10)
    power = np.abs(stft) ** 2 * scale
    energy_db = 10 * np.log10(power.sum(axis=1) + floor)
    centres = (np.arange(frames.shape[0]) * cfg.hop_length + cfg.frame_length / 2) / cfg.sample_rate
    freqs = np.fft.rfftfreq(cfg.n_fft, 1.0 / cfg.sample_rate)
    speech = energy_db >= energy_db.max() - cfg.speech_range_db
    long_window, long_power, long_freqs = long_window_power(x, centres, cfg)
    return Spectra(x, stft, power, energy_db, centres, freqs, floor, speech, cfg.sample_rate, long_power,
                   long_window, long_freqs)


def long_window_power(x: np.ndarray, centres_s: np.ndarray, cfg: EvidenceConfig):
    """(window, |FFT|^2 [frames, bins], bin frequencies) of pitch windows centred on the short frames.

    The clip is zero-padded by half a pitch window at both ends so every frame has a full window."""
    half = cfg.pitch_length // 2
    padded = np.pad(x, (half, half))
    starts = np.round(centres_s * cfg.sample_rate).astype(int)  # = centre - half in padded coordinates
    frames = padded[starts[:, None] + np.arange(2 * half)[None, :]]
    window = np.hanning(2 * half + 2)[1:-1]
    n_fft = 1 << int(np.ceil(np.log2(4 * half)))
    power = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2
    return window, power, np.fft.rfftfreq(n_fft, 1.0 / cfg.sample_rate)


def band_masks(freqs_hz: np.ndarray, bands: list[tuple[float, float]], nyquist: float) -> list[np.ndarray]:
    """Bins of each band [lo, hi); a band ending at Nyquist includes the Nyquist bin."""
    masks = []
    for lo, hi in bands:
        upper = freqs_hz <= hi if hi >= nyquist else freqs_hz < hi
        masks.append((freqs_hz >= lo) & upper)
    return masks


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the runs of True in a boolean vector."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def frames_span_s(spec: Spectra, first: int, last: int, hop_ms: float) -> tuple[float, float]:
    """(start, end) seconds of frames first..last (inclusive): their centres widened by half a hop, inside the clip."""
    half_hop = hop_ms / 2000
    return (float(max(spec.centres_s[first] - half_hop, 0.0)),
            float(min(spec.centres_s[last] + half_hop, spec.duration_s)))
