"""Copy-synthesis attacks: analyse bona fide speech, then resynthesise it with a vocoder.

Each attack leaves the words, speaker and timing in place and changes only how the waveform is made,
so a detector has to find the vocoder's artefacts. `ATTACKS` maps an attack id to an `Attack`, callable
as `attack(x, sr, rng, **params)`; missing parameters are drawn from the attack's documented ranges.
The output has the input's length and active-speech level (neither may betray the class).

Families (each implemented here from numpy/scipy primitives, pyworld for WORLD, ffmpeg for real codecs):
world, griffinlim, lpc, hnm, pvoc, codec2, celp, upsampler, envsmooth, minphase.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from spoofrl.errors import ConfigError
from spoofrl.synth import dsp
from spoofrl.codecs import CodecRequest, codec_roundtrip_many
from spoofrl.synth.params import ParamSpace


@dataclass(frozen=True)
class Attack:
    id: str
    family: str
    fn: Callable[..., np.ndarray]
    space: ParamSpace = field(default_factory=ParamSpace)
    doc: str = ""
    # for codec attacks: the ffmpeg round trip that *is* the attack, so callers can batch many of them
    codec: Callable[[dict], CodecRequest] | None = None

    def sample_params(self, rng: np.random.Generator) -> dict:
        return self.space.sample(rng)

    def __call__(self, x: np.ndarray, sr: int, rng: np.random.Generator, **params) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        full = self.space.complete(params, rng, f"attack '{self.id}'")
        return self.finish(x, self.fn(x, sr, rng, **full), sr)

    @staticmethod
    def finish(x: np.ndarray, y: np.ndarray, sr: int) -> np.ndarray:
        """Vocoder output -> attack output: the input's length and active level (neither may betray the class)."""
        y = dsp.fit_length(np.nan_to_num(np.asarray(y, dtype=np.float64)), len(x))
        return dsp.match_level(y, x, sr)


# ---------------------------------------------------------------------------------------------- WORLD

def world(x, sr, rng, frame_period=5.0, sp_dims=0, code_ap=False):
    """WORLD analysis (DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity) and synthesis.
    `sp_dims` > 0 compresses the envelope to that many mel-cepstrum-like coded dimensions first,
    as TTS acoustic models predict it; `code_ap` reduces aperiodicity to WORLD's coarse bands."""
    pw = dsp.load_pyworld()
    f0, times = dsp.f0_track(x, sr, frame_period)
    sp = pw.cheaptrick(x, f0, times, sr)
    ap = pw.d4c(x, f0, times, sr)
    fft_size = (sp.shape[1] - 1) * 2
    if sp_dims:
        sp = pw.decode_spectral_envelope(pw.code_spectral_envelope(sp, sr, int(sp_dims)), sr, fft_size)
    if code_ap:
        ap = pw.decode_aperiodicity(np.ascontiguousarray(pw.code_aperiodicity(ap, sr)), sr, fft_size)
    return pw.synthesize(f0, sp, ap, sr, frame_period)


# ---------------------------------------------------------------------------------------------- Griffin-Lim

