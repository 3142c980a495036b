"""Claims in free text, and whether the audio's evidence bears them out.

FT-GRPO's ft_reward (arXiv 2601.02983) checks that a rationale has its two section tags; nothing checks
that what it says is true of the clip. Here a rationale's sentences are read into claims (a property, a
band or a time, a direction) and each is looked up in the clip's evidence items (`spoofrl.evidence`):

    claims = parse_claims("Energy above 4 kHz is unusually low. An abrupt jump occurs near 1.2 s.")
    check = check_claims(claims, items)        # ClaimCheck(n_claims=2, n_true=..., ...)

The parser is rule-based: the regular expressions of `spoofrl.explain.vocabulary`, applied clause by clause
(see that module for the order). A clause that names a property, a band, a time or a direction is a
claim; one that names none of them ("These point to a synthetic origin.") is not. A claim whose property
cannot be named, or that names a property without a direction, is unverifiable. docs/explain.md has the
rules of the checker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise

from spoofrl.evidence import EvidenceItem, direction, find
from spoofrl.explain import vocabulary as vocab

HIGH, LOW, NORMAL, ABNORMAL, PRESENT = "high", "low", "normal", "abnormal", "present"
DIRECTIONS = (HIGH, LOW, NORMAL, ABNORMAL, PRESENT)
TRUE, FALSE, UNVERIFIABLE = "true", "false", "unverifiable"

BANDED_KINDS = ("band_energy", "flatness", "hnr", "phase_irregularity")
EVENT_KINDS = ("band_limit", "energy_discontinuity")
_FLIP = {HIGH: LOW, LOW: HIGH}


@dataclass(frozen=True)
class ParsedClaim:
    """One claim read from text. band_hz: (lo, hi) Hz, hi None = up to Nyquist, lo == hi = one frequency;
    time_s: (start, end), start == end = one instant; span: character offsets of `text` in the parsed text."""
    kind: str | None
    direction: str | None
    band_hz: tuple[float, float | None] | None
    time_s: tuple[float, float] | None
    text: str
    span: tuple[int, int]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "direction": self.direction,
                "band_hz": None if self.band_hz is None else list(self.band_hz),
                "time_s": None if self.time_s is None else list(self.time_s), "text": self.text,
                "span": list(self.span)}


@dataclass(frozen=True)
class ClaimVerdict:
    """The check of one claim: `verdict` true / false / unverifiable, why, and the evidence items it used."""
    claim: ParsedClaim
    verdict: str
    reason: str
    evidence: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"claim": self.claim.to_dict(), "verdict": self.verdict, "reason": self.reason,
                "evidence": list(self.evidence)}


@dataclass(frozen=True)
class ClaimCheck:
    n_claims: int
    n_true: int
    n_false: int
    n_unverifiable: int
    per_claim: list[ClaimVerdict]

    @property
    def all_true(self) -> bool:
        return self.n_claims > 0 and self.n_true == self.n_claims


# ================================================================================================ parsing


@dataclass
class _Mention:
    term: vocab.Term
    start: int
    end: int
    negated: bool


def parse_claims(text: str) -> list[ParsedClaim]:
    """The claims of a stretch of free text (a rationale section, or a whole rationale)."""
    claims = []
    for start, clause in _clauses(text or ""):
        claims.extend(_clause_claims(clause, start))
    return claims


def _clauses(text: str):
    """(offset, text) of every clause: sentences, cut further at ', and' / 'while' / ';' (see vocabulary)."""
    for sentence_start, sentence in _pieces(text, vocab.SENTENCE_SPLIT, 0):
        yield from _pieces(sentence, vocab.CLAUSE_SPLIT, sentence_start)


def _pieces(text: str, splitter: re.Pattern, offset: int):
    position = 0
    for match in splitter.finditer(text):
        if text[position:match.start()].strip():
            yield offset + position, text[position:match.start()]
        position = match.end()
    if text[position:].strip():
        yield offset + position, text[position:]


def _mask(text: str, start: int, end: int) -> str:
    """Blank out text[start:end] (offsets kept): what a step consumed is invisible to the next."""
    return text[:start] + "\x00" * (end - start) + text[end:]


def _hz(number: str, unit: str | None) -> float:
    value = float(number)
    return value * 1000.0 if unit and unit.lower().startswith("k") else value


def _seconds(number: str, unit: str | None) -> float:
    value = float(number)
    return value / 1000.0 if unit and unit.lower().startswith("m") else value


def _bands(text: str) -> tuple[list[tuple[int, tuple]], str]:
    """(position, band) of every band phrase, and the text with them masked."""
    found = []
    for match in vocab.BAND_RANGE.finditer(text):
        groups = match.groups()
        a, ua, b, ub = groups[0:4] if groups[0] is not None else groups[4:8]
        unit = ub or ua
        lo, hi = sorted((_hz(a, ua or unit), _hz(b, unit)))
        found.append((match.start(), match.end(), (lo, hi)))
    text = _mask_all(text, found)
    for pattern, band_of in ((vocab.BAND_ABOVE, lambda f: (f, None)), (vocab.BAND_BELOW, lambda f: (0.0, f)),
                             (vocab.BAND_POINT, lambda f: (f, f))):
        spans = [(m.start(), m.end(), band_of(_hz(m.group(1), m.group(2)))) for m in pattern.finditer(text)]
        found += spans
        text = _mask_all(text, spans)
    for pattern, band in vocab.NAMED_BANDS:
        spans = [(m.start(), m.end(), band) for m in pattern.finditer(text)]
        found += spans
        text = _mask_all(text, spans)
    return [(start, band) for start, _, band in sorted(found)], text


def _times(text: str) -> tuple[list[tuple[int, tuple]], str]:
    found = []
    for match in vocab.TIME_RANGE.finditer(text):
        groups = match.groups()
        a, ua, b, ub = groups[0:4] if groups[0] is not None else groups[4:8]
        unit = ub or ua
        found.append((match.start(), match.end(), tuple(sorted((_seconds(a, ua or unit), _seconds(b, unit))))))
    text = _mask_all(text, found)
    spans = [(m.start(), m.end(), (_seconds(m.group(1), m.group(2)),) * 2) for m in vocab.TIME_POINT.finditer(text)]
    text = _mask_all(text, spans)
    return [(start, span) for start, _, span in sorted(found + spans)], text


def _mask_all(text: str, spans) -> str:
    for start, end, *_ in spans:
        text = _mask(text, start, end)
    return text


def _negated(text: str, position: int) -> bool:
    """A negator among the NEGATION_WINDOW words before `position`, after the last comma or bracket
    (masked stretches are no words)."""
    before = re.split(r"[,:;()\[\]]", text[:position])[-1]
    tokens = list(re.finditer(r"[\w']+", before))[-vocab.NEGATION_WINDOW:]
    window = before[tokens[0].start():] if tokens else ""
    return bool(vocab.NEGATORS.search(window))


def _mentions(text: str) -> tuple[list[_Mention], str]:
    """Every property term in `text` (priority order of vocabulary.TERMS), and the text with them masked."""
    found = []
    for t in vocab.TERMS:
        for match in t.pattern.finditer(text):
            negated = _negated(text, match.start()) or bool(vocab.QUANTIFIED_NONE.search(text[:match.start()]))
            found.append(_Mention(t, match.start(), match.end(), negated))
            text = _mask(text, match.start(), match.end())
    return sorted(found, key=lambda m: m.start), text


def _absorb_event_words(mentions: list[_Mention]) -> tuple[list[_Mention], list[tuple[int, str]]]:
    """'cut off' beside another property is a direction of it ("energy above 4 kHz is cut off"), 'abrupt jumps'
    beside the pitch contour a roughness of it: such terms become direction words."""
    others = {m.term.family.name for m in mentions if m.term.kind not in EVENT_KINDS}
    kept, directions = [], []
    for m in mentions:
        absorbed = m.term.absorbed_as
        target = next((absorbed[f] for f in others if f in absorbed), absorbed.get("*") if others else None)
        if m.term.kind in EVENT_KINDS and target is not None:
            directions.append((m.start, target))
        else:
            kept.append(m)
    return kept, directions


def _merge_repeats(mentions: list[_Mention]) -> list[list[_Mention]]:
    """Consecutive mentions of one kind ("the noise floor in the pauses") are one subject."""
    groups: list[list[_Mention]] = []
    for m in mentions:
        if groups and groups[-1][-1].term.kind == m.term.kind:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


@dataclass
class _Segment:
    start: int
    end: int
    mentions: list[_Mention]
    bands: list[tuple]
    times: list[tuple]
    direction: str | None


def _clause_claims(clause: str, offset: int) -> list[ParsedClaim]:
    bands, masked = _bands(clause)
    times, masked = _times(masked)
    mentions, masked = _mentions(masked)
    mentions, absorbed = _absorb_event_words(mentions)
    if not mentions and bands and _has_signed_word(masked):  # "low frequencies are boosted": their energy
        mentions = [_Mention(BAND_ENERGY_TERM, bands[0][0], bands[0][0], False)]
    groups = _merge_repeats(mentions)
    if not groups:
        return _kindless_claim(clause, offset, masked, bands, times)
    bounds = [0] + [_segment_start(masked, before, g[0].start) for before, g in pairwise(groups)] \
        + [len(clause)]
    segments = []
    for group, start, end in zip(groups, bounds, bounds[1:]):
        inside = [(p, d) for p, d in absorbed if start <= p < end]
        segments.append(_Segment(start, end, group, [b for p, b in bands if start <= p < end],
                                 [t for p, t in times if start <= p < end],
                                 _direction(group, masked, start, end, inside)))
    _share_coordinated(segments)
    claims = []
    for seg in segments:
        kind = seg.mentions[0].term.kind
        locations = (seg.times or [None]) if kind == "energy_discontinuity" else (seg.bands or [None])
        locations = list(dict.fromkeys(locations))  # "above 4 kHz ... the high-frequency region": one band
        text = clause[seg.start:seg.end].strip(" ,;\x00")
        lead = len(clause[seg.start:seg.end]) - len(clause[seg.start:seg.end].lstrip(" ,;\x00"))
        span = (offset + seg.start + lead, offset + seg.start + lead + len(text))
        for where in locations:
            band = where if kind != "energy_discontinuity" else None
            time = where if kind == "energy_discontinuity" else (seg.times[0] if seg.times else None)
            claims.append(ParsedClaim(kind, seg.direction, band, time, text, span))
    return claims


_JOINS = re.compile(r",|\b(?:and|with|while|but|plus|whereas)\b", re.IGNORECASE)


def _segment_start(masked: str, previous: list[_Mention], start: int) -> int:
    """Where the segment of a mention begins: after the last join ("and", ",", "with") between it and the
    previous subject, so that "low energy and irregular phase" gives "irregular" to the phase."""
    joins = list(_JOINS.finditer(masked, previous[-1].end, start))
    return joins[-1].end() if joins else start


BAND_ENERGY_TERM = next(t for t in vocab.TERMS if t.kind == "band_energy")


def _has_signed_word(text: str) -> bool:
    return bool(vocab.HIGH_WORDS.search(text) or vocab.LOW_WORDS.search(text) or vocab.ENERGY.low.search(text)
                or vocab.ENERGY.high.search(text))


def _kindless_claim(clause, offset, masked, bands, times) -> list[ParsedClaim]:
    """A clause naming a band, a time or a direction but no property: a claim nobody can check."""
    signed = any(p.search(masked) for p in (vocab.HIGH_WORDS, vocab.LOW_WORDS, vocab.NORMAL_WORDS,
                                            vocab.ABNORMAL_WORDS))
    if not (bands or times or signed):
        return []
    text = clause.strip()
    start = offset + len(clause) - len(clause.lstrip())
    return [ParsedClaim(None, None, bands[0][1] if bands else None, times[0][1] if times else None, text,
                        (start, start + len(text)))]


def _share_coordinated(segments: list[_Segment]) -> None:
    """"Energy and flatness above 4 kHz are high": a segment without a direction is a coordinated subject; it
    takes the direction of the next one that has one, and they share a band."""
    for i, seg in enumerate(segments):
        if seg.direction is not None:
            continue
        following = next((s for s in segments[i + 1:] if s.direction is not None), None)
        if following is None:
            continue
        seg.direction = following.direction if _same_space(seg, following) else _FLIP.get(following.direction,
                                                                                          following.direction)
        if not seg.bands and following.bands:
            seg.bands = list(following.bands)
        elif seg.bands and not following.bands:
            following.bands = list(seg.bands)


def _same_space(a: _Segment, b: _Segment) -> bool:
    return a.mentions[0].term.polarity == b.mentions[0].term.polarity


def _signed_words(text: str, start: int, end: int, family: vocab.Family) -> list[tuple[int, str, bool]]:
    """(position, high/low, negated) of the family's own words and, where the family allows, the generic ones."""
    found = []
    own = [(family.high, HIGH), (family.low, LOW)]
    generic = [(vocab.HIGH_WORDS, HIGH), (vocab.LOW_WORDS, LOW)] if family.generic else []
    masked = text
    for pattern, sign in own + generic:
        if pattern is None:
            continue
        for match in pattern.finditer(masked, start, end):
            comparative = vocab.COMPARATIVE.search(masked[max(start, match.start() - 6):match.start()])
            value = _FLIP[sign] if comparative and comparative.group(1).lower() == "less" else sign
            found.append((match.start(), value, _negated(masked, match.start())))
            masked = _mask(masked, match.start(), match.end())
            if comparative:  # the "more"/"less" belongs to this word, not to the generic list
                masked = _mask(masked, match.start() - len(comparative.group(0)), match.start())
    return sorted(found)


