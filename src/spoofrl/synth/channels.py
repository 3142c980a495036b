"""Transmission / recording channels: the benchmark's second axis, applied to bona fide and spoofed
audio alike (from the same distribution within a subset, so a channel never reveals the label).

`CHANNELS` maps a channel id to a `Channel`: callable as `channel(x, sr, rng, **params)` with parameters
drawn from documented ranges by `channel.sample_params(rng)` when not given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import signal as sps

from spoofrl.errors import ConfigError
from spoofrl.synth import dsp
from spoofrl.codecs import CodecRequest, codec_roundtrip_many
from spoofrl.synth.params import ParamSpace


@dataclass(frozen=True)
class Channel:
    id: str
    fn: Callable[..., np.ndarray]
    space: ParamSpace = field(default_factory=ParamSpace)
    doc: str = ""
    codec: Callable[[dict], CodecRequest] | None = None   # for codec channels, so callers can batch them

    def sample_params(self, rng: np.random.Generator) -> dict:
        return self.space.sample(rng)

    def __call__(self, x: np.ndarray, sr: int, rng: np.random.Generator, **params) -> np.ndarray:
        full = self.space.complete(params, rng, f"channel '{self.id}'")
        return self.finish(x, self.fn(np.asarray(x, dtype=np.float64), sr, rng, **full))

    @staticmethod
    def finish(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dsp.fit_length(np.nan_to_num(np.asarray(y, dtype=np.float64)), len(x))


# ------------------------------------------------------------------------------------------ implementations

def clean(x, sr, rng):
    return x.copy()


def _codec_request(name: str) -> Callable[[dict], CodecRequest]:
    def request(params: dict) -> CodecRequest:
        return CodecRequest(name, params.get("bitrate"))
    return request


def _codec_channel(name: str) -> dict:
    """fn and codec fields of a channel that is one ffmpeg round trip."""
    request = _codec_request(name)

    def apply(x, sr, rng, **params):
        return codec_roundtrip_many([x], sr, [request(params)])[0]
    return {"fn": apply, "codec": request}


def mu_law(x, sr, rng, mu=255, rate=8000):
    """G.711 mu-law telephone line: resample to 8 kHz, compand and quantise to 8 bits, expand, resample back."""
    low = dsp.resample_poly(x, sr, rate)
    low = np.clip(low, -1.0, 1.0)
    companded = np.sign(low) * np.log1p(mu * np.abs(low)) / np.log1p(mu)
    quantised = np.round((companded + 1.0) * 127.5) / 127.5 - 1.0
    expanded = np.sign(quantised) * ((1.0 + mu) ** np.abs(quantised) - 1.0) / mu
    return dsp.resample_poly(expanded, rate, sr)


def _coloured_noise(n: int, rng: np.random.Generator, slope_db_per_octave: float, sr: int) -> np.ndarray:
    """Gaussian noise with a power spectrum falling `slope` dB per octave (0 white, -3 pink, -6 brown)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    gain = np.ones_like(freqs)
    nz = freqs > 20.0
    gain[nz] = (freqs[nz] / 20.0) ** (slope_db_per_octave / (20 * np.log10(2)))
    gain[~nz] = 1.0
    noise = np.fft.irfft(spec * gain, n=n)
    return noise / (np.std(noise) + dsp.EPS)


def additive_noise(x, sr, rng, snr_db=20.0, slope=0.0):
    """Stationary coloured noise at an SNR measured against active speech (not diluted by pauses)."""
    noise = _coloured_noise(len(x), rng, slope, sr)
    speech_power = 10 ** (dsp.active_rms_db(x, sr) / 10)
    noise *= np.sqrt(speech_power / 10 ** (snr_db / 10))
    return x + noise


def babble(x, sr, rng, snr_db=12.0, talkers=4):
    """Babble-like noise: several band-limited noises with slow syllabic (3-6 Hz) amplitude modulation."""
    n = len(x)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for _ in range(int(talkers)):
        centre = rng.uniform(300, 2500)
        band = dsp.butter_filter(rng.standard_normal(n), sr, "bandpass", [centre * 0.5, min(centre * 2.0, sr / 2 - 100)], 2)
        rate = rng.uniform(3.0, 6.0)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
        out += band * env ** 2
    out /= np.std(out) + dsp.EPS
    out *= np.sqrt(10 ** (dsp.active_rms_db(x, sr) / 10) / 10 ** (snr_db / 10))
    return x + out