def _mel_to_power(mel: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Linear power spectrum [bins, frames] behind mel energies [mels, frames]: each band's mean power
    density spread back over the bins it covers, overlapping bands blended by their filter weights.
    Smooth by construction (no empty bins), so fewer bands mean a blurrier spectrum."""
    density = mel / (fb.sum(axis=1, keepdims=True) + dsp.EPS)
    weight = fb.sum(axis=0)[:, None]
    power = (fb.T @ density) / (weight + dsp.EPS)
    uncovered = weight[:, 0] < 1e-6 * weight.max()          # bins below the first band's centre
    if np.any(uncovered):
        power[uncovered] = power[np.argmax(~uncovered)]
    return np.maximum(power, 0.0)


def griffin_lim(x, sr, rng, n_mels=80, n_fft=1024, hop=256, n_iter=32, momentum=0.99):
    """Magnitude-only vocoding: mel spectrogram -> linear magnitude -> phase by (fast) Griffin-Lim
    from random initial phase. Few mel bands smear the harmonics; few iterations leave phasiness."""
    spec = dsp.stft(x, n_fft, hop)
    fb = dsp.mel_filterbank(sr, n_fft, int(n_mels), 0.0, sr / 2)
    mel = fb @ (np.abs(spec) ** 2).T                        # [mels, frames]
    mag = np.sqrt(_mel_to_power(mel, fb)).T                 # [frames, bins]
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    previous = np.zeros_like(spec)
    y = dsp.istft(mag * angles, n_fft, hop, len(x))
    for _ in range(int(n_iter)):
        rebuilt = dsp.stft(y, n_fft, hop)[:mag.shape[0]]
        accelerated = rebuilt + momentum * (rebuilt - previous)  # fast Griffin-Lim (Perraudin et al. 2013)
        previous = rebuilt
        angles = accelerated / (np.abs(accelerated) + dsp.EPS)
        y = dsp.istft(mag * angles, n_fft, hop, len(x))
    return y


# ---------------------------------------------------------------------------------------------- LPC

def _excitation(x, sr, rng, noise_mix, frame_period=5.0):
    """Pulse train at the tracked F0 in voiced regions plus white noise (all of it where unvoiced)."""
    f0, times = dsp.f0_track(x, sr, frame_period)
    f0_s = dsp.interp_f0(f0, times, len(x), sr)
    pulses = dsp.pulse_train(f0_s, sr)
    noise = rng.standard_normal(len(x))
    voiced = f0_s > 0
    return np.where(voiced, (1 - noise_mix) * pulses + noise_mix * noise, noise)


def lpc_vocoder(x, sr, rng, order=16, frame_ms=25.0, noise_mix=0.1):
    """Source-filter resynthesis: per frame an all-pole filter 1/A(z) (order `order`) fitted by LPC,
    driven by a pulse/noise excitation instead of the true residual; overlap-added with a Hann window."""
    n = int(sr * frame_ms / 1000) // 2 * 2
    hop = n // 2
    win = dsp.hann(n)
    exc = _excitation(x, sr, rng, noise_mix)
    xp = np.pad(x, (0, n))
    ep = np.pad(exc, (0, n))
    out = np.zeros(len(xp))
    for start in range(0, len(x), hop):
        frame = xp[start:start + n] * win
        a, err = dsp.lpc(frame, int(order))
        if err <= 0:
            continue
        synth = sps.lfilter([1.0], a, ep[start:start + n])
        target_rms = np.sqrt(np.mean(frame ** 2))
        synth *= target_rms / (np.sqrt(np.mean((synth * win) ** 2)) + dsp.EPS)
        out[start:start + n] += synth * win
    return out[:len(x)]


# ---------------------------------------------------------------------------------------------- HNM

def harmonic_plus_noise(x, sr, rng, max_voiced_hz=4500.0, frame_period=5.0):
    """Harmonic-plus-noise model: below the maximum voiced frequency a sum of harmonics of F0 with
    amplitudes read off the CheapTrick envelope and phases from integrated F0 (no original phase);
    above it, and in unvoiced frames, envelope-shaped noise."""
    pw = dsp.load_pyworld()
    f0, times = dsp.f0_track(x, sr, frame_period)
    sp = pw.cheaptrick(x, f0, times, sr)                    # power envelope [frames, bins]
    fft_size = (sp.shape[1] - 1) * 2
    n = len(x)
    frame_pos = times * sr
    f0_s = np.interp(np.arange(n), frame_pos, f0)
    voiced_s = np.interp(np.arange(n), frame_pos, (f0 > 0).astype(float)) > 0.5
    f0_s = np.where(voiced_s, np.maximum(f0_s, 40.0), 0.0)
    phase = 2 * np.pi * np.cumsum(f0_s / sr)
    harmonic = np.zeros(n)
    f0_safe = np.where(f0 > 0, f0, np.inf)
    n_harm = int(max_voiced_hz / max(np.min(f0_safe), 40.0)) if np.any(f0 > 0) else 0
    rows = np.arange(sp.shape[0])
    for k in range(1, n_harm + 1):
        hz = k * f0                                          # per frame
        bin_pos = np.clip(hz * fft_size / sr, 0, sp.shape[1] - 1.001)
        lo = bin_pos.astype(int)
        frac = bin_pos - lo
        power = (1 - frac) * sp[rows, lo] + frac * sp[rows, lo + 1]
        # amplitude giving the envelope's power density over one harmonic spacing (see docs/benchmark.md)
        amp = np.where((f0 > 0) & (hz < max_voiced_hz), 2.0 * np.sqrt(power * np.maximum(f0, 1.0) / sr), 0.0)
        harmonic += np.interp(np.arange(n), frame_pos, amp) * np.cos(k * phase)
    # noise: white noise STFT shaped by the envelope, masked to the band above max_voiced_hz where voiced
    n_fft, hop = fft_size, int(sr * frame_period / 1000)
    noise_spec = dsp.stft(rng.standard_normal(n), n_fft, hop)
    frames = min(noise_spec.shape[0], sp.shape[0])
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mask = np.where((f0[:frames, None] > 0) & (freqs[None, :] < max_voiced_hz), 0.0, 1.0)
    shaped = noise_spec[:frames] * np.sqrt(sp[:frames]) * mask
    noise = dsp.istft(shaped, n_fft, hop, n)
    return harmonic + noise


# ---------------------------------------------------------------------------------------------- phase vocoder

def _pv_stretch(spec: np.ndarray, rate: float, hop: int, n_fft: int) -> np.ndarray:
    """Phase-vocoder time scaling of an STFT by `rate` (>1 faster): magnitudes interpolated between
    frames, phases advanced by each bin's measured instantaneous frequency."""
    steps = np.arange(0, spec.shape[0] - 1, rate)
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    phase = np.angle(spec[0])
    out = np.empty((len(steps), spec.shape[1]), dtype=complex)
    for i, step in enumerate(steps):
        lo = int(step)
        frac = step - lo
        mag = (1 - frac) * np.abs(spec[lo]) + frac * np.abs(spec[lo + 1])
        out[i] = mag * np.exp(1j * phase)
        delta = np.angle(spec[lo + 1]) - np.angle(spec[lo]) - expected
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase = phase + expected + delta
    return out


def phase_vocoder(x, sr, rng, rate=1.25, n_fft=1024):
    """Time-stretch by `rate` and back by 1/rate with a phase vocoder: the duration is kept, but the
    vertical phase coherence between bins is lost ('phasiness') and transients are smeared."""
    hop = n_fft // 4
    spec = dsp.stft(x, n_fft, hop)
    there = _pv_stretch(spec, rate, hop, n_fft)
    back = _pv_stretch(there, 1.0 / rate, hop, n_fft)
    return dsp.istft(back, n_fft, hop, len(x))


# ---------------------------------------------------------------------------------------------- codecs

def codec2_request(params: dict) -> CodecRequest:
    """Codec2 (a sinusoidal low-bit-rate vocoder, 700-3200 bit/s, 8 kHz) via ffmpeg's libcodec2."""
    return CodecRequest("codec2", None, ("-mode", str(params["mode"])))


def celp_request(params: dict) -> CodecRequest:
    """Code-excited linear prediction at low rate: G.723.1 (6.3 kbit/s ACELP/MP-MLQ) or Speex narrow-band
    at a low CBR quality, via ffmpeg; both run at 8 kHz."""
    if params["codec"] == "g723_1":
        return CodecRequest("g723_1", 6300)
    return CodecRequest("speex", None, ("-cbr_quality", str(int(params["quality"]))))


def _via_codec(request: Callable[[dict], CodecRequest]):
    def apply(x, sr, rng, **params):
        return codec_roundtrip_many([x], sr, [request(params)])[0]
    apply.__doc__ = request.__doc__
    return apply


# ---------------------------------------------------------------------------------------------- neural upsampler

def _transposed_conv(h: np.ndarray, weights: np.ndarray, stride: int) -> np.ndarray:
    """1-D transposed convolution: h [in_ch, T], weights [out_ch, in_ch, K] -> [out_ch, T * stride]."""
    in_ch, t = h.shape
    up = np.zeros((in_ch, t * stride))
    up[:, ::stride] = h                                     # zero insertion, then an ordinary convolution
    out_ch, _, k = weights.shape
    out = np.zeros((out_ch, t * stride + k - 1))
    for o in range(out_ch):
        for i in range(in_ch):
            out[o] += np.convolve(up[i], weights[o, i])
    shift = (k - 1) // 2
    return out[:, shift:shift + t * stride]


def _leaky_relu(h: np.ndarray, slope: float) -> np.ndarray:
    return np.where(h > 0, h, slope * h)


def neural_upsampler(x, sr, rng, factor=2, channels=8, kernel=3, weight_noise=0.25, slope=0.3, imbalance=0.25):
    """A randomly initialised (untrained) upsampling network, as in GAN vocoders before they converge:
    the input is decimated by `factor`, then rebuilt by stride-2 transposed convolutions whose kernels are
    an interpolation kernel plus random weights, with leaky-ReLU between stages. A kernel whose size is not
    a multiple of the stride feeds even and odd output samples through different taps; `imbalance` (the
    extra gain of the odd taps, on top of the random weights) makes that uneven overlap audible as the
    classic checkerboard: a gain pattern repeating every 2 samples of each stage, which mirrors the band
    below a quarter of that stage's output rate into the band above (spectral images)."""
    stages = int(np.log2(factor))
    h = dsp.resample_poly(x, sr, sr // factor)[None, :]
    in_ch = 1
    half = (kernel - 1) / 2
    base = np.maximum(0.0, 1.0 - np.abs(np.arange(kernel) - half) / 2.0)   # linear interpolation at stride 2
    base[1::2] *= 1.0 + imbalance
    for stage in range(stages):
        out_ch = int(channels)
        mix = rng.standard_normal((out_ch, in_ch)) / np.sqrt(in_ch)
        weights = mix[:, :, None] * base[None, None, :]
        weights += weight_noise * rng.standard_normal(weights.shape) / np.sqrt(in_ch)
        h = _leaky_relu(_transposed_conv(h, weights, 2), slope)
        in_ch = out_ch
    readout = rng.standard_normal(in_ch)
    y = dsp.fit_length(readout @ h, len(x))
    if np.dot(y, x) < 0:  # keep the input's polarity (a random read-out may flip it)
        y = -y
    y = y - uniform_filter1d(y, size=int(0.02 * sr))        # the leaky ReLU's rectification adds a slow DC drift
    return y


# ---------------------------------------------------------------------------------------------- envelope smoothing

def envelope_smoothing(x, sr, rng, cep_order=24, time_frames=7, strength=0.8, n_fft=512):
    """Over-smoothing as in statistical parametric TTS: the cepstral spectral envelope (first `cep_order`
    quefrencies) is averaged over `time_frames` frames (blended by `strength`), the fine (harmonic)
    structure and the phase are kept. Formant movements flatten; the envelope's temporal variance drops."""
    hop = n_fft // 4
    spec = dsp.stft(x, n_fft, hop)
    log_mag = np.log(np.abs(spec) + 1e-7)
    env = dsp.real_cepstrum_lifter(log_mag, int(cep_order))
    fine = log_mag - env
    smooth = uniform_filter1d(env, size=int(time_frames), axis=0, mode="nearest")
    new_env = (1 - strength) * env + strength * smooth
    new_mag = np.exp(new_env + fine)
    return dsp.istft(new_mag * np.exp(1j * np.angle(spec)), n_fft, hop, len(x))


# ---------------------------------------------------------------------------------------------- minimum phase

def minimum_phase_resynthesis(x, sr, rng, n_fft=512):
    """Keep every frame's magnitude, replace its phase by the minimum phase of that magnitude (what a
    magnitude-only vocoder with a minimum-phase filter produces). The glottal-pulse phase, the timing of
    pulses within a frame and the phase continuity between frames are lost: each frame's energy gathers at
    its onset, which adds a buzz at the frame rate (sr / hop) and smears clicks."""
    hop = n_fft // 4
    spec = dsp.stft(x, n_fft, hop)
    log_mag = np.log(np.abs(spec) + 1e-7)
    phase = dsp.minimum_phase(log_mag)
    return dsp.istft(np.abs(spec) * np.exp(1j * phase), n_fft, hop, len(x))


def _space(**ranges) -> ParamSpace:
    return ParamSpace(ranges)


ATTACKS: dict[str, Attack] = {a.id: a for a in [
    Attack("world", "world", world, _space(frame_period=("choice", [5.0]), sp_dims=("choice", [0]), code_ap=("choice", [False])),
           doc="WORLD vocoder copy-synthesis with the full spectral envelope (5 ms frames)"),
    Attack("world_coded", "world", world,
           _space(frame_period=("choice", [5.0, 10.0]), sp_dims=("int", 20, 40), code_ap=("choice", [True])),
           doc="WORLD with the envelope coded to 20-40 dimensions and band aperiodicity, 5 or 10 ms frames "
               "(what a parametric TTS acoustic model outputs)"),
    Attack("griffinlim", "griffinlim", griffin_lim,
           _space(n_mels=("int", 64, 80), n_fft=("choice", [1024]), hop=("choice", [256]), n_iter=("int", 24, 40),
                  momentum=("choice", [0.99])),
           doc="80-band mel spectrogram inverted with 24-40 iterations of fast Griffin-Lim"),
    Attack("griffinlim_lowres", "griffinlim", griffin_lim,
           _space(n_mels=("int", 16, 32), n_fft=("choice", [512, 1024]), hop=("choice", [256]), n_iter=("int", 6, 16),
                  momentum=("choice", [0.0, 0.99])),
           doc="low-resolution 16-32-band mel inverted with only 6-16 Griffin-Lim iterations"),
    Attack("lpc", "lpc", lpc_vocoder,
           _space(order=("int", 10, 20), frame_ms=("float", 20.0, 30.0), noise_mix=("float", 0.0, 0.3)),
           doc="LPC source-filter vocoder: order 10-20 all-pole filters excited by pulses and noise"),
    Attack("hnm", "hnm", harmonic_plus_noise,
           _space(max_voiced_hz=("float", 3000.0, 6000.0), frame_period=("choice", [5.0])),
           doc="harmonic-plus-noise model: harmonics up to a 3-6 kHz maximum voiced frequency, noise above"),
    Attack("pvoc", "pvoc", phase_vocoder, _space(rate=("float", 0.7, 1.4), n_fft=("choice", [512, 1024])),
           doc="phase-vocoder time-stretch by 0.7-1.4 and back (phasiness, smeared transients)"),
    Attack("codec2", "codec2", _via_codec(codec2_request),
           _space(mode=("choice", ["3200", "2400", "1600", "1300", "1200", "700C"])),
           doc="Codec2 sinusoidal speech codec at 700-3200 bit/s (8 kHz), via ffmpeg libcodec2", codec=codec2_request),
    Attack("celp", "celp", _via_codec(celp_request), _space(codec=("choice", ["g723_1", "speex"]), quality=("int", 0, 3)),
           doc="CELP codecs at low rate: G.723.1 6.3 kbit/s or Speex narrow-band CBR quality 0-3 (8 kHz)",
           codec=celp_request),
    Attack("upsampler_x2", "upsampler", neural_upsampler,
           _space(factor=("choice", [2]), channels=("int", 4, 12), kernel=("choice", [3, 5]),
                  weight_noise=("float", 0.1, 0.4), slope=("float", 0.1, 0.5), imbalance=("float", 0.15, 0.5)),
           doc="randomly initialised transposed-convolution upsampler, x2 from 8 kHz (checkerboard, images above 4 kHz)"),
    Attack("upsampler_x4", "upsampler", neural_upsampler,
           _space(factor=("choice", [4]), channels=("int", 4, 12), kernel=("choice", [3, 5]),
                  weight_noise=("float", 0.1, 0.4), slope=("float", 0.1, 0.5), imbalance=("float", 0.15, 0.5)),
           doc="two stride-2 random transposed convolutions, x4 from 4 kHz (period-4 checkerboard)"),
    Attack("envsmooth", "envsmooth", envelope_smoothing,
           _space(cep_order=("int", 16, 32), time_frames=("int", 5, 11), strength=("float", 0.6, 1.0),
                  n_fft=("choice", [512])),
           doc="spectral-envelope over-smoothing over 5-11 frames (flattened formant trajectories)"),
    Attack("minphase", "minphase", minimum_phase_resynthesis, _space(n_fft=("choice", [256, 512, 1024])),
           doc="magnitudes kept, phases replaced per frame by minimum phase (frame-rate buzz, no glottal phase)"),
]}

FAMILIES = sorted({a.family for a in ATTACKS.values()})


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack '{name}'; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]
