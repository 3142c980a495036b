"""Each copy-synthesis attack and channel changes the signal in the way it claims to (and only that way:
same length, same level, deterministic for a seed)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from spoofrl.errors import ConfigError
from spoofrl.synth import dsp
from spoofrl.synth.attacks import ATTACKS, FAMILIES, get_attack
from spoofrl.synth.channels import CHANNELS, get_channel

SR = 16000


# ------------------------------------------------------------------------------------------ test signals

def speechlike(seconds: float = 1.2, seed: int = 0, breath: float = 0.02) -> np.ndarray:
    """Rosenberg glottal pulses at a rising F0 through formant resonators that change every 0.3 s, with
    aspiration noise (`breath`), a fricative in the middle and leading/trailing near-silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = np.cumsum((110 + 60 * t / seconds) / SR)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    rise, fall = int(0.004 * SR), int(0.0015 * SR)
    glottal = np.concatenate([0.5 - 0.5 * np.cos(np.pi * np.arange(rise) / rise),
                              np.cos(0.5 * np.pi * np.arange(fall) / fall)])
    source = np.convolve(pulses, np.diff(glottal, prepend=0))[:n] + breath * rng.standard_normal(n)
    out = np.zeros(n)
    seg = int(0.3 * SR)
    vowels = [(700, 1200, 2600), (300, 2200, 3000), (500, 900, 2400), (400, 1700, 2500)]
    for i, start in enumerate(range(0, n, seg)):
        y = source[start:start + seg + 400]
        for f in vowels[i % 4]:
            r = np.exp(-np.pi * (80 + 0.05 * f) / SR)
            y = sps.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], y)
        ramp = np.ones(len(y))
        ramp[:200] = np.linspace(0, 1, 200)
        ramp[-200:] = np.linspace(1, 0, 200)
        end = min(start + len(y), n)
        out[start:end] += (y * ramp)[:end - start]
    fric = sps.sosfilt(sps.butter(4, 3000, "highpass", fs=SR, output="sos"), rng.standard_normal(int(0.12 * SR)))
    out[n // 2:n // 2 + len(fric)] = fric * np.std(out) * 0.5
    out = out / np.max(np.abs(out)) * 0.5
    pad = np.zeros(int(0.1 * SR))
    return np.concatenate([pad, out, pad]) + 1e-4 * rng.standard_normal(n + 2 * len(pad))


def harmonic_tone(seconds: float = 1.2) -> np.ndarray:
    """Harmonics of a gliding F0 up to 7.8 kHz with little noise: periodic in every band."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * t
    phase = 2 * np.pi * np.cumsum(f0 / SR)
    x = sum(np.where(k * f0 < 7800, np.cos(k * phase), 0.0) / np.sqrt(k) for k in range(1, 70))
    return 0.05 * x + 0.003 * np.random.default_rng(0).standard_normal(len(t))


@pytest.fixture(scope="module")
def voice():
    return speechlike()


# ------------------------------------------------------------------------------------------ measurements

def highpass(x, hz):
    return sps.sosfiltfilt(sps.butter(8, hz, "highpass", fs=SR, output="sos"), x)


def periodicity(x, frame_s=0.04):
    """Median over active frames of the normalised autocorrelation peak at 2.5-12.5 ms (an HNR proxy)."""
    n = int(frame_s * SR)
    values = []
    for start in range(0, len(x) - n, n // 2):
        fr = x[start:start + n] - x[start:start + n].mean()
        if np.sum(fr ** 2) < 1e-5 * n * np.max(x ** 2):
            continue
        ac = np.correlate(fr, fr, "full")[n - 1:]
        values.append(np.max(ac[int(SR / 400):int(SR / 80)]) / (ac[0] + 1e-12))
    return float(np.median(values))


def lag_correlation(x, lag, frame=640):
    values = []
    for start in range(0, len(x) - frame, frame // 2):
        fr = x[start:start + frame] - x[start:start + frame].mean()
        if np.sum(fr ** 2) < 1e-6:
            continue
        ac = np.correlate(fr, fr, "full")[frame - 1:]
        values.append(ac[lag] / ac[0])
    return float(np.median(values))


def band_energy_db(x, lo, hi):
    """Energy in [lo, hi) Hz relative to the total (dB)."""
    f, p = sps.welch(x, SR, nperseg=1024)
    return float(10 * np.log10(p[(f >= lo) & (f < hi)].sum() / p.sum() + 1e-12))


def logmel(x, n_mels=40):
    power = np.abs(dsp.stft(x, 512, 128)) ** 2
    return 10 * np.log10(power @ dsp.mel_filterbank(SR, 512, n_mels).T + 1e-10)


def logmel_distance(x, y):
    """Mean absolute log-mel difference (dB) over frames within 40 dB of the loudest."""
    a, b = logmel(x), logmel(y)
    active = a.max(axis=1) > a.max() - 40
    return float(np.mean(np.abs(a[active] - b[active])))


def mirror_correlation(x, fold_hz):
    """Correlation of the long-term log spectrum just below `fold_hz` with its mirror image above it:
    close to 1 when the band above is an image of the band below (upsampling artefact)."""
    power = np.mean(np.abs(dsp.stft(x, 1024, 256)) ** 2, axis=0)
    k = int(round(fold_hz / SR * 1024))
    width = int(k * 0.8)
    below = 10 * np.log10(power[k - width:k] + 1e-12)
    above = 10 * np.log10(power[k + 1:k + width + 1][::-1] + 1e-12)
    return float(np.corrcoef(below, above)[0, 1])


def envelope_motion(x, order=20):
    """Mean frame-to-frame change of the low cepstrum (the spectral envelope) over active frames."""
    log_mag = np.log(np.abs(dsp.stft(x, 512, 128)) + 1e-7)
    cep = np.fft.irfft(log_mag, axis=1)[:, 1:order]
    active = log_mag.mean(axis=1) > log_mag.mean(axis=1).max() - 5
    return float(np.mean(np.abs(np.diff(cep, axis=0))[active[1:]]))


def envelope_detail(x):
    """Share of CheapTrick log-envelope cepstral energy above quefrency 25 (fine envelope detail)."""
    pw = dsp.load_pyworld()
    f0, times = dsp.f0_track(x, SR)
    sp = pw.cheaptrick(np.ascontiguousarray(x), f0, times, SR)
    cep = np.fft.irfft(np.log(sp + 1e-12), axis=1)
    voiced = f0 > 0
    return float(np.sum(cep[voiced, 25:200] ** 2) / np.sum(cep[voiced, 1:200] ** 2))


def click_train():
    x = np.zeros(SR)
    clicks = np.arange(800, SR - 800, 1600)
    x[clicks] = 1.0
    return x + 1e-4 * np.random.default_rng(0).standard_normal(SR), clicks


def click_concentration(x, clicks, half=32):
    """Share of the energy within +-2 ms of the clicks."""
    near = np.zeros(len(x), bool)
    for c in clicks:
        near[max(c - half, 0):c + half] = True
    return float(np.sum(x[near] ** 2) / np.sum(x ** 2))


# ------------------------------------------------------------------------------------------ common contract

def test_registry_has_at_least_eight_families():
    assert len(FAMILIES) >= 8
    for name, attack in ATTACKS.items():
        assert attack.id == name and attack.doc and attack.family in FAMILIES


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name, voice):
    attack = ATTACKS[name]
    params = attack.sample_params(np.random.default_rng(3))
    y1 = attack(voice, SR, np.random.default_rng(7), **params)
    y2 = attack(voice, SR, np.random.default_rng(7), **params)
    assert y1.shape == voice.shape and np.all(np.isfinite(y1))
    np.testing.assert_array_equal(y1, y2)                                   # deterministic for a seed
    assert abs(dsp.active_rms_db(y1, SR) - dsp.active_rms_db(voice, SR)) < 0.5  # loudness is no cue
    assert np.max(np.abs(y1 - voice)) > 0.05 * np.max(np.abs(voice))        # it did change the signal


def test_parameters_are_checked(voice):
    with pytest.raises(ConfigError, match="unknown parameter.*bogus"):
        ATTACKS["lpc"](voice, SR, np.random.default_rng(0), bogus=1)
    with pytest.raises(ConfigError, match="unknown attack 'nope'.*world"):
        get_attack("nope")
    with pytest.raises(ConfigError, match="unknown channel"):
        get_channel("nope")


# ------------------------------------------------------------------------------------------ intended changes

def test_world_keeps_envelope_and_regenerates_waveform(voice):
    y = ATTACKS["world"](voice, SR, np.random.default_rng(0))
    assert logmel_distance(voice, y) < 3.0
    assert abs(np.corrcoef(voice, y)[0, 1]) < 0.6


def test_world_coded_loses_envelope_detail(voice):
    full = ATTACKS["world"](voice, SR, np.random.default_rng(0))
    coded = ATTACKS["world_coded"](voice, SR, np.random.default_rng(0), sp_dims=20, frame_period=5.0, code_ap=True)
    assert envelope_detail(coded) < 0.8 * envelope_detail(full)


def test_griffinlim_keeps_magnitude_but_not_phase(voice):
    y = ATTACKS["griffinlim"](voice, SR, np.random.default_rng(0), n_mels=80, n_iter=32)
    assert logmel_distance(voice, y) < 4.0
    assert abs(np.corrcoef(voice, y)[0, 1]) < 0.5


def test_lowres_mel_smears_harmonics(voice):
    y = ATTACKS["griffinlim_lowres"](voice, SR, np.random.default_rng(0), n_mels=20, n_iter=8)
    assert periodicity(voice) - periodicity(y) > 0.2


def test_lpc_replaces_breathy_excitation_with_pulses():
    breathy = speechlike(breath=0.03, seed=2)
    y = ATTACKS["lpc"](breathy, SR, np.random.default_rng(0), order=16, noise_mix=0.0)
    assert periodicity(y) > periodicity(breathy) + 0.1


def test_hnm_turns_the_band_above_max_voiced_frequency_into_noise():
    tone = harmonic_tone()
    y = ATTACKS["hnm"](tone, SR, np.random.default_rng(0), max_voiced_hz=3000.0)
    assert periodicity(highpass(tone, 4000)) > 0.4
    assert periodicity(highpass(y, 4000)) < 0.25
    assert periodicity(y) > 0.5                      # the band below stays harmonic


def test_phase_vocoder_smears_transients():
    clicks, at = click_train()
    y = ATTACKS["pvoc"](clicks, SR, np.random.default_rng(0), rate=1.3, n_fft=1024)
    assert click_concentration(clicks, at) > 0.95
    assert click_concentration(y, at) < 0.5


@pytest.mark.parametrize("name", ["codec2", "celp"])
def test_narrow_band_codecs_remove_the_band_above_4khz(name, voice):
    y = ATTACKS[name](voice, SR, np.random.default_rng(0))
    assert band_energy_db(voice, 4200, 8000) > -30
    assert band_energy_db(y, 4200, 8000) < -40


def test_codec2_keeps_timing(voice):
    """The decoded signal is aligned back onto the input: the silent lead-in stays silent."""
    y = ATTACKS["codec2"](voice, SR, np.random.default_rng(0), mode="1300")
    lead = int(0.08 * SR)
    assert np.sqrt(np.mean(y[:lead] ** 2)) < 0.05 * np.sqrt(np.mean(y[lead:] ** 2))


@pytest.mark.parametrize("name,factor", [("upsampler_x2", 2), ("upsampler_x4", 4)])
def test_random_upsampler_mirrors_spectrum_checkerboard(name, factor, voice):
    y = ATTACKS[name](voice, SR, np.random.default_rng(0), channels=8, kernel=3, weight_noise=0.1, slope=0.3,
                      imbalance=0.4)
    # the last stride-2 stage's even/odd gain pattern folds the spectrum around a quarter of the output rate
    assert mirror_correlation(y, SR / 4) > 0.6
    assert mirror_correlation(voice, SR / 4) < 0.5
    # images fill the band above the decimated signal's Nyquist, which plain resampling leaves empty
    nyquist = SR / (2 * factor)
    plain = dsp.resample_poly(dsp.resample_poly(voice, SR, SR // factor), SR // factor, SR)
    assert band_energy_db(y, nyquist * 1.1, SR / 2) > band_energy_db(plain, nyquist * 1.1, SR / 2) + 20


def test_envelope_smoothing_slows_formant_motion(voice):
    y = ATTACKS["envsmooth"](voice, SR, np.random.default_rng(0), cep_order=24, time_frames=9, strength=1.0)
    assert envelope_motion(y) < 0.85 * envelope_motion(voice)
    assert np.corrcoef(voice, y)[0, 1] > 0.8           # phase and fine structure are kept


def test_minimum_phase_adds_frame_rate_buzz_and_smears_clicks(voice):
    y = ATTACKS["minphase"](voice, SR, np.random.default_rng(0), n_fft=512)
    hop = 128
    assert lag_correlation(y, hop) > lag_correlation(voice, hop) + 0.2
    clicks, at = click_train()
    assert click_concentration(ATTACKS["minphase"](clicks, SR, np.random.default_rng(0), n_fft=512), at) < 0.3


# ------------------------------------------------------------------------------------------ channels

@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_channel_contract(name, voice):
    channel = CHANNELS[name]
    params = channel.sample_params(np.random.default_rng(1))
    y = channel(voice, SR, np.random.default_rng(2), **params)
    assert y.shape == voice.shape and np.all(np.isfinite(y))
    np.testing.assert_array_equal(y, channel(voice, SR, np.random.default_rng(2), **params))
    if name == "clean":
        np.testing.assert_array_equal(y, voice)
    else:
        assert np.max(np.abs(y - voice)) > 1e-3


def test_bandlimit_removes_energy_above_cutoff(voice):
    y = CHANNELS["bandlimit"](voice, SR, np.random.default_rng(0), low_hz=0.0, high_hz=3400.0)
    assert band_energy_db(y, 4000, 8000) < band_energy_db(voice, 4000, 8000) - 30


@pytest.mark.parametrize("name", ["mulaw", "gsm"])
def test_telephone_channels_are_narrow_band(name, voice):
    y = CHANNELS[name](voice, SR, np.random.default_rng(0))
    assert band_energy_db(y, 4200, 8000) < -40


def test_noise_is_added_at_the_requested_snr(voice):
    y = CHANNELS["noise"](voice, SR, np.random.default_rng(0), snr_db=10.0, slope=0.0)
    noise = y - voice
    snr = dsp.active_rms_db(voice, SR) - dsp.rms_db(noise)
    assert abs(snr - 10.0) < 0.5


def test_reverb_fills_the_pauses(voice):
    y = CHANNELS["reverb"](voice, SR, np.random.default_rng(0), rt60=0.8, drr_db=0.0)
    tail = slice(len(voice) - int(0.1 * SR), len(voice) - int(0.05 * SR))  # just after the speech ends
    assert np.mean(y[tail] ** 2) > 30 * np.mean(voice[tail] ** 2)


def test_mp3_at_low_rate_is_close_but_not_identical(voice):
    y = CHANNELS["mp3"](voice, SR, np.random.default_rng(0), bitrate=32000)
    assert np.corrcoef(voice, y)[0, 1] > 0.9                 # aligned (encoder delay removed)
    assert logmel_distance(voice, y) > 0.1


def test_batched_codec_round_trips_equal_single_ones(voice):
    """Batching must not change a sample (resumed or re-chunked runs batch other files together). Several
    codec2 streams included: libcodec2 instances in one process disturb each other unless kept apart."""
    from spoofrl.codecs import CodecRequest, codec_roundtrip, codec_roundtrip_many
    other = speechlike(seed=4)
    signals = [voice, other, voice, other, voice]
    requests = [CodecRequest("mp3", 32000), CodecRequest("codec2", None, ("-mode", "1300")), CodecRequest("gsm"),
                CodecRequest("codec2", None, ("-mode", "700C")), CodecRequest("codec2", None, ("-mode", "1300"))]
    batched = codec_roundtrip_many(signals, SR, requests)
    for x, request, y in zip(signals, requests, batched):
        np.testing.assert_array_equal(y, codec_roundtrip(x, SR, request.name, request.bitrate, request.extra_args))


def test_batched_round_trips_at_each_signals_own_rate(voice):
    """Vorbis packaging codes each clip at its own rate (22.05 / 44.1 / 48 kHz): one batch of several rates
    equals each round trip alone, and the result is at the input's rate and aligned to it."""
    from spoofrl.audio import resample
    from spoofrl.codecs import CodecRequest, codec_roundtrip, codec_roundtrip_many
    rates = [22050, 44100, 48000]
    signals = [resample(voice, SR, r).astype(np.float64) for r in rates]
    batched = codec_roundtrip_many(signals, rates, [CodecRequest("vorbis", 64000) for _ in rates])
    for x, rate, y in zip(signals, rates, batched):
        np.testing.assert_array_equal(y, codec_roundtrip(x, rate, "vorbis", 64000))
        assert len(y) == len(x) and np.corrcoef(x, y)[0, 1] > 0.9
