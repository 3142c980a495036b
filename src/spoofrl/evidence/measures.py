"""`measure(wave, sr, cfg) -> Measures`: every acoustic measure of one clip, and their scalar view.

`Measures.scalars()` flattens them into the named numbers a reference profile holds statistics of:
`kind` for a clip-wide number, `kind@lo-hi` for one band (e.g. `band_energy@4000-5000`). `SCALAR_KINDS`
gives each kind its unit and the smallest spread its z-score divides by (so a reference of near-identical
clips cannot turn a hair's difference into a huge z).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spoofrl.config import to_dict
from spoofrl.evidence.config import EvidenceConfig
from spoofrl.evidence.frames import analyse, prepare_wave
from spoofrl.evidence.pitch import hnr_bands, pitch_measures
from spoofrl.evidence.spectral import spectral_measures
from spoofrl.evidence.temporal import Discontinuity, temporal_measures


@dataclass(frozen=True)
class ScalarKind:
    unit: str
    min_scale: float   # floor of the reference spread (same unit)
    banded: bool = False


SCALAR_KINDS: dict[str, ScalarKind] = {
    "band_energy": ScalarKind("dB", 0.5, banded=True),
    "bandwidth": ScalarKind("Hz", 100.0),
    "flatness": ScalarKind("dB", 0.5, banded=True),
    "hnr": ScalarKind("dB", 0.5, banded=True),
    "phase_irregularity": ScalarKind("rad", 0.02, banded=True),
    "f0_voiced_share": ScalarKind("share", 0.02),
    "f0_median": ScalarKind("Hz", 5.0),
    "f0_jitter": ScalarKind("%", 0.1),
    "f0_smoothness": ScalarKind("st", 0.02),
    "energy_discontinuity_rate": ScalarKind("1/s", 0.2),
    "noise_floor": ScalarKind("dB", 1.0),
    "noise_tilt": ScalarKind("dB/oct", 0.5),
}
# Event kinds: one item per event, located in time or frequency; no reference statistic applies to them.
EVENT_UNITS = {"energy_discontinuity": "dB", "band_limit": "Hz"}


def scalar_key(kind: str, band_hz: tuple[float, float] | None = None) -> str:
    """'bandwidth', or 'band_energy@4000-5000' for one band."""
    return kind if band_hz is None else f"{kind}@{band_hz[0]:g}-{band_hz[1]:g}"


def parse_key(key: str) -> tuple[str, tuple[float, float] | None]:
    """Inverse of `scalar_key`."""
    kind, _, band = key.partition("@")
    if not band:
        return kind, None
    lo, hi = band.split("-")
    return kind, (float(lo), float(hi))


@dataclass
class Measures:
    """Every measure of one clip. Lists follow `bands_hz` (and `hnr_bands_hz` for HNR); None = undefined
    (no voiced frames for F0, fewer than three periods for jitter)."""
    config: EvidenceConfig
    duration_s: float
    bands_hz: list[tuple[float, float]]
    band_energy_db: list[float]
    bandwidth_hz: float
    flatness_db: list[float]
    phase_irregularity_rad: list[float]
    hnr_bands_hz: list[tuple[float, float]]
    hnr_db: list[float]
    voiced_share: float
    f0_median_hz: float | None
    f0_jitter_pct: float | None
    f0_smoothness_st: float | None
    voiced_span_s: tuple[float, float] | None
    discontinuities: list[Discontinuity]
    discontinuity_rate_per_s: float
    noise_floor_db: float
    noise_floor_dbfs: float
    noise_tilt_db_per_oct: float
    pause_span_s: tuple[float, float]
    band_limited: bool
    band_limit_hz: float | None
    band_limit_drop_db: float

    def scalars(self) -> dict[str, float | None]:
        """Named scalar measures (see module doc); None where a measure is undefined for this clip."""
        out: dict[str, float | None] = {}
        for kind, values in (("band_energy", self.band_energy_db), ("flatness", self.flatness_db),
                             ("phase_irregularity", self.phase_irregularity_rad)):
            out.update({scalar_key(kind, band): v for band, v in zip(self.bands_hz, values)})
        out["bandwidth"] = self.bandwidth_hz
        out.update({scalar_key("hnr", band): v for band, v in zip(self.hnr_bands_hz, self.hnr_db)})
        out.update({"f0_voiced_share": self.voiced_share, "f0_median": self.f0_median_hz,
                    "f0_jitter": self.f0_jitter_pct, "f0_smoothness": self.f0_smoothness_st,
                    "energy_discontinuity_rate": self.discontinuity_rate_per_s,
                    "noise_floor": self.noise_floor_db, "noise_tilt": self.noise_tilt_db_per_oct})
        return out

    def to_dict(self) -> dict:
        """Plain JSON-able data (tuples as lists, the config and discontinuities as dicts)."""
        return {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}


def measure(wave, sr: int, cfg: EvidenceConfig | None = None) -> Measures:
    """All measures of one mono clip `wave` at `sr` Hz (resampled to cfg.sample_rate when different).

    Raises EvidenceError for a clip that is not 1-D, has NaN/infinite samples, is all zero or shorter
    than cfg.min_frames frames; every value returned is finite."""
    cfg = cfg or EvidenceConfig()
    cfg.validate()
    x = prepare_wave(wave, sr, cfg)
    spec = analyse(x, cfg)
    return Measures(config=cfg, duration_s=spec.duration_s, bands_hz=cfg.bands, hnr_bands_hz=hnr_bands(cfg),
                    **spectral_measures(spec, cfg), **pitch_measures(spec, cfg), **temporal_measures(spec, cfg))
