"""The bona fide reference: robust centre and spread of every scalar measure over bona fide clips.

Centre = median, spread = 1.4826 * MAD (the median absolute deviation, scaled to equal the standard
deviation for normal data), floored at the measure's `min_scale`. Saved as JSON (never pickle) with the
config, the number of clips and `EVIDENCE_VERSION`; a file of another version is refused on load.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spoofrl.audio import load_audio
from spoofrl.config import from_dict, to_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.evidence.config import EVIDENCE_VERSION, EvidenceConfig
from spoofrl.evidence.frames import EvidenceError
from spoofrl.evidence.measures import SCALAR_KINDS, Measures, measure, parse_key

FORMAT = "spoofrl-evidence-reference"
MAD_TO_STD = 1.4826
MIN_REFERENCE_CLIPS = 3


@dataclass(frozen=True)
class MeasureStat:
    """Robust statistics of one scalar over the reference clips where it is defined (`n` of them)."""
    center: float
    scale: float      # the spread z divides by: max(mad_scale, the kind's min_scale)
    mad_scale: float  # 1.4826 * MAD as measured
    n: int

    def z(self, value: float) -> float:
        return (value - self.center) / self.scale


@dataclass
class ReferenceProfile:
    """Statistics of every scalar measure (`Measures.scalars()` keys) over `n_clips` bona fide clips."""
    config: EvidenceConfig
    n_clips: int
    stats: dict[str, MeasureStat]
    version: int = EVIDENCE_VERSION

    def z(self, key: str, value: float | None) -> float | None:
        """z-score of `value` for scalar `key`; None when the value or the key's statistics are missing."""
        stat = self.stats.get(key)
        return None if value is None or stat is None else stat.z(value)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": self.version, "statistic": "median; 1.4826 * MAD floored at min_scale",
                "n_clips": self.n_clips, "config": to_dict(self.config),
                "stats": {k: {"center": s.center, "scale": s.scale, "mad_scale": s.mad_scale, "n": s.n}
                          for k, s in self.stats.items()}}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data, source: str = "reference profile") -> ReferenceProfile:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SpoofrlError(f"{source}: not a spoofrl evidence reference profile (no \"format\": \"{FORMAT}\")")
        if data.get("version") != EVIDENCE_VERSION:
            raise SpoofrlError(f"{source}: made with evidence version {data.get('version')!r}, this spoofrl "
                               f"measures version {EVIDENCE_VERSION}; the measures differ, refit it with "
                               f"fit_reference on the same bona fide clips")
        try:
            config = from_dict(EvidenceConfig, data.get("config") or {})
            stats = {str(k): _stat(v) for k, v in data["stats"].items()}
            n_clips = int(data["n_clips"])
        except ConfigError as err:
            raise SpoofrlError(f"{source}: invalid evidence config: {err}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SpoofrlError(f"{source}: malformed reference profile ({type(err).__name__}: {err})") from None
        return cls(config, n_clips, stats)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        path = Path(path)
        if not path.is_file():
            raise SpoofrlError(f"{path}: reference profile not found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SpoofrlError(f"{path}: not a JSON reference profile ({err})") from None
        return cls.from_dict(data, source=str(path))


def _stat(data: dict) -> MeasureStat:
    stat = MeasureStat(float(data["center"]), float(data["scale"]), float(data["mad_scale"]), int(data["n"]))
    if not all(math.isfinite(v) for v in (stat.center, stat.scale, stat.mad_scale)) or stat.scale <= 0:
        raise ValueError(f"statistics must be finite with a positive scale, got {data}")
    return stat


def robust_stat(values: list[float], min_scale: float) -> MeasureStat:
    v = np.asarray(values, dtype=np.float64)
    center = float(np.median(v))
    mad_scale = float(MAD_TO_STD * np.median(np.abs(v - center)))
    return MeasureStat(center, max(mad_scale, min_scale), mad_scale, int(v.size))


def _clip_measures(clip, index: int, cfg: EvidenceConfig) -> Measures:
    """Measures of one reference clip: a path (loaded at cfg.sample_rate), a (wave, sr) pair or a wave at
    cfg.sample_rate."""
    if isinstance(clip, (str, Path)):
        return measure(load_audio(clip, cfg.sample_rate), cfg.sample_rate, cfg)
    wave, sr = clip if isinstance(clip, tuple) else (clip, cfg.sample_rate)
    try:
        return measure(wave, sr, cfg)
    except EvidenceError as err:
        raise EvidenceError(f"reference clip {index}: {err}") from None


def fit_reference(clips: Iterable, cfg: EvidenceConfig | None = None) -> ReferenceProfile:
    """Fit a ReferenceProfile on bona fide clips: paths, (wave, sr) pairs, or waves at cfg.sample_rate.

    A scalar undefined on some clips (F0 of unvoiced clips) is fitted on the others; one undefined on
    all of them gets no statistics, and its items get no z."""
    cfg = cfg or EvidenceConfig()
    cfg.validate()
    values: dict[str, list[float]] = {}
    n_clips = 0
    for index, clip in enumerate(clips):
        for key, value in _clip_measures(clip, index, cfg).scalars().items():
            values.setdefault(key, [])
            if value is not None:
                values[key].append(value)
        n_clips += 1
    if n_clips < MIN_REFERENCE_CLIPS:
        raise EvidenceError(f"a reference profile needs at least {MIN_REFERENCE_CLIPS} bona fide clips, got {n_clips}")
    stats = {key: robust_stat(v, SCALAR_KINDS[parse_key(key)[0]].min_scale) for key, v in values.items() if v}
    return ReferenceProfile(cfg, n_clips, stats)