def _direction(group: list[_Mention], text: str, start: int, end: int, absorbed: list[tuple[int, str]]):
    """The direction a segment gives its property, in the evidence's terms (see vocabulary, step 4)."""
    if group[0].term.kind in EVENT_KINDS:
        return NORMAL if any(m.negated for m in group) else PRESENT
    signed = sorted(_signed_words(text, start, end, group[0].term.family) + [(p, d, False) for p, d in absorbed])
    plain = [d for _, d, negated in signed if not negated]
    if plain:
        predicate = [m for m in vocab.PREDICATE_NORMAL.finditer(text, start, end) if not _negated(text, m.start())]
        return NORMAL if predicate else _in_evidence_terms(plain[0], group[0].term)
    negated_mention = next((m for m in group if m.negated), None)
    if negated_mention is not None:
        return _in_evidence_terms(negated_mention.term.when_negated, negated_mention.term)
    normal = [_negated(text, m.start()) for m in vocab.NORMAL_WORDS.finditer(text, start, end)]
    if any(negated for _, _, negated in signed) or any(not n for n in normal):  # "not low", "typical"
        return NORMAL
    implied = next((m.term for m in group if m.term.implied), None)
    if implied is not None:
        return _in_evidence_terms(implied.implied, implied)
    if normal:  # "not typical"
        return ABNORMAL
    abnormal = [_negated(text, m.start()) for m in vocab.ABNORMAL_WORDS.finditer(text, start, end)]
    if abnormal:
        return NORMAL if all(abnormal) else ABNORMAL
    return None


