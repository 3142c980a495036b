"""Signal-processing primitives shared by the attacks, channels and sources of the built-in benchmark.

Everything is plain numpy/scipy (plus pyworld for F0 and WORLD), deterministic, and works on float64
mono signals; callers convert to float32 only when writing files.
"""
from __future__ import annotations

import importlib.metadata
import sys
import types

import numpy as np
from scipy import signal as sps
from scipy.linalg import solve_toeplitz

EPS = 1e-10


def load_pyworld():
    """Import pyworld, which (0.3.5) imports `pkg_resources` only to read its own version.

    setuptools >= 81 no longer ships `pkg_resources`; a stand-in that answers `get_distribution` from
    importlib.metadata is placed in sys.modules for the duration of the import, then removed again.
    """
    if "pyworld" in sys.modules:
        return sys.modules["pyworld"]
    shim_added = False
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
        shim_added = True
    try:
        import pyworld
    finally:
        if shim_added:
            sys.modules.pop("pkg_resources", None)
    return pyworld


# ---------------------------------------------------------------------------------------------- framing

def hann(n: int) -> np.ndarray:
    """Periodic Hann window (sums to a constant under 50%/75% overlap)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex STFT [frames, n_fft // 2 + 1] with a Hann window, signal padded by n_fft // 2 each side."""
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + n_fft), mode="reflect" if len(x) > pad + n_fft else "constant")
    n_frames = 1 + (len(xp) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * hann(n_fft)[None, :], axis=1)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum frames [n, L] placed every `hop` samples; vectorised over frames (L / hop loop steps)."""
    n_frames, length = frames.shape
    r = -(-length // hop)                                    # hops per frame, rounded up
    padded = np.zeros((n_frames, r * hop))
    padded[:, :length] = frames
    blocks = padded.reshape(n_frames, r, hop)
    out = np.zeros((n_frames + r - 1, hop))
    for k in range(r):
        out[k:k + n_frames] += blocks[:, k]
    return out.reshape(-1)[:hop * (n_frames - 1) + length]


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Inverse of `stft`: windowed overlap-add normalised by the summed squared window."""
    win = hann(n_fft)
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * win[None, :]
    out = _overlap_add(frames, hop)
    norm = _overlap_add(np.broadcast_to(win ** 2, frames.shape), hop)
    out /= np.maximum(norm, 1e-3 * (win ** 2).max())
    pad = n_fft // 2
    return fit_length(out[pad:], length)


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad `y` to exactly `n` samples (attacks must keep the input's duration)."""
    if len(y) >= n:
        return y[:n]
    return np.pad(y, (0, n - len(y)))


# ---------------------------------------------------------------------------------------------- spectra

def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=float) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=float) / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1], each normalised to unit area (Slaney style)."""
    fmax = sr / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / max(mid - lo, EPS)
        fall = (hi - freqs) / max(hi - mid, EPS)
        fb[m] = np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / max(hi - lo, EPS)
    return fb


def real_cepstrum_lifter(log_mag: np.ndarray, order: int) -> np.ndarray:
    """Keep the first `order` quefrencies of each frame's log magnitude: the smooth spectral envelope."""
    n_fft = 2 * (log_mag.shape[-1] - 1)
    cep = np.fft.irfft(log_mag, n=n_fft, axis=-1)
    lifter = np.zeros(n_fft)
    lifter[:order] = 1.0
    lifter[n_fft - order + 1:] = 1.0
    return np.fft.rfft(cep * lifter, axis=-1).real


