"""The rationale format (FT-GRPO's, with spoofrl's label names), its parser, and the writer that turns
measured evidence into a rationale whose every claim is true of the clip.

    <think>
    <Frequency Domain> ...sentences...
    <Time Domain> ...sentences...
    </think>
    <answer>bonafide|spoof</answer>

FT-GRPO (arXiv 2601.02983) trains on ~340K such rationales whose annotation pipeline is not published;
here they are written ("polished") from `spoofrl.evidence` items: the most deviating items, each phrased
from one of several paraphrase templates (`spoofrl.explain.templates`) with its band or time and its
direction. Every sentence is read back with `parse_claims` and checked with `check_claims` before it is
kept: a written claim that the checker does not confirm is a bug (`RationaleBug`), never training data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from spoofrl.data.manifest import BONAFIDE, LABELS, SPOOF
from spoofrl.evidence import EvidenceItem
from spoofrl.explain.claims import (
    BANDED_KINDS,
    NORMAL,
    PRESENT,
    ParsedClaim,
    as_items,
    check_claims,
    item_direction,
    parse_claims,
)
from spoofrl.explain.templates import (
    CLOSINGS,
    TEMPLATES,
    band_phrase,
    hz_text,
    render,
    time_phrase,
)

FREQUENCY_TAG = "<Frequency Domain>"
TIME_TAG = "<Time Domain>"
FREQUENCY, TIME = "frequency", "time"
FREQUENCY_KINDS = ("band_limit", "bandwidth", "band_energy", "flatness", "hnr", "phase_irregularity")
TIME_KINDS = ("energy_discontinuity", "noise_floor", "f0_jitter", "f0_smoothness")
DEFAULT_THRESHOLD = 2.0   # |z| at which an item deviates; the evidence config's default z_threshold
MAX_DISCONTINUITIES = 2   # events stated per clip, the largest first
# Ranking: |z| (or an event's size) saturates at MAX_STRENGTH, so that a z of -100 in an emptied band does
# not outrank everything else; among saturated findings the more telling kinds come first.
MAX_STRENGTH = 10.0
KIND_PRIORITY = {"band_limit": 0.5, "band_energy": 0.4, "bandwidth": 0.3, "energy_discontinuity": 0.3,
                 "hnr": 0.2, "noise_floor": 0.2}

_THINK = re.compile(r"<think>(.*?)(?:</think>|(?=<answer>)|\Z)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WELL_FORMED = re.compile(r"\s*<think>\s*<Frequency Domain>(?P<f>.*?)<Time Domain>(?P<t>.*?)</think>\s*"
                          r"<answer>(?P<a>.*?)</answer>\s*", re.DOTALL)
_STRUCTURE_TAGS = re.compile(r"</?think>|</?answer>|<Frequency Domain>|<Time Domain>")


class RationaleBug(AssertionError):
    """The writer produced a claim that its own parser or checker does not confirm."""


@dataclass(frozen=True)
class ParsedRationale:
    """A rationale's parts. `well_formed`: <think> holding a non-empty <Frequency Domain> then a non-empty
    <Time Domain> section, then a non-empty <answer>, nothing else around (and no stray structure tags)."""
    frequency: str | None
    time: str | None
    answer: str | None
    well_formed: bool

    @property
    def sections_text(self) -> str:
        return "\n".join(s for s in (self.frequency, self.time) if s)


def parse_rationale(text: str) -> ParsedRationale:
    """Split a completion into its sections (lenient: a missing </think> ends at <answer>; a section tag may
    be missing). The answer is the last <answer>...</answer>, stripped."""
    text = text or ""
    answers = _ANSWER.findall(text)
    answer = answers[-1].strip() if answers else None
    think = _THINK.search(text)
    body = think.group(1) if think else ""
    frequency = _section(body, FREQUENCY_TAG, TIME_TAG)
    time = _section(body, TIME_TAG, None)
    return ParsedRationale(frequency, time, answer, _well_formed(text))


def _section(body: str, tag: str, next_tag: str | None) -> str | None:
    start = body.find(tag)
    if start < 0:
        return None
    start += len(tag)
    end = body.find(next_tag, start) if next_tag else -1
    return body[start:end if end >= 0 else len(body)].strip()


def _well_formed(text: str) -> bool:
    match = _WELL_FORMED.fullmatch(text)
    if not match:
        return False
    parts = [match.group("f"), match.group("t"), match.group("a")]
    return all(p.strip() and not _STRUCTURE_TAGS.search(p) for p in parts)


def format_rationale(frequency: str, time: str) -> str:
    """The <think> block of two sections."""
    return f"<think>\n{FREQUENCY_TAG} {frequency}\n{TIME_TAG} {time}\n</think>"


def format_completion(rationale_text: str, answer: str) -> str:
    """Rationale + answer: what SFT trains a model to produce."""
    return f"{rationale_text}\n<answer>{answer}</answer>"


# ================================================================================================ the writer


@dataclass(frozen=True)
class Claim:
    """A claim the writer made: what it says (kind, band or time, direction), the evidence items it cites
    (their to_dict), its sentence and where that sentence is (character offsets in the rationale text,
    which the completion starts with)."""
    kind: str
    direction: str
    band_hz: tuple[float, float] | None
    time_s: float | None
    evidence: list[dict]
    text: str
    span: tuple[int, int]
    section: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "direction": self.direction,
                "band_hz": None if self.band_hz is None else list(self.band_hz), "time_s": self.time_s,
                "evidence": list(self.evidence), "text": self.text, "span": list(self.span),
                "section": self.section}


@dataclass(frozen=True)
class Rationale:
    """A written rationale: `text` is the <think> block, `claims` what it claims, `completion` adds the
    answer (`label`)."""
    text: str
    claims: list[Claim]
    label: str

    @property
    def completion(self) -> str:
        return format_completion(self.text, self.label)


@dataclass
class _Statement:
    """One thing to say: a kind, a direction, where, the items behind it and how strongly they deviate."""
    kind: str
    direction: str
    strength: float
    items: list[EvidenceItem]
    band_hz: tuple[float, float] | None = None
    time_s: float | None = None

    @property
    def section(self) -> str:
        return FREQUENCY if self.kind in FREQUENCY_KINDS else TIME


def write_rationale(items, label: str, rng: np.random.Generator, *, max_claims: int = 3,
                    threshold: float = DEFAULT_THRESHOLD) -> Rationale:
    """A rationale for a clip with evidence `items` (EvidenceItem or dicts, z-scored against a bona fide
    reference) and label `label` (bonafide / spoof).

    States the up to `max_claims` most deviating findings (|z| >= threshold, band limits and energy
    discontinuities), the strongest of each section first; a section with no deviating finding states
    what is normal there instead. Each sentence is checked against the evidence (RationaleBug if false)."""
    if label not in LABELS:
        raise ValueError(f"label must be {BONAFIDE!r} or {SPOOF!r}, got {label!r}")
    if max_claims < 1:
        raise ValueError(f"max_claims must be at least 1, got {max_claims}")
    items = as_items(items)
    if not any(i.z is not None for i in items):
        raise ValueError("the evidence has no z-scores: measure the clip against a bona fide reference profile "
                         "(spoofrl.evidence.evidence(wave, sr, reference))")
    chosen = _choose(_deviations(items, threshold), max_claims)
    sections = {FREQUENCY: [s for s in chosen if s.section == FREQUENCY],
                TIME: [s for s in chosen if s.section == TIME]}
    for name, statements in sections.items():
        if not statements:
            statements.extend(_normal_statements(items, name, threshold, rng))
    closing = str(rng.choice(CLOSINGS[(label, bool(chosen))]))
    return _assemble(sections, closing, items, label, threshold, rng)


# ------------------------------------------------------------------------------------------ what to say


def _deviations(items: list[EvidenceItem], threshold: float) -> list[_Statement]:
    """Every deviating finding, adjacent bands of one kind and direction merged into one band."""
    found = []
    for kind in ("band_energy", "flatness", "phase_irregularity"):
        found += _merged_bands([i for i in items if i.kind == kind], threshold)
    hnr = sorted((i for i in items if i.kind == "hnr" and _deviates(i, threshold)), key=lambda i: -abs(i.z))
    if hnr:  # its bands overlap (full band and two halves): state the strongest only
        found.append(_Statement("hnr", item_direction(hnr[0], threshold), abs(hnr[0].z), [hnr[0]], hnr[0].band_hz))
    limits = [i for i in items if i.kind == "band_limit"]
    for item in limits:
        found.append(_Statement("band_limit", PRESENT, float(item.extra.get("drop_db", 20.0)) / 4, [item],
                                item.band_hz))
    for item in items:
        if item.kind == "bandwidth" and _deviates(item, threshold) and not (limits and item.z < 0):
            found.append(_Statement("bandwidth", item_direction(item, threshold), abs(item.z), [item], item.band_hz))
        elif item.kind in ("noise_floor", "f0_jitter", "f0_smoothness") and _deviates(item, threshold):
            found.append(_Statement(item.kind, item_direction(item, threshold), abs(item.z), [item]))
    jumps = sorted((i for i in items if i.kind == "energy_discontinuity"), key=lambda i: -abs(i.value))
    for item in jumps[:MAX_DISCONTINUITIES]:
        found.append(_Statement("energy_discontinuity", PRESENT, abs(item.value) / 5, [item],
                                time_s=float(item.extra.get("time_s", sum(item.span_s) / 2))))
    return found


def _deviates(item: EvidenceItem, threshold: float) -> bool:
    return item.z is not None and item_direction(item, threshold) in ("high", "low")


def _merged_bands(items: list[EvidenceItem], threshold: float) -> list[_Statement]:
    runs: list[_Statement] = []
    for item in sorted(items, key=lambda i: i.band_hz[0]):
        if not _deviates(item, threshold):
            continue
        way = item_direction(item, threshold)
        last = runs[-1] if runs else None
        if last is not None and last.direction == way and last.band_hz[1] == item.band_hz[0]:
            last.items.append(item)
            last.band_hz = (last.band_hz[0], item.band_hz[1])
            last.strength = max(last.strength, abs(item.z))
        else:
            runs.append(_Statement(item.kind, way, abs(item.z), [item], item.band_hz))
    return runs


def _choose(found: list[_Statement], max_claims: int) -> list[_Statement]:
    """The strongest finding of each section (when there is room for two), then the strongest others, in
    ranking order."""
    ranked = sorted(found, key=lambda s: -(min(s.strength, MAX_STRENGTH) + KIND_PRIORITY.get(s.kind, 0.0)))
    chosen: list[int] = []
    if max_claims >= 2:
        for section in (FREQUENCY, TIME):
            best = next((i for i, s in enumerate(ranked) if s.section == section), None)
            if best is not None:
                chosen.append(best)
    for i in range(len(ranked)):
        if len(chosen) >= max_claims:
            break
        if i not in chosen:
            chosen.append(i)
    return [ranked[i] for i in sorted(chosen)]


def _all_normal(items: list[EvidenceItem], kind: str, threshold: float) -> list[EvidenceItem]:
    """The scored items of `kind` when every one of them is normal, else []."""
    scored = [i for i in items if i.kind == kind and i.z is not None]
    return scored if scored and all(item_direction(i, threshold) == NORMAL for i in scored) else []


def _normal_statements(items, section: str, threshold: float, rng) -> list[_Statement]:
    """One or two true 'normal' statements for a section with nothing deviating."""
    options = []
    kinds = ("band_energy", "flatness", "phase_irregularity", "bandwidth", "hnr") if section == FREQUENCY \
        else ("noise_floor", "f0_jitter", "f0_smoothness")
    for kind in kinds:
        normal = _all_normal(items, kind, threshold)
        if kind == "bandwidth" and any(i.kind == "band_limit" for i in items):
            normal = []
        if kind == "hnr":
            normal = [i for i in normal if i.band_hz and i.band_hz[0] == 0 and i.band_hz[1] == _nyquist(items)]
        if normal:
            whole = (0.0, _nyquist(items)) if kind in BANDED_KINDS else None
            options.append(_Statement(kind, NORMAL, 0.0, normal, whole))
    if section == TIME and not any(i.kind == "energy_discontinuity" for i in items):
        options.append(_Statement("energy_discontinuity", NORMAL, 0.0, []))
    if not options:
        raise ValueError(f"nothing to state in the {section} section: the evidence lacks its items")
    count = min(len(options), int(rng.integers(1, 3)))
    picked = rng.choice(len(options), size=count, replace=False)
    return [options[i] for i in sorted(picked)]


def _nyquist(items: list[EvidenceItem]) -> float:
    return max((i.band_hz[1] for i in items if i.kind == "band_energy" and i.band_hz), default=8000.0)


# ------------------------------------------------------------------------------------------ how to say it


def _fields(statement: _Statement, items: list[EvidenceItem], rng) -> dict[str, str]:
    first = statement.items[0] if statement.items else None
    fields = {"band": "", "time": "", "cutoff": "", "value": "", "z": "", "size": "", "drop": "", "level": ""}
    if first is not None:
        strongest = max((i for i in statement.items if i.z is not None), key=lambda i: abs(i.z), default=None)
        fields["z"] = f"{strongest.z:+.1f}" if strongest is not None else ""
        fields["value"] = f"{_merged_value(statement):.3g}"
        fields["size"] = f"{first.value:+.0f}"
        fields["drop"] = f"{float(first.extra.get('drop_db', 0.0)):.0f}"
        fields["level"] = f"{abs(first.value):.0f}"
    if statement.kind in ("bandwidth", "band_limit") and first is not None:
        fields["cutoff"] = hz_text(first.value)
    elif statement.band_hz is not None:
        nyquist = _nyquist(items)
        full_hnr = statement.kind == "hnr" and statement.band_hz[0] <= 0 and statement.band_hz[1] >= nyquist
        fields["band"] = str(rng.choice(["", "overall"])) if full_hnr else band_phrase(statement.band_hz, nyquist, rng)
    if statement.time_s is not None:
        fields["time"] = time_phrase(statement.time_s, rng)
    return fields


def _merged_value(statement: _Statement) -> float:
    """The value of a statement's band: band energies (shares of the total) add up; other measures of a
    merged band have no single value (templates quoting one are not used for them)."""
    if statement.kind == "band_energy" and len(statement.items) > 1:
        return float(10 * np.log10(sum(10 ** (i.value / 10) for i in statement.items)))
    return statement.items[0].value


def _templates(statement: _Statement) -> list[str]:
    templates = TEMPLATES[(statement.kind, statement.direction)]
    if len(statement.items) > 1 and statement.kind != "band_energy":
        templates = [t for t in templates if "{value}" not in t] or templates
    return templates


def _sentence(statement: _Statement, items, threshold: float, rng) -> tuple[str, ParsedClaim]:
    """A sentence stating `statement`, read back and checked (RationaleBug when it does not hold)."""
    template = str(rng.choice(_templates(statement)))
    text = render(template, _fields(statement, items, rng))
    parsed = parse_claims(text)
    if len(parsed) != 1 or parsed[0].kind != statement.kind or parsed[0].direction != statement.direction:
        raise RationaleBug(f"template {template!r} reads back as {[(p.kind, p.direction) for p in parsed]}, "
                           f"not one {statement.kind} {statement.direction} claim: {text!r}")
    check = check_claims(parsed, items, threshold)
    if not check.all_true:
        raise RationaleBug(f"written claim {text!r} is {check.per_claim[0].verdict}: {check.per_claim[0].reason}")
    return text, parsed[0]


def _assemble(sections, closing: str, items, label: str, threshold: float, rng) -> Rationale:
    written: dict[str, list[tuple[str, _Statement]]] = {}
    for name, statements in sections.items():
        written[name] = [(_sentence(s, items, threshold, rng)[0], s) for s in statements]
    frequency = " ".join(text for text, _ in written[FREQUENCY])
    time = " ".join([text for text, _ in written[TIME]] + ([closing] if closing else []))
    rationale = format_rationale(frequency, time)
    claims = []
    for name, tag in ((FREQUENCY, FREQUENCY_TAG), (TIME, TIME_TAG)):
        position = rationale.index(tag)
        for text, statement in written[name]:
            start = rationale.index(text, position)
            position = start + len(text)
            claims.append(Claim(statement.kind, statement.direction, statement.band_hz, statement.time_s,
                                [i.to_dict() for i in statement.items], text, (start, position), name))
    _check_whole(rationale, claims, items, threshold)
    return Rationale(rationale, claims, label)


def _check_whole(rationale: str, claims: list[Claim], items, threshold: float) -> None:
    """The assembled text reads back as exactly the written claims, all true (closings add none)."""
    parsed = parse_rationale(format_completion(rationale, BONAFIDE))
    claims_read = parse_claims(parsed.frequency) + parse_claims(parsed.time)
    check = check_claims(claims_read, items, threshold)
    if check.n_claims != len(claims) or not check.all_true:
        raise RationaleBug(f"the rationale reads back as {check.n_claims} claims ({check.n_true} true), "
                           f"{len(claims)} were written: {rationale!r}")