def _in_evidence_terms(direction_: str, term: vocab.Term) -> str:
    """A term of polarity -1 speaks of the opposite of its measure ("weak harmonics" = high flatness)."""
    return _FLIP.get(direction_, direction_) if term.polarity < 0 else direction_


# ================================================================================================ checking


def as_items(items) -> list[EvidenceItem]:
    """EvidenceItem objects from items or their to_dict() dicts."""
    return [i if isinstance(i, EvidenceItem) else EvidenceItem.from_dict(i) for i in items]


def item_direction(item: EvidenceItem, threshold: float) -> str | None:
    """The item's direction under `threshold` (its own when it has no z: events)."""
    return direction(item.z, threshold) if item.z is not None else item.direction


@dataclass(frozen=True)
class CheckOptions:
    threshold: float = 2.0        # |z| at which an item is high / low
    tol_s: float = 0.15           # a time claim matches an event this far from it
    cutoff_tol_hz: float = 500.0  # a cut-off claim matches a bandwidth / band limit this far from it
    min_band_share: float = 0.5   # share of a claimed band whose items must have the claimed direction


def check_claims(parsed: list[ParsedClaim], items, reference_direction_threshold: float = 2.0, *,
                 tol_s: float = 0.15, cutoff_tol_hz: float = 500.0, min_band_share: float = 0.5) -> ClaimCheck:
    """Check every claim against the clip's evidence items (EvidenceItem or dicts). See docs/explain.md."""
    items = as_items(items)
    options = CheckOptions(reference_direction_threshold, tol_s, cutoff_tol_hz, min_band_share)
    verdicts = [check_claim(claim, items, options) for claim in parsed]
    count = {v: sum(1 for x in verdicts if x.verdict == v) for v in (TRUE, FALSE, UNVERIFIABLE)}
    return ClaimCheck(len(verdicts), count[TRUE], count[FALSE], count[UNVERIFIABLE], verdicts)


