"""spoofrl.evidence on constructed signals whose answers are known."""
from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
from scipy import signal as sps

from spoofrl.audio import write_audio
from spoofrl.config import from_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.evidence import (
    EVIDENCE_VERSION,
    EvidenceConfig,
    EvidenceError,
    EvidenceItem,
    ReferenceProfile,
    bands_overlap,
    evidence,
    find,
    fit_reference,
    measure,
    most_deviating,
)

SR = 16000
HOP_S = 0.010


# ------------------------------------------------------------------------------------------ signals

def harmonic(f0: float = 150.0, seconds: float = 3.0, jitter: float = 0.0, seed: int = 0,
             top_hz: float = 7900.0) -> np.ndarray:
    """A 1/k harmonic complex; with `jitter`, every period's length is perturbed by N(0, jitter) (relative)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    periods = (SR / f0) * (1 + jitter * rng.standard_normal(int(seconds * f0) + 8))
    bounds = np.concatenate([[0.0], np.cumsum(periods)])
    t = np.arange(n)
    cycle = np.searchsorted(bounds, t, side="right") - 1
    phase = 2 * np.pi * (cycle + (t - bounds[cycle]) / periods[cycle])  # linear within each period
    ks = np.arange(1, int(top_hz / f0) + 1)
    return 0.1 * np.sum(np.sin(np.outer(phase, ks)) / ks, axis=1)


def white(seconds: float = 3.0, seed: int = 0, level: float = 0.1) -> np.ndarray:
    return level * np.random.default_rng(seed).standard_normal(int(seconds * SR))


def speechlike_noise(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Steady noise with a speech-like spectral tilt (a gentle low-pass)."""
    sos = sps.butter(2, 1500, fs=SR, output="sos")
    x = sps.sosfilt(sos, white(seconds, seed)) + 0.05 * white(seconds, seed + 1)
    return x / np.std(x) * 0.1


def lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """A steep elliptic low-pass, like a codec's band limit."""
    return sps.sosfiltfilt(sps.ellip(10, 0.1, 90, cutoff_hz, fs=SR, output="sos"), x)


