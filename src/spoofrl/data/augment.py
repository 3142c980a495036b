"""Training-time augmentation of waveforms: RawBoost-style distortions, additive noise, codec round trips.

RawBoost (Tak et al., "RawBoost: a raw data boosting and augmentation method applied to automatic speaker
verification anti-spoofing", ICASSP 2022) distorts the raw signal in three ways, written here from the
paper's description:

- LnL, linear and non-linear convolutive noise: y = sum_{j=1..N} a_j (h_j * x^j), each h_j a random filter
  (a cascade of random FIR notches: random centre, bandwidth, length and gain), a_j an attenuation growing
  with the power j. Models the colouring and non-linearity of microphones, amplifiers and channels.
- ISD, impulsive signal-dependent noise: a random few percent of the samples get an impulse proportional to
  the sample (clipping, quantisation bursts).
- SSI, stationary signal-independent noise: white noise coloured by a random filter, added at a random SNR.

The algorithm numbers 1-8 combine them as in the paper (5 = LnL then ISD is what the binary-detection GRPO
study used). Levels are restored to the input's peak after each distortion so loudness tells nothing.
Every random choice comes from the `numpy.random.Generator` passed in, so a seeded run is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps

from spoofrl.audio import AUDIO_SUFFIXES, load_audio
from spoofrl.config import option
from spoofrl.errors import ConfigError

# ------------------------------------------------------------------------------------------ options


@dataclass
class RawBoostConfig:
    algo: int = option(0, "RawBoost algorithm, numbered as in Tak et al. (ICASSP 2022): 0 off; 1 linear and "
                          "non-linear convolutive noise (LnL); 2 impulsive signal-dependent noise (ISD); 3 "
                          "stationary signal-independent coloured noise (SSI); 4 = 1, 2, 3 in series; 5 = 1 then "
                          "2 (the binary-detection GRPO study's setting); 6 = 1 then 3; 7 = 2 then 3; 8 = 1 and 2 "
                          "in parallel (averaged)")
    prob: float = option(1.0, "probability that a training utterance is distorted (when algo > 0)")
    nonlinear_order: int = option(5, "LnL: highest power of the signal in the non-linear sum (x, x^2, ... x^N)")
    bands: int = option(5, "LnL / SSI: number of random band-pass filters cascaded in each random filter")
    min_freq: float = option(20.0, "LnL / SSI: lowest centre frequency of a band (Hz)")
    max_freq: float = option(8000.0, "LnL / SSI: highest centre frequency of a band (Hz); capped below Nyquist")
    min_bandwidth: float = option(100.0, "LnL / SSI: narrowest band (Hz)")
    max_bandwidth: float = option(1000.0, "LnL / SSI: widest band (Hz)")
    min_taps: int = option(10, "LnL / SSI: fewest FIR taps of a band filter")
    max_taps: int = option(100, "LnL / SSI: most FIR taps of a band filter")
    min_gain_db: float = option(0.0, "LnL / SSI: lowest gain of a band filter (dB)")
    max_gain_db: float = option(0.0, "LnL / SSI: highest gain of a band filter (dB)")
    min_order_atten_db: float = option(5.0, "LnL: lowest attenuation per extra power of the signal (dB)")
    max_order_atten_db: float = option(20.0, "LnL: highest attenuation per extra power of the signal (dB)")
    impulse_percent: float = option(10.0, "ISD: at most this percent of the samples get an impulse")
    impulse_gain: float = option(2.0, "ISD: impulse size relative to the sample it hits (g_sd)")
    min_snr_db: float = option(10.0, "SSI: lowest signal-to-noise ratio of the coloured noise (dB)")
    max_snr_db: float = option(40.0, "SSI: highest signal-to-noise ratio of the coloured noise (dB)")

    def validate(self):
        if not 0 <= self.algo <= 8:
            raise ConfigError(f"rawboost.algo must be 0..8, got {self.algo}")
        _check_prob("rawboost.prob", self.prob)
        _check_range("rawboost bandwidth", self.min_bandwidth, self.max_bandwidth)
        _check_range("rawboost taps", self.min_taps, self.max_taps)
        _check_range("rawboost SNR", self.min_snr_db, self.max_snr_db)
        if self.nonlinear_order < 1 or self.bands < 1 or self.min_taps < 1:
            raise ConfigError("rawboost.nonlinear_order, bands and min_taps must be at least 1")


@dataclass
class NoiseConfig:
    prob: float = option(0.0, "probability that additive noise is mixed into a training utterance")
    min_snr_db: float = option(5.0, "lowest signal-to-noise ratio (dB)")
    max_snr_db: float = option(30.0, "highest signal-to-noise ratio (dB)")
    folder: str = option("", "folder of noise recordings (any audio files, searched recursively); empty = "
                             "synthetic coloured Gaussian noise with a random spectral slope")

    def validate(self):
        _check_prob("noise.prob", self.prob)
        _check_range("noise SNR", self.min_snr_db, self.max_snr_db)


@dataclass
class CodecConfig:
    prob: float = option(0.0, "probability that a training utterance goes through a lossy codec (needs ffmpeg; "
                              "slow: two ffmpeg processes per utterance, use data.workers)")
    codecs: list[str] = option(factory=lambda: ["mp3", "opus", "aac"],
                               doc="codecs drawn from (ffmpeg round trip): mp3, opus, aac, gsm, g722, speex, ...")
    min_kbps: float = option(16.0, "lowest bit rate (kbit/s) for codecs with a bit-rate setting")
    max_kbps: float = option(64.0, "highest bit rate (kbit/s)")

    def validate(self):
        _check_prob("codec.prob", self.prob)
        _check_range("codec bit rate", self.min_kbps, self.max_kbps)
        if self.prob > 0 and not self.codecs:
            raise ConfigError("codec.codecs is empty but codec.prob > 0")


@dataclass
class AugmentConfig:
    rawboost: RawBoostConfig = option(factory=RawBoostConfig, doc="RawBoost-style signal distortions")
    noise: NoiseConfig = option(factory=NoiseConfig, doc="additive noise at a random SNR")
    codec: CodecConfig = option(factory=CodecConfig, doc="lossy codec round trips through ffmpeg")

    def enabled(self) -> bool:
        return ((self.rawboost.algo > 0 and self.rawboost.prob > 0) or self.noise.prob > 0
                or self.codec.prob > 0)


def _check_prob(name: str, p: float) -> None:
    if not 0 <= p <= 1:
        raise ConfigError(f"{name} must be in [0, 1], got {p}")


def _check_range(name: str, lo: float, hi: float) -> None:
    if lo > hi:
        raise ConfigError(f"{name}: minimum {lo} is above maximum {hi}")



# ------------------------------------------------------------------------------------------ RawBoost

# RawBoost algorithm number -> (mode, stages)
RAWBOOST_ALGOS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("series", ("lnl",)),
    2: ("series", ("isd",)),
    3: ("series", ("ssi",)),
    4: ("series", ("lnl", "isd", "ssi")),
    5: ("series", ("lnl", "isd")),
    6: ("series", ("lnl", "ssi")),
    7: ("series", ("isd", "ssi")),
    8: ("parallel", ("lnl", "isd")),
}


def _match_peak(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    peak = np.max(np.abs(y))
    return y if peak == 0 else y * (np.max(np.abs(reference)) / peak)


def random_notch_filter(rng: np.random.Generator, cfg: RawBoostConfig, sr: int) -> np.ndarray:
    """FIR taps of a cascade of `cfg.bands` random band-stop filters with a random overall gain."""
    nyquist = sr / 2.0
    taps = np.array([1.0])
    for _ in range(cfg.bands):
        centre = rng.uniform(cfg.min_freq, min(cfg.max_freq, 0.95 * nyquist))
        width = rng.uniform(cfg.min_bandwidth, cfg.max_bandwidth)
        lo, hi = max(centre - width / 2, 1.0), min(centre + width / 2, 0.99 * nyquist)
        n = int(rng.integers(cfg.min_taps, cfg.max_taps + 1)) | 1  # odd length: a band-stop FIR needs it
        if hi - lo < 1.0 or n < 3:
            continue
        taps = np.convolve(taps, sps.firwin(n, [lo, hi], fs=sr))  # two cut-offs, pass_zero: band-stop
    response = np.abs(np.fft.rfft(taps, 4096))
    taps = taps / max(response.max(), 1e-12)
    return taps * 10 ** (rng.uniform(cfg.min_gain_db, cfg.max_gain_db) / 20)


def lnl_noise(x: np.ndarray, rng: np.random.Generator, cfg: RawBoostConfig, sr: int) -> np.ndarray:
    """Linear and non-linear convolutive noise."""
    y = np.zeros_like(x, dtype=np.float64)
    for power in range(1, cfg.nonlinear_order + 1):
        atten_db = (power - 1) * rng.uniform(cfg.min_order_atten_db, cfg.max_order_atten_db)
        taps = random_notch_filter(rng, cfg, sr)
        y += 10 ** (-atten_db / 20) * sps.lfilter(taps, [1.0], x.astype(np.float64) ** power)
    return _match_peak(y, x)


def isd_noise(x: np.ndarray, rng: np.random.Generator, cfg: RawBoostConfig, sr: int) -> np.ndarray:
    """Impulsive signal-dependent noise on a random share (up to impulse_percent %) of the samples."""
    y = x.astype(np.float64).copy()
    count = int(rng.uniform(0, cfg.impulse_percent / 100.0) * len(x))
    if count:
        where = rng.choice(len(x), size=count, replace=False)
        y[where] += cfg.impulse_gain * y[where] * rng.uniform(-1.0, 1.0, count) * rng.uniform(0, 1, count)
    return _match_peak(y, x)


def ssi_noise(x: np.ndarray, rng: np.random.Generator, cfg: RawBoostConfig, sr: int) -> np.ndarray:
    """Coloured stationary noise at a random SNR."""
    noise = sps.lfilter(random_notch_filter(rng, cfg, sr), [1.0], rng.standard_normal(len(x)))
    return x + scale_to_snr(x, noise, rng.uniform(cfg.min_snr_db, cfg.max_snr_db))


_STAGES = {"lnl": lnl_noise, "isd": isd_noise, "ssi": ssi_noise}


def rawboost(x: np.ndarray, rng: np.random.Generator, cfg: RawBoostConfig, sr: int) -> np.ndarray:
    """Apply RawBoost algorithm `cfg.algo` (1-8) to a waveform."""
    mode, stages = RAWBOOST_ALGOS[cfg.algo]
    if mode == "parallel":
        y = sum(_STAGES[s](x, rng, cfg, sr) for s in stages) / len(stages)
        return _match_peak(y, x)
    y = x
    for stage in stages:
        y = _STAGES[stage](y, rng, cfg, sr)
    return y


def scale_to_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`noise` scaled so that signal power / noise power = snr_db."""
    p_signal = float(np.mean(np.square(signal, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_noise == 0 or p_signal == 0:
        return np.zeros_like(signal, dtype=np.float64)
    return noise * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def coloured_noise(n: int, rng: np.random.Generator, sr: int, slope_db_per_octave: float) -> np.ndarray:
    """Gaussian noise whose spectrum falls (or rises) by `slope_db_per_octave`."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spec *= (freqs / 1000.0) ** (slope_db_per_octave / (20 * np.log10(2)))
    return np.fft.irfft(spec, n)


class NoiseSource:
    """Noise segments: random windows of recordings in a folder, or synthetic coloured noise."""

    def __init__(self, cfg: NoiseConfig, sr: int):
        self.cfg, self.sr = cfg, sr
        self.files: list[Path] = []
        if cfg.folder:
            folder = Path(cfg.folder)
            if not folder.is_dir():
                raise ConfigError(f"{folder}: data.augment.noise.folder is not a folder")
            self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not self.files:
                raise ConfigError(f"{folder}: data.augment.noise.folder holds no audio files")

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if not self.files:
            return coloured_noise(n, rng, self.sr, rng.uniform(-6.0, 3.0))
        noise = load_audio(self.files[int(rng.integers(len(self.files)))], self.sr, allow_silent=True)
        if len(noise) < n:
            noise = np.tile(noise, int(np.ceil(n / len(noise))))
        start = int(rng.integers(0, len(noise) - n + 1))
        return noise[start:start + n].astype(np.float64)


def _check_codecs(cfg: CodecConfig) -> None:
    from spoofrl.codecs import CODECS, require_codec
    for name in cfg.codecs:
        if name not in CODECS:
            raise ConfigError(f"data.augment.codec.codecs: unknown codec '{name}'; known: {', '.join(sorted(CODECS))}")
        try:
            require_codec(name)
        except Exception as err:  # CodecUnavailable: ffmpeg or its encoder missing
            raise ConfigError(f"data.augment.codec: {err}") from None


def codec_augment(x: np.ndarray, rng: np.random.Generator, cfg: CodecConfig, sr: int) -> np.ndarray:
    from spoofrl.codecs import CODECS, codec_roundtrip
    name = cfg.codecs[int(rng.integers(len(cfg.codecs)))]
    bitrate = None
    if CODECS[name].bitrate_flag:
        bitrate = int(rng.uniform(cfg.min_kbps, cfg.max_kbps) * 1000)
    return codec_roundtrip(x.astype(np.float64), sr, name, bitrate)


class Augmenter:
    """All configured augmentations in a fixed order: codec, RawBoost, additive noise (each with its own
    probability). Returns the signal and whether anything was applied."""

    def __init__(self, cfg: AugmentConfig, sr: int):
        self.cfg, self.sr = cfg, sr
        self.noise = NoiseSource(cfg.noise, sr) if cfg.noise.prob > 0 else None
        if cfg.codec.prob > 0:
            _check_codecs(cfg.codec)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        cfg, applied = self.cfg, False
        y = x.astype(np.float64)
        if cfg.codec.prob > 0 and rng.uniform() < cfg.codec.prob:
            y, applied = codec_augment(y, rng, cfg.codec, self.sr), True
        if cfg.rawboost.algo > 0 and rng.uniform() < cfg.rawboost.prob:
            y, applied = rawboost(y, rng, cfg.rawboost, self.sr), True
        if self.noise is not None and rng.uniform() < cfg.noise.prob:
            snr = rng.uniform(cfg.noise.min_snr_db, cfg.noise.max_snr_db)
            y, applied = y + scale_to_snr(y, self.noise.segment(len(y), rng), snr), True
        return y.astype(np.float32), applied


__all__ = ["AugmentConfig", "RawBoostConfig", "NoiseConfig", "CodecConfig", "Augmenter", "rawboost", "lnl_noise", "isd_noise", "ssi_noise", "random_notch_filter", "scale_to_snr",
           "coloured_noise", "NoiseSource", "RAWBOOST_ALGOS"]