def check_claim(claim: ParsedClaim, items: list[EvidenceItem], options: CheckOptions) -> ClaimVerdict:
    if claim.kind is None:
        return ClaimVerdict(claim, UNVERIFIABLE, "names no measured property")
    if claim.direction is None:
        return ClaimVerdict(claim, UNVERIFIABLE, f"says nothing checkable about {claim.kind} (no direction)")
    if claim.kind == "energy_discontinuity":
        return _check_discontinuity(claim, items, options)
    if claim.kind == "band_limit":
        return _check_band_limit(claim, items, options)
    if claim.kind == "bandwidth":
        return _check_bandwidth(claim, items, options)
    if claim.kind in BANDED_KINDS:
        return _check_banded(claim, items, options)
    found = [i for i in items if i.kind == claim.kind]
    if not found:
        return ClaimVerdict(claim, UNVERIFIABLE, f"no {claim.kind} was measured on this clip")
    return _by_direction(claim, found, [1.0] * len(found), options)


def _cited(found) -> list[dict]:
    return [i.to_dict() for i in found]


def _by_direction(claim: ParsedClaim, found: list[EvidenceItem], weights: list[float],
                  options: CheckOptions) -> ClaimVerdict:
    """True when the items (weighted by their share of the claimed band) have the claimed direction."""
    scored = [(item_direction(i, options.threshold), w, i) for i, w in zip(found, weights)]
    scored = [(d, w, i) for d, w, i in scored if d is not None]
    if not scored:
        return ClaimVerdict(claim, UNVERIFIABLE, f"{claim.kind} has no z-score (no bona fide reference)",
                            _cited(found))
    cited = _cited([i for _, _, i in scored])
    total = sum(w for _, w, _ in scored) or 1.0
    seen = ", ".join(f"{_where(i)} {d} (z {i.z:+.1f})" for d, _, i in scored)
    if claim.direction == NORMAL:
        ok = all(d == NORMAL for d, _, _ in scored)
    elif claim.direction in (HIGH, LOW):
        opposite = any(d == _FLIP[claim.direction] for d, _, _ in scored)
        share = sum(w for d, w, _ in scored if d == claim.direction) / total
        ok = not opposite and share >= options.min_band_share
    else:  # abnormal / present: deviating either way
        ok = sum(w for d, w, _ in scored if d in (HIGH, LOW)) / total >= options.min_band_share
    return ClaimVerdict(claim, TRUE if ok else FALSE, f"claimed {claim.direction}; measured {seen}", cited)