def speechlike(seed: int, seconds: float = 3.0, pause_noise: float = 10 ** (-60 / 20)) -> np.ndarray:
    """Syllables (voiced harmonic bursts with gliding F0 through formant resonators, some fricatives)
    separated by pauses holding white noise of amplitude `pause_noise` (0: digital silence)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    base_f0 = rng.uniform(110, 170)
    out = np.zeros(n)
    pos = int(rng.uniform(0.15, 0.25) * SR)
    while pos < n - int(0.3 * SR):
        length = int(rng.uniform(0.18, 0.32) * SR)
        f0 = base_f0 * (1 + 0.15 * np.sin(np.linspace(0, rng.uniform(1, 3), length)) + 0.05 * rng.standard_normal())
        phase = 2 * np.pi * np.cumsum(f0) / SR
        ks = np.arange(1, int(7800 / f0.max()) + 1)
        voiced = np.sum(np.sin(np.outer(phase, ks)) / ks ** 0.7, axis=1)
        for formant, bw in ((rng.uniform(450, 750), 90), (rng.uniform(1200, 1900), 120), (2600, 200)):
            r = np.exp(-np.pi * bw / SR)
            voiced = sps.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / SR), r * r], voiced) + 0.3 * voiced
        envelope = np.sin(np.linspace(0, np.pi, length)) ** 0.5
        out[pos:pos + length] += 0.3 * voiced / np.max(np.abs(voiced)) * envelope
        pos += length
        if rng.random() < 0.5:
            fric = int(rng.uniform(0.05, 0.1) * SR)
            noise = sps.sosfilt(sps.butter(4, 3500, "high", fs=SR, output="sos"), rng.standard_normal(fric))
            out[pos:pos + fric] += 0.03 * noise * np.hanning(fric)
            pos += fric
        pos += int(rng.uniform(0.08, 0.25) * SR)
    return out + pause_noise * rng.standard_normal(n)


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return fit_reference([speechlike(seed) for seed in range(10)])


def only(items, kind, band=None):
    found = [i for i in items if i.kind == kind and (band is None or i.band_hz == band)]
    assert len(found) == 1, (kind, band, found)
    return found[0]


# ------------------------------------------------------------------------------------------ F0, jitter, HNR

def test_harmonic_f0_and_jitter():
    clean = measure(harmonic(150.0), SR)
    assert clean.f0_median_hz == pytest.approx(150.0, rel=0.03)
    assert clean.voiced_share > 0.95
    assert clean.f0_jitter_pct < 0.2
    perturbed = measure(harmonic(150.0, jitter=0.02, seed=1), SR)
    assert perturbed.f0_median_hz == pytest.approx(150.0, rel=0.03)
    assert perturbed.f0_jitter_pct > 1.0 and perturbed.f0_jitter_pct > 5 * clean.f0_jitter_pct
    assert perturbed.f0_smoothness_st > clean.f0_smoothness_st


def test_noise_is_flat_and_aperiodic_harmonic_is_not():
    noise, tone = measure(white(), SR), measure(harmonic(150.0), SR)
    assert min(noise.flatness_db) > -4.0 and max(tone.flatness_db) < -8.0
    assert noise.hnr_db[0] < 0 and tone.hnr_db[0] > 15
    assert noise.voiced_share < 0.05 and noise.f0_median_hz is None and noise.f0_jitter_pct is None
    # steady partials keep their phase advance; noise phase wanders (about pi/2 on average)
    assert max(tone.phase_irregularity_rad) < 0.3 and min(noise.phase_irregularity_rad) > 1.0


# ------------------------------------------------------------------------------------------ bandwidth, codec cliff

def test_lowpass_gives_bandwidth_and_band_limit_flag():
    full = white() + harmonic(150.0)
    narrow = measure(lowpass(full, 4000.0), SR)
    assert narrow.bandwidth_hz == pytest.approx(4000.0, rel=0.10)
    assert narrow.band_limited and narrow.band_limit_hz == pytest.approx(4000.0, rel=0.10)
    assert narrow.band_limit_drop_db > 40
    wide = measure(full, SR)
    assert wide.bandwidth_hz > 7500 and not wide.band_limited and wide.band_limit_hz is None


def test_narrow_band_input_is_resampled_and_flagged():
    at_8k = sps.resample_poly(white() + harmonic(150.0), 1, 2)
    m = measure(at_8k, 8000)
    assert m.duration_s == pytest.approx(3.0, abs=0.01)
    assert m.band_limited and m.band_limit_hz == pytest.approx(4000.0, rel=0.10)


def test_band_energies_sum_to_total():
    for x in (white(), speechlike(3), lowpass(white(), 3000.0)):
        shares = 10 ** (np.asarray(measure(x, SR).band_energy_db) / 10)
        # float64 (eps 2.2e-16) sums and dB round trips; the power floor 120 dB under the mean power and the
        # 1e-12 guard per band add < 1e-11 (9 bands): 1e-9; a band left out of the partition, or counted twice,
        # would move the sum by >= 3e-3 (the smallest share of the full-band clips)
        assert shares.sum() == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------------------------------ time domain

def test_energy_step_is_a_discontinuity_at_its_time():
    x = speechlike_noise()
    steady = measure(x, SR)
    assert steady.discontinuities == []
    step_s = 1.5
    stepped = x.copy()
    stepped[int(step_s * SR):] *= 10 ** (15 / 20)
    events = measure(stepped, SR).discontinuities
    assert len(events) == 1
    assert events[0].time_s == pytest.approx(step_s, abs=HOP_S)
    assert events[0].size_db == pytest.approx(15.0, abs=1.5)
    assert events[0].start_s < step_s < events[0].end_s


def test_noise_in_pauses_raises_noise_floor():
    silent_pauses = measure(speechlike(5, pause_noise=0.0), SR)
    noisy_pauses = measure(speechlike(5, pause_noise=10 ** (-50 / 20)), SR)
    assert noisy_pauses.noise_floor_db > silent_pauses.noise_floor_db + 20
    assert noisy_pauses.noise_floor_dbfs > silent_pauses.noise_floor_dbfs + 20
    # white noise in the pauses has a flat floor; low-passed noise tilts down
    assert abs(noisy_pauses.noise_tilt_db_per_oct) < 1.5
    start, end = noisy_pauses.pause_span_s
    assert 0 <= start < end <= 3.0


# ------------------------------------------------------------------------------------------ reference, items

def test_reference_z_small_for_own_distribution_large_for_band_limited(reference):
    assert reference.n_clips == 10
    items = evidence(speechlike(42), SR, reference)
    zs = np.array([abs(i.z) for i in items if i.z is not None])
    assert zs.size > 30
    assert np.median(zs) < 1.0 and np.mean(zs < 3) > 0.9
    limited = evidence(lowpass(speechlike(42), 4000.0), SR, reference)
    for band in ((5000.0, 6000.0), (6000.0, 8000.0)):
        item = only(limited, "band_energy", band)
        assert item.z < -5 and item.direction == "low" and item.unit == "dB"
    assert only(limited, "bandwidth").z < -5
    assert only(limited, "band_limit").value == pytest.approx(4000.0, rel=0.10)
    top = most_deviating(limited, 3)
    assert all(abs(a.z) >= abs(b.z) for a, b in pairwise(top)) and len(top) == 3


def test_reference_save_load_round_trip(reference, tmp_path):
    path = tmp_path / "ref.json"
    reference.save(path)
    loaded = ReferenceProfile.load(path)
    assert loaded == reference
    data = json.loads(path.read_text())
    assert data["version"] == EVIDENCE_VERSION and data["n_clips"] == 10
    assert data["config"]["band_edges_hz"][-1] == 8000.0
    data["version"] = EVIDENCE_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(SpoofrlError, match="version"):
        ReferenceProfile.load(path)
    path.write_text(json.dumps({"stats": {}}))
    with pytest.raises(SpoofrlError, match="not a spoofrl evidence reference"):
        ReferenceProfile.load(path)


def test_fit_reference_from_files_and_refusals(tmp_path):
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"{seed}.wav")
        write_audio(paths[-1], speechlike(seed, seconds=1.0))
    profile = fit_reference(paths)
    assert profile.n_clips == 3 and profile.stats["band_energy@0-250"].n == 3
    with pytest.raises(EvidenceError, match="at least 3"):
        fit_reference(paths[:2])
    with pytest.raises(EvidenceError, match="reference clip 1: .*silent"):
        fit_reference([white(1.0), np.zeros(SR), white(1.0)])
    other = EvidenceConfig(jump_db=12.0)
    with pytest.raises(ConfigError):
        evidence(white(1.0), SR, profile, config=other)


def test_items_have_units_locations_and_json(reference):
    items = evidence(speechlike(7), SR, reference)
    kinds = {i.kind for i in items}
    assert {"band_energy", "bandwidth", "flatness", "hnr", "phase_irregularity", "f0_median", "f0_jitter",
            "f0_smoothness", "noise_floor", "noise_tilt", "energy_discontinuity_rate"} <= kinds
    for item in items:
        assert item.unit and np.isfinite(item.value)
        assert item.band_hz is not None or item.kind.startswith("f0_")
        assert item.span_s is not None and 0 <= item.span_s[0] <= item.span_s[1] <= 3.0 + 1e-9
        if item.z is None:  # events: no reference statistic applies
            assert item.kind in ("energy_discontinuity", "band_limit") and item.direction is None
        else:
            assert item.direction == ("high" if item.z >= 2 else "low" if item.z <= -2 else "normal")
        assert EvidenceItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
    assert len([i for i in items if i.kind == "band_energy"]) == 9
    assert {i.band_hz for i in items if i.kind == "hnr"} == {(0.0, 8000.0), (0.0, 4000.0), (4000.0, 8000.0)}
    no_reference = evidence(speechlike(7), SR)
    assert all(i.z is None and i.direction is None for i in no_reference)


def test_find_by_band_and_time():
    items = [EvidenceItem("band_energy", -30.0, "dB", -4.0, (4000.0, 5000.0), (0.0, 3.0), "low"),
             EvidenceItem("band_energy", -20.0, "dB", 0.1, (1000.0, 2000.0), (0.0, 3.0), "normal"),
             EvidenceItem("energy_discontinuity", 14.0, "dB", None, (0.0, 8000.0), (1.20, 1.23), None),
             EvidenceItem("f0_median", 150.0, "Hz", 0.3, None, (0.1, 2.9), "normal")]
    assert find(items, "band_energy", band_hz=(4500, 8000)) == items[:1]
    assert find(items, "band_energy", band_hz=(5000, 8000)) == []        # touching edges share no width
    assert len(find(items, "band_energy")) == 2
    assert find(items, "energy_discontinuity", time_s=1.3) == items[2:3]  # within tol_s of the span
    assert find(items, "energy_discontinuity", time_s=1.5) == []
    assert find(items, "energy_discontinuity", time_s=1.5, tol_s=0.3) == items[2:3]
    assert find(items, "f0_median", band_hz=(0, 500)) == []               # no band: never matches a band
    assert bands_overlap((8000.0, 8000.0), (6000.0, 8000.0))
    with pytest.raises(ValueError, match="unknown evidence kind 'band_energies'"):
        find(items, "band_energies")
    assert most_deviating(items, 2) == [items[0], items[3]]


# ------------------------------------------------------------------------------------------ robustness

def test_bad_inputs_raise_clear_errors():
    with pytest.raises(EvidenceError, match="silent: all 48000 samples are zero"):
        measure(np.zeros(3 * SR), SR)
    with pytest.raises(EvidenceError, match="too short.*0.050 s"):
        measure(white(0.05), SR)
    with pytest.raises(EvidenceError, match="NaN"):
        measure(np.full(SR, np.nan), SR)
    with pytest.raises(EvidenceError, match="mono 1-D"):
        measure(np.zeros((2, SR)), SR)
    assert issubclass(EvidenceError, SpoofrlError)


def test_odd_inputs_stay_finite_and_deterministic():
    shortest = EvidenceConfig().frame_length + 9 * EvidenceConfig().hop_length
    clipped = np.clip(10 * harmonic(150.0, seconds=1.0), -1, 1)
    impulse = np.zeros(SR)
    impulse[SR // 2] = 1.0
    for x in (white(1.0)[:shortest], clipped, impulse, 1e-7 * white(1.0), speechlike(1, pause_noise=0.0)):
        m = measure(x, SR)
        values = [v for v in m.scalars().values() if v is not None]
        assert np.all(np.isfinite(values))
        assert m.to_dict() == measure(x, SR).to_dict()
        json.dumps(m.to_dict())


def test_config_is_validated():
    with pytest.raises(ConfigError, match="band_edges_hz"):
        from_dict(EvidenceConfig, {"band_edges_hz": [0, 4000, 3000]})
    with pytest.raises(ConfigError, match="band_edges_hz"):
        from_dict(EvidenceConfig, {"band_edges_hz": [0, 4000, 9000]})
    with pytest.raises(ConfigError, match="pitch_window_ms"):
        from_dict(EvidenceConfig, {"f0_min_hz": 30.0})
    with pytest.raises(ConfigError, match="speech_band_hz"):
        from_dict(EvidenceConfig, {"speech_band_hz": [1000, 1010]})
    with pytest.raises(ConfigError, match="unknown option"):
        from_dict(EvidenceConfig, {"frame_size": 20})
    with pytest.raises(ConfigError, match="band_edges_hz"):
        measure(white(1.0), SR, EvidenceConfig(band_edges_hz=[0.0, 10.0, 8000.0]))