def synthetic_rir(sr: int, rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """Room impulse response: a direct path, sparse early reflections, an exponentially decaying diffuse tail
    whose high frequencies die faster (air and wall absorption)."""
    n = int(sr * min(rt60 * 1.2, 1.5)) + 1
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)   # -60 dB at rt60
    tail = dsp.butter_filter(tail, sr, "lowpass", min(sr / 2 - 100, rng.uniform(3000, 7000)), 2)
    onset = int(0.003 * sr)
    tail[:onset] = 0.0
    for _ in range(6):  # early reflections within 5-40 ms
        k = int(rng.uniform(0.005, 0.04) * sr)
        if k < n:
            tail[k] += rng.uniform(-0.6, 0.6) * np.exp(-6.908 * k / sr / rt60) * np.sqrt(np.sum(tail ** 2) / 50)
    tail_energy = np.sum(tail ** 2)
    direct_energy = tail_energy * 10 ** (drr_db / 10)
    rir = tail.copy()
    rir[0] = np.sqrt(direct_energy)
    return rir / (np.max(np.abs(rir)) + dsp.EPS)


def reverb(x, sr, rng, rt60=0.5, drr_db=3.0):
    rir = synthetic_rir(sr, rng, rt60, drr_db)
    y = sps.fftconvolve(x, rir)[:len(x)]
    return dsp.match_level(y, x, sr)


def band_limit(x, sr, rng, low_hz=0.0, high_hz=4000.0):
    """Band-limited line or microphone: a zero-phase Butterworth low-pass (and high-pass when low_hz > 0)."""
    high_hz = min(high_hz, sr / 2 * 0.98)
    if low_hz > 0:
        return dsp.butter_filter(x, sr, "bandpass", [low_hz, high_hz], 6)
    return dsp.butter_filter(x, sr, "lowpass", high_hz, 8)


def _space(**ranges) -> ParamSpace:
    return ParamSpace(ranges)


CHANNELS: dict[str, Channel] = {c.id: c for c in [
    Channel("clean", clean, doc="unchanged"),
    Channel("mp3", **_codec_channel("mp3"), space=_space(bitrate=("choice", [24000, 32000, 48000, 64000])),
            doc="MPEG-1/2 layer III (LAME) at 24-64 kbit/s"),
    Channel("opus", **_codec_channel("opus"), space=_space(bitrate=("choice", [8000, 12000, 16000, 24000])),
            doc="Opus (libopus, VoIP / messaging) at 8-24 kbit/s"),
    Channel("aac", **_codec_channel("aac"), space=_space(bitrate=("choice", [24000, 32000, 48000])),
            doc="AAC-LC (ffmpeg native encoder) at 24-48 kbit/s"),
    Channel("gsm", **_codec_channel("gsm"), doc="GSM 06.10 full rate (13 kbit/s, 8 kHz): mobile telephone line"),
    Channel("g722", **_codec_channel("g722"), doc="G.722 sub-band ADPCM (64 kbit/s, 16 kHz): wide-band VoIP"),
    Channel("mulaw", mu_law, doc="G.711 mu-law at 8 kHz (8-bit companded PCM): landline telephone"),
    Channel("noise", additive_noise, _space(snr_db=("float", 10.0, 30.0), slope=("choice", [0.0, -3.0, -6.0])),
            doc="stationary white / pink / brown noise at 10-30 dB SNR (active speech)"),
    Channel("babble", babble, _space(snr_db=("float", 5.0, 15.0), talkers=("int", 3, 6)),
            doc="babble-like modulated noise from 3-6 'talkers' at 5-15 dB SNR"),
    Channel("reverb", reverb, _space(rt60=("float", 0.25, 0.9), drr_db=("float", -3.0, 9.0)),
            doc="synthetic room: RT60 0.25-0.9 s, direct-to-reverberant ratio -3..9 dB"),
    Channel("bandlimit", band_limit, _space(low_hz=("choice", [0.0, 0.0, 300.0]), high_hz=("float", 3400.0, 7000.0)),
            doc="low-pass at 3.4-7 kHz, sometimes with a 300 Hz high-pass (telephone band)"),
]}


def get_channel(name: str) -> Channel:
    if name not in CHANNELS:
        raise ConfigError(f"unknown channel '{name}'; known: {', '.join(sorted(CHANNELS))}")
    return CHANNELS[name]