def minimum_phase(log_mag: np.ndarray) -> np.ndarray:
    """Minimum-phase spectrum phase [frames, bins] for given log magnitudes (folded cepstrum method)."""
    n_fft = 2 * (log_mag.shape[-1] - 1)
    cep = np.fft.irfft(log_mag, n=n_fft, axis=-1)
    fold = np.zeros(n_fft)
    fold[0] = 1.0
    fold[1:n_fft // 2] = 2.0
    fold[n_fft // 2] = 1.0
    return np.fft.rfft(cep * fold, axis=-1).imag


# ---------------------------------------------------------------------------------------------- F0 and LPC

def f0_track(x: np.ndarray, sr: int, frame_period_ms: float = 5.0, f0_floor: float = 60.0,
             f0_ceil: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz with 0 for unvoiced, frame times in s) by WORLD's DIO refined by StoneMask."""
    pw = load_pyworld()
    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, times = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    f0 = pw.stonemask(x, f0, times, sr)
    return f0, times


def lpc(frame: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """Autocorrelation-method LPC: (a with a[0] = 1, prediction-error power) for one windowed frame."""
    r = np.correlate(frame, frame, mode="full")[len(frame) - 1:len(frame) + order]
    if r[0] <= EPS:
        return np.concatenate([[1.0], np.zeros(order)]), 0.0
    r = r.copy()
    r[0] *= 1.0 + 1e-6  # white-noise correction keeps the Toeplitz system well conditioned
    coeffs = solve_toeplitz(r[:order], -r[1:order + 1])
    a = np.concatenate([[1.0], coeffs])
    err = float(np.dot(a, r[:order + 1]))
    return a, max(err, 0.0)


def interp_f0(f0: np.ndarray, times: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Per-sample F0 (0 where unvoiced) from a frame track, by nearest frame."""
    idx = np.clip(np.round(np.arange(n) / sr / (times[1] - times[0] if len(times) > 1 else 1.0)).astype(int),
                  0, len(f0) - 1)
    return f0[idx]


def pulse_train(f0_per_sample: np.ndarray, sr: int) -> np.ndarray:
    """Unit-energy-per-period impulses at the instants where the integrated phase wraps (0 where unvoiced)."""
    phase = np.cumsum(f0_per_sample / sr)
    wraps = np.diff(np.floor(phase), prepend=0.0) > 0
    voiced = f0_per_sample > 0
    pulses = (wraps & voiced).astype(float)
    # scale each pulse by sqrt(period) so the excitation power does not depend on F0
    period = np.where(voiced, sr / np.maximum(f0_per_sample, 1.0), 0.0)
    return pulses * np.sqrt(period)


# ---------------------------------------------------------------------------------------------- levels

def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + EPS))


def active_rms_db(x: np.ndarray, sr: int, frame_ms: float = 20.0) -> float:
    """RMS level (dBFS) over the loudest 50% of frames, so leading/trailing silence does not count."""
    n = max(int(sr * frame_ms / 1000), 1)
    frames = x[:len(x) // n * n].reshape(-1, n) if len(x) >= n else x[None, :]
    energies = np.sort(np.mean(frames ** 2, axis=1))[::-1]
    top = energies[:max(1, len(energies) // 2)]
    return float(10 * np.log10(np.mean(top) + EPS))


def set_level(x: np.ndarray, sr: int, target_dbfs: float, peak_limit: float = 0.97) -> np.ndarray:
    """Scale to an active-speech level, then lower the gain if needed to keep peaks below `peak_limit`."""
    gain = 10 ** ((target_dbfs - active_rms_db(x, sr)) / 20)
    y = x * gain
    peak = np.max(np.abs(y)) if len(y) else 0.0
    if peak > peak_limit:
        y *= peak_limit / peak
    return y


def match_level(y: np.ndarray, reference: np.ndarray, sr: int) -> np.ndarray:
    """Give `y` the active level of `reference` (attacks must not be detectable from loudness)."""
    return set_level(y, sr, active_rms_db(reference, sr), peak_limit=0.999)


def butter_filter(x: np.ndarray, sr: int, kind: str, cutoff, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth filter (second-order sections)."""
    sos = sps.butter(order, cutoff, btype=kind, fs=sr, output="sos")
    return sps.sosfiltfilt(sos, x)


def resample_poly(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (deterministic; used inside attacks and channels)."""
    if sr_in == sr_out:
        return x
    g = np.gcd(sr_in, sr_out)
    return sps.resample_poly(x, sr_out // g, sr_in // g)
