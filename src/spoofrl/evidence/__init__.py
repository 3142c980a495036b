"""Measured, checkable acoustic evidence per clip: the base of explainable detection.

Every item is a number with a unit, a z-score against a bona fide reference profile, and a location (a
frequency band and/or a time span), so that a rationale's claims ("the band above 4 kHz is empty", "an
abrupt energy jump at 1.2 s") can be checked against it. See docs/evidence.md.

    from spoofrl.evidence import fit_reference, evidence, most_deviating, find
    ref = fit_reference(bona_fide_paths)            # or ReferenceProfile.load("ref.json")
    items = evidence(wave, 16000, ref)
    most_deviating(items, 5)
    find(items, "band_energy", band_hz=(4000, 8000))
"""
from spoofrl.evidence.config import EVIDENCE_VERSION, EvidenceConfig
from spoofrl.evidence.frames import EvidenceError
from spoofrl.evidence.items import (
    KINDS,
    EvidenceItem,
    bands_overlap,
    direction,
    evidence,
    find,
    items_from_measures,
    most_deviating,
)
from spoofrl.evidence.measures import (
    SCALAR_KINDS,
    Measures,
    measure,
    parse_key,
    scalar_key,
)
from spoofrl.evidence.reference import MeasureStat, ReferenceProfile, fit_reference
from spoofrl.evidence.temporal import Discontinuity

__all__ = [
    "EVIDENCE_VERSION", "KINDS", "SCALAR_KINDS", "Discontinuity", "EvidenceConfig", "EvidenceError", "EvidenceItem",
    "MeasureStat", "Measures", "ReferenceProfile", "bands_overlap", "direction", "evidence", "find", "fit_reference",
    "items_from_measures", "measure", "most_deviating", "parse_key", "scalar_key",
]