def _where(item: EvidenceItem) -> str:
    if item.kind in BANDED_KINDS and item.band_hz is not None:
        return f"{item.kind} {item.band_hz[0]:g}-{item.band_hz[1]:g} Hz"
    return item.kind


def _claimed_band(claim: ParsedClaim, nyquist: float) -> tuple[float, float]:
    if claim.band_hz is None:
        return 0.0, nyquist
    lo, hi = claim.band_hz
    return lo, nyquist if hi is None else min(hi, nyquist)


def _finest(found: list[EvidenceItem], band: tuple[float, float]) -> list[EvidenceItem]:
    """The items a band claim speaks about: one whose band is the claimed band, else those that contain no
    other found item (HNR has a full-band item over its two half-bands: "above 4 kHz" means the upper half)."""
    exact = [i for i in found if abs(i.band_hz[0] - band[0]) < 1 and abs(i.band_hz[1] - band[1]) < 1]
    if exact:
        return exact
    def contains_another(a):
        return any(b is not a and a.band_hz[0] <= b.band_hz[0] and b.band_hz[1] <= a.band_hz[1]
                   and a.band_hz != b.band_hz for b in found)
    return [i for i in found if not contains_another(i)]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    if a[0] == a[1] or b[0] == b[1]:
        return 1.0  # a single frequency: every band containing it counts once
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _check_banded(claim: ParsedClaim, items: list[EvidenceItem], options: CheckOptions) -> ClaimVerdict:
    same = [i for i in items if i.kind == claim.kind and i.band_hz is not None]
    if not same:
        return ClaimVerdict(claim, UNVERIFIABLE, f"no {claim.kind} was measured on this clip")
    nyquist = max(i.band_hz[1] for i in same)
    band = _claimed_band(claim, nyquist)
    if band[0] > nyquist or (band[0] == nyquist and band[1] != band[0]):
        return ClaimVerdict(claim, UNVERIFIABLE, f"the band starts above the measured range (0-{nyquist:g} Hz)")
    found = [i for i in find(same, claim.kind, band_hz=band) if i.band_hz is not None]
    if not found:
        return ClaimVerdict(claim, UNVERIFIABLE, f"no {claim.kind} item covers {band[0]:g}-{band[1]:g} Hz")
    found = _finest(found, band)
    return _by_direction(claim, found, [_overlap(i.band_hz, band) for i in found], options)


