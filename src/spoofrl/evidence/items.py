"""Evidence items: each measure of a clip as a located, z-scored record, and the look-ups a claim check needs.

An `EvidenceItem` is one number with its unit, its z-score against a bona fide reference (None where no
reference statistic applies: single events, or no reference given), a frequency band and a time span.
Clip-wide measures span the whole clip; F0 measures span the voiced part; the noise floor spans the
longest pause; an energy discontinuity spans the two frames it compares.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from spoofrl.errors import ConfigError
from spoofrl.evidence.config import EvidenceConfig
from spoofrl.evidence.measures import (
    EVENT_UNITS,
    SCALAR_KINDS,
    Measures,
    measure,
    parse_key,
)
from spoofrl.evidence.reference import ReferenceProfile

F0_KINDS = ("f0_voiced_share", "f0_median", "f0_jitter", "f0_smoothness")
KINDS = tuple(SCALAR_KINDS) + tuple(EVENT_UNITS)


@dataclass(frozen=True)
class EvidenceItem:
    """One measured fact about a clip. `direction` is 'high' / 'low' when |z| >= the config's z_threshold,
    'normal' below it, None without a z. `extra` holds event details (JSON scalars)."""
    kind: str
    value: float
    unit: str
    z: float | None
    band_hz: tuple[float, float] | None
    span_s: tuple[float, float] | None
    direction: str | None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "unit": self.unit, "z": self.z,
                "band_hz": list(self.band_hz) if self.band_hz is not None else None,
                "span_s": list(self.span_s) if self.span_s is not None else None,
                "direction": self.direction, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict) -> EvidenceItem:
        def pair(v):
            return None if v is None else (float(v[0]), float(v[1]))
        z = data.get("z")
        return cls(str(data["kind"]), float(data["value"]), str(data["unit"]), None if z is None else float(z),
                   pair(data.get("band_hz")), pair(data.get("span_s")), data.get("direction"),
                   dict(data.get("extra") or {}))

    def text(self) -> str:
        """One readable line, e.g. 'hnr 4000-8000 Hz, 0.00-3.00 s: 3.2 dB (z -2.5, low)'."""
        where = []
        if self.band_hz is not None:
            where.append(f"{self.band_hz[0]:g}-{self.band_hz[1]:g} Hz")
        if self.span_s is not None:
            where.append(f"{self.span_s[0]:.2f}-{self.span_s[1]:.2f} s")
        place = f" {', '.join(where)}" if where else ""
        score = f" (z {self.z:+.1f}, {self.direction})" if self.z is not None else ""
        return f"{self.kind}{place}: {self.value:.4g} {self.unit}{score}"


def direction(z: float | None, threshold: float) -> str | None:
    if z is None:
        return None
    return "high" if z >= threshold else "low" if z <= -threshold else "normal"


def _location(kind: str, band: tuple[float, float] | None, m: Measures):
    """(band_hz, span_s) of a scalar measure (see module doc)."""
    nyquist = m.config.nyquist
    whole = (0.0, m.duration_s)
    if kind in F0_KINDS:
        return None, m.voiced_span_s or whole
    if kind in ("noise_floor", "noise_tilt"):
        return (0.0, nyquist), m.pause_span_s
    if kind == "bandwidth":  # the band it speaks about: what lies above the cut-off
        return (m.bandwidth_hz, nyquist), whole
    return band or (0.0, nyquist), whole


def _event_items(m: Measures) -> list[EvidenceItem]:
    nyquist = m.config.nyquist
    items = [EvidenceItem("energy_discontinuity", d.size_db, EVENT_UNITS["energy_discontinuity"], None,
                          (0.0, nyquist), (d.start_s, d.end_s), None, {"time_s": d.time_s})
             for d in m.discontinuities]
    if m.band_limited:
        items.append(EvidenceItem("band_limit", m.band_limit_hz, EVENT_UNITS["band_limit"], None,
                                  (m.band_limit_hz, nyquist), (0.0, m.duration_s), None,
                                  {"drop_db": m.band_limit_drop_db}))
    return items


def items_from_measures(m: Measures, reference: ReferenceProfile | None = None) -> list[EvidenceItem]:
    """The evidence items of measured clip `m`, z-scored against `reference` (same config) when given."""
    if reference is not None and reference.config != m.config:
        raise ConfigError("the clip was measured with another evidence config than the reference profile's; "
                          "measure it with reference.config")
    items = []
    for key, value in m.scalars().items():
        if value is None:
            continue
        kind, band = parse_key(key)
        z = reference.z(key, value) if reference is not None else None
        band_hz, span_s = _location(kind, band, m)
        items.append(EvidenceItem(kind, value, SCALAR_KINDS[kind].unit, z, band_hz, span_s,
                                  direction(z, m.config.z_threshold)))
    return items + _event_items(m)


def evidence(wave, sr: int, reference: ReferenceProfile | None = None, *,
             config: EvidenceConfig | None = None) -> list[EvidenceItem]:
    """Measure one clip and return its evidence items, z-scored against `reference` when given.

    The reference's config is used (a different `config` is an error); without a reference, `config` (or
    the defaults) and every z is None."""
    if reference is not None and config is not None and config != reference.config:
        raise ConfigError("evidence(): `config` differs from the reference profile's config; pass only one")
    cfg = reference.config if reference is not None else config or EvidenceConfig()
    return items_from_measures(measure(wave, sr, cfg), reference)


def most_deviating(items: list[EvidenceItem], k: int = 5) -> list[EvidenceItem]:
    """The k items with the largest |z| (items without z are left out; ties keep their order)."""
    scored = [item for item in items if item.z is not None]
    return sorted(scored, key=lambda item: -abs(item.z))[:k]


def bands_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Two bands share some width; a zero-width band (a single frequency) overlaps a band containing it."""
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if a[0] == a[1] or b[0] == b[1]:
        return lo <= hi
    return hi > lo


def find(items: list[EvidenceItem], kind: str, band_hz: tuple[float, float] | None = None,
         time_s: float | None = None, tol_s: float = 0.15) -> list[EvidenceItem]:
    """Items of `kind` whose band overlaps `band_hz` and whose span contains `time_s` give or take `tol_s`
    (each filter only when given; an item without a band or span never matches that filter). An unknown
    `kind` is a ValueError, so a misspelt kind cannot pass for "no such evidence"."""
    if kind not in KINDS:
        raise ValueError(f"unknown evidence kind {kind!r}; kinds: {', '.join(KINDS)}")
    found = []
    for item in items:
        if item.kind != kind:
            continue
        if band_hz is not None and (item.band_hz is None or not bands_overlap(item.band_hz, tuple(band_hz))):
            continue
        if time_s is not None and (item.span_s is None
                                   or not item.span_s[0] - tol_s <= time_s <= item.span_s[1] + tol_s):
            continue
        found.append(item)
    return found