def _cutoff_of(claim: ParsedClaim) -> tuple[float, float] | None:
    """The frequency range a cut-off claim places the cut-off in: "above 4 kHz" / "below 4 kHz" / "at 4 kHz"
    -> (4000, 4000); "between 4 and 5 kHz" -> (4000, 5000); None when no frequency is given."""
    if claim.band_hz is None:
        return None
    lo, hi = claim.band_hz
    if hi is None:
        return lo, lo
    if lo == 0.0:
        return hi, hi
    return lo, hi


def _near_cutoff(value: float, where: tuple[float, float] | None, tol_hz: float) -> bool:
    return where is None or where[0] - tol_hz <= value <= where[1] + tol_hz


def _check_bandwidth(claim: ParsedClaim, items: list[EvidenceItem], options: CheckOptions) -> ClaimVerdict:
    found = [i for i in items if i.kind == "bandwidth"]
    if not found:
        return ClaimVerdict(claim, UNVERIFIABLE, "no bandwidth was measured on this clip")
    verdict = _by_direction(claim, found, [1.0] * len(found), options)
    where = _cutoff_of(claim)
    if verdict.verdict == TRUE and not all(_near_cutoff(i.value, where, options.cutoff_tol_hz) for i in found):
        return ClaimVerdict(claim, FALSE, f"the bandwidth is {found[0].value:.0f} Hz, not near "
                                          f"{where[0]:g}-{where[1]:g} Hz", _cited(found))
    return verdict


def _check_band_limit(claim: ParsedClaim, items: list[EvidenceItem], options: CheckOptions) -> ClaimVerdict:
    """A cut-off is borne out by a band_limit event or by a low bandwidth, at the claimed frequency if any."""
    where = _cutoff_of(claim)
    limits = [i for i in items if i.kind == "band_limit"]
    narrow = [i for i in items if i.kind == "bandwidth" and item_direction(i, options.threshold) == LOW]
    if claim.direction == NORMAL:
        present = limits + narrow
        ok = not present
        return ClaimVerdict(claim, TRUE if ok else FALSE, "no band limit measured" if ok else
                            f"band limited at {present[0].value:.0f} Hz", _cited(present))
    matching = [i for i in limits + narrow if _near_cutoff(i.value, where, options.cutoff_tol_hz)]
    if matching:
        return ClaimVerdict(claim, TRUE, f"band limited at {matching[0].value:.0f} Hz", _cited(matching))
    if limits + narrow:
        return ClaimVerdict(claim, FALSE, f"band limited at {(limits + narrow)[0].value:.0f} Hz, not near "
                                          f"{where[0]:g} Hz", _cited(limits + narrow))
    return ClaimVerdict(claim, FALSE, "no band limit measured (no cliff, bandwidth not low)",
                        _cited([i for i in items if i.kind == "bandwidth"]))


def _check_discontinuity(claim: ParsedClaim, items: list[EvidenceItem], options: CheckOptions) -> ClaimVerdict:
    if claim.time_s is None:
        found = [i for i in items if i.kind == "energy_discontinuity"]
        where = "in the clip"
    else:
        a, b = claim.time_s
        found = find(items, "energy_discontinuity", time_s=(a + b) / 2, tol_s=(b - a) / 2 + options.tol_s)
        where = f"within {options.tol_s:g} s of {a:g}" + ("" if a == b else f"-{b:g}") + " s"
    times = ", ".join(f"{i.extra.get('time_s', i.span_s[0]):.2f} s" for i in found)
    if claim.direction == NORMAL:
        ok = not found
        return ClaimVerdict(claim, TRUE if ok else FALSE, f"no energy discontinuity {where}" if ok else
                            f"energy discontinuity at {times}", _cited(found))
    if found:
        return ClaimVerdict(claim, TRUE, f"energy discontinuity at {times}", _cited(found))
    return ClaimVerdict(claim, FALSE, f"no energy discontinuity {where}")

