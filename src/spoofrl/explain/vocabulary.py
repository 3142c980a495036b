"""The word lists of the claim parser: how free text names a band, a time, a measured property and a direction.

Every table is a list of regular expressions (case-insensitive). The parser (`spoofrl.explain.claims`)
reads a clause in this order, masking what each step consumed so the next cannot read it again:

1. **bands** (`BAND_RANGE`, `BAND_ABOVE`, `BAND_BELOW`, `BAND_POINT`, `NAMED_BANDS`): "between 2 and 3 kHz",
   "4-5 kHz", "above 4 kHz", "below 1 kHz", "at 4 kHz", "high-frequency region" (= above 4 kHz), "low
   frequencies" (= below 1 kHz), "across the bands" (the whole range). Masked first so that the "high" of
   "high-frequency" is never read as a direction.
2. **times** (`TIME_RANGE`, `TIME_POINT`): "between 0.5 and 0.9 s", "near 1.2 s", "around 800 ms".
3. **properties** (`TERMS`, in priority order: the first pattern that matches a stretch of text owns it).
   Each term belongs to a `Family` (its direction words and whether the generic ones apply), has a
   polarity (-1 when the words speak of the opposite of the measure: "harmonic structure is weak" means
   flatness is *high*), an implied direction ("breathy" = low HNR, "digitally silent" = low noise floor,
   "abrupt jump" = a discontinuity is present) and the direction a negation in front of it gives ("no
   energy above 4 kHz" = low energy, "no clicks" = no discontinuity).
4. **directions**, first that applies: the family's own words and the generic `HIGH_WORDS` / `LOW_WORDS`
   (unless a `PREDICATE_NORMAL` word stands beside them: "stable and natural"); a negated term's
   `when_negated`; `NORMAL_WORDS` or a negated signed word ("not low"); the term's `implied` direction;
   a negated normal word ("not typical") or `ABNORMAL_WORDS` ("unusual": deviating, either way). A negator
   (`NEGATORS`) counts up to `NEGATION_WINDOW` words before a word, within its comma-delimited stretch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

FLAGS = re.IGNORECASE

NUM = r"(\d+(?:\.\d+)?)"
FREQ_UNIT = r"(k(?:ilo)?h(?:ert)?z|h(?:ert)?z)(?![a-z])"
TIME_UNIT = r"(s|secs?|seconds?|ms|milliseconds?)(?![a-z])"

# ------------------------------------------------------------------------------------------------ bands
# Bands are (lo, hi) in Hz; hi None = up to Nyquist (whatever the clip's rate).
BAND_RANGE = re.compile(rf"\b(?:between|from)\s+{NUM}\s*(?:{FREQ_UNIT})?\s*(?:and|to|-|–)\s*{NUM}\s*{FREQ_UNIT}"
                        rf"|\b{NUM}\s*(?:{FREQ_UNIT})?\s*(?:-|–|to)\s*{NUM}\s*{FREQ_UNIT}", FLAGS)
BAND_ABOVE = re.compile(rf"\b(?:above|over|beyond|higher\s+than|past|from)\s+(?:about\s+|around\s+|roughly\s+)?"
                        rf"{NUM}\s*{FREQ_UNIT}", FLAGS)
BAND_BELOW = re.compile(rf"\b(?:below|under|beneath|lower\s+than|up\s+to)\s+(?:about\s+|around\s+|roughly\s+)?"
                        rf"{NUM}\s*{FREQ_UNIT}", FLAGS)
BAND_POINT = re.compile(rf"{NUM}\s*{FREQ_UNIT}", FLAGS)
HIGH_REGION_HZ = 4000.0   # "the high-frequency region": FT-GRPO's prompt singles it out; 4 kHz = telephone band
LOW_REGION_HZ = 1000.0
_REGION = r"(?:\s+(?:region|band|range|part|content|area|end))?"
NAMED_BANDS: list[tuple[re.Pattern, tuple[float, float | None]]] = [
    (re.compile(rf"\b(?:the\s+)?(?:very\s+)?(?:high[- ]frequenc(?:y|ies)|upper\s+frequenc(?:y|ies)|high[- ]band|"
                rf"upper\s+band|treble){_REGION}|\bupper\s+(?:part|end|region|half)\s+of\s+the\s+spectrum", FLAGS),
     (HIGH_REGION_HZ, None)),
    (re.compile(rf"\b(?:the\s+)?(?:low[- ]frequenc(?:y|ies)|lower\s+frequenc(?:y|ies)|low[- ]band|lower\s+band|bass)"
                rf"{_REGION}|\blower\s+(?:part|end|region|half)\s+of\s+the\s+spectrum", FLAGS),
     (0.0, LOW_REGION_HZ)),
    (re.compile(rf"\b(?:the\s+)?(?:mid(?:dle)?[- ]frequenc(?:y|ies)|mid[- ]band|mid[- ]range){_REGION}", FLAGS),
     (LOW_REGION_HZ, HIGH_REGION_HZ)),
    (re.compile(r"\bacross\s+(?:all\s+|the\s+|every\s+)*(?:frequency\s+)?(?:bands|frequencies|spectrum)\b"
                r"|\b(?:in|at)\s+(?:all|every)\s+(?:frequency\s+)?(?:bands?|frequencies)\b"
                r"|\b(?:the\s+)?(?:whole|entire|full)\s+spectrum\b|\bbroadband\b", FLAGS),
     (0.0, None)),
]

# ------------------------------------------------------------------------------------------------ times
TIME_RANGE = re.compile(rf"\b(?:between|from)\s+{NUM}\s*(?:{TIME_UNIT})?\s*(?:and|to|-|–)\s*{NUM}\s*{TIME_UNIT}"
                        rf"|\b{NUM}\s*(?:{TIME_UNIT})?\s*(?:-|–)\s*{NUM}\s*{TIME_UNIT}", FLAGS)
TIME_POINT = re.compile(rf"(?<![\w.]){NUM}\s*{TIME_UNIT}", FLAGS)

# ------------------------------------------------------------------------------------------------ directions


def words(*alternatives: str) -> re.Pattern:
    """One case-insensitive pattern matching any of `alternatives` as whole words."""
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", FLAGS)


_REFERENCE = r"(?:bona\s+fide|natural|real|genuine|human)"
_SPOOFISH = (r"(?:an?\s+|the\s+)?(?:vocod\w*|codec\w*|synthe\w*|tts|spoof\w*|fake\w*|deepfake\w*|neural|generat\w*|"
             r"artificial\w*|machine\w*|processed|compress\w*)")
HIGH_WORDS = words(r"high(?:er)?", r"strong(?:er)?", r"excess(?:ive)?", "elevated", "boosted", "increased", "raised",
                   "amplified", r"emphasi[sz]ed", "exaggerated", "greater", "larger", "more", r"too\s+much",
                   rf"above\s+(?:the\s+)?(?:normal|typical|usual|expected|{_REFERENCE})")
LOW_WORDS = words(r"low(?:er)?", r"weak(?:er)?", "reduced", "missing", "attenuated", "little", "less", "lacking",
                  "absent", "empty", "depleted", "suppressed", "diminished", "decreased", "deficient", "poor",
                  "faint", "smaller", "fewer", r"drops?(?:\s+off)?", "dropped", r"falls?\s+off", r"rolls?\s+off",
                  r"rolled\s+off", r"cut\s+off", "removed", "lost", "gone", r"vanish\w*", r"too\s+little",
                  rf"below\s+(?:the\s+)?(?:normal|typical|usual|expected|{_REFERENCE})")
NORMAL_WORDS = words(r"normal(?:ly)?", rf"typical(?:ly)?(?!\s+(?:of|for)\s+{_SPOOFISH})", r"natural(?:ly)?",
                     "ordinary", "usual", "expected", "unremarkable", "plausible",
                     r"within\s+(?:the\s+)?(?:[\w-]+\s+){0,3}?range",
                     rf"(?:consistent|in\s+line)\s+with\s+(?:[\w-]+\s+){{0,2}}?{_REFERENCE}",
                     rf"(?:as|like)\s+(?:in\s+)?(?:[\w]+\s+)?{_REFERENCE}",
                     rf"match(?:es|ing)?\s+(?:[\w-]+\s+){{0,2}}?{_REFERENCE}")
# A normal word used as the predicate ("the pitch is stable and natural"), not as the reference of a
# comparison ("lower than in natural speech", "than usual"): it outweighs a signed word beside it.
PREDICATE_NORMAL = re.compile(r"(?<!than\s)\b(?:normal|typical|natural|ordinary|usual|expected|unremarkable|"
                              r"plausible)(?:ly)?\b(?!\s+(?:speech|voices?|recordings?|audio|human|speakers?))"
                              rf"(?!\s+(?:of|for)\s+{_SPOOFISH})", FLAGS)
ABNORMAL_WORDS = words(r"unusual(?:ly)?", r"abnormal(?:ly)?", r"atypical(?:ly)?", r"unnatural(?:ly)?", r"anomal\w+",
                       r"suspicious(?:ly)?", r"outside\s+(?:the\s+)?(?:[\w-]+\s+){0,3}?range", r"deviat\w+",
                       r"strange(?:ly)?", "odd", r"weird(?:ly)?", r"implausibl\w+", rf"typical\s+(?:of|for)\s+{_SPOOFISH}")
NEGATORS = words("not", "no", "never", "nor", "without", "hardly", "barely", r"\w+n't", r"free\s+of",
                 r"absence\s+of", r"lack\s+of", "lacks", "neither")
NEGATION_WINDOW = 4  # words before a term or a direction word that a negator may stand in
# "more X" / "less X" in front of a family's own word: "less regular" is the opposite of "regular"
COMPARATIVE = re.compile(r"\b(more|less)\s+$", FLAGS)


@dataclass(frozen=True)
class Family:
    """How a group of terms takes directions: its own words, and whether the generic high/low words apply."""
    name: str
    high: re.Pattern | None = None
    low: re.Pattern | None = None
    generic: bool = True


ENERGY = Family("energy", high=words("excess", "boosted"), low=words("empty", "void"))
BANDWIDTH = Family("bandwidth", high=words(r"wider?", r"broad(?:er)?", "extended", "full"),
                   low=words(r"narrow(?:er)?", "limited", "restricted", "truncated", r"band[- ]limited"))
FLATNESS = Family("flatness", high=words(r"flat(?:ter)?", r"noise[- ]like", "noisy", "white"), low=words("peaky"))
HARMONICITY = Family("harmonicity",  # polarity -1: these words speak of the harmonics, the opposite of flatness
                     high=words("clear", "distinct", "pronounced", "sharp", "clean", "rich", r"over[- ]?regular",
                                "crisp", r"well[- ]resolved", "resolved"),
                     low=words("smeared", "blurred", r"washed[- ]out", "indistinct", "degraded", "broken", "buried",
                               "unresolved", "noisy", "masked"))
HNR = Family("hnr", high=words("clean", "pure", "clear"), low=words("breathy", "noisy", "hoarse", "rough"))
PHASE = Family("phase", high=words("irregular", r"random\w*", "smeared", "incoherent", "chaotic", "scrambled",
                                   "erratic", "noisy", "unstable", "inconsistent", "disordered", "jittery"),
               low=words("coherent", "steady", "stable", "regular", "consistent", "smooth", "locked"))
JITTER = Family("jitter", high=words("erratic", "irregular", "unstable", "shaky", "rough", "large"),
                low=words("regular", r"over[- ]?regular", "stable", "steady", "perfect", r"machine[- ]like",
                          "metronomic", "constant", "uniform"))
CONTOUR = Family("contour",  # f0_smoothness is higher for rougher contours; "high pitch" is no shape word
                 high=words(r"jump\w*", "jerky", "erratic", r"rough(?:er)?", "jagged", "unstable", "irregular",
                            r"wobbl\w+", "shaky", "discontinuous", r"abrupt\w*", "choppy", "uneven"),
                 low=words(r"smooth\w*", r"over[- ]?smoothed", r"flat(?:ter)?", r"monoton\w+", r"stead(?:y|ier)",
                           "static", "robotic", "stable", "constant", "unvarying",
                           r"(?:little|no)\s+(?:[\w-]+\s+)?variation", r"lacks?\s+(?:[\w-]+\s+)?variation"),
                 generic=False)
NOISE_FLOOR = Family("noise_floor", high=words("noisy", "loud", r"hiss\w*"),
                     low=words("quiet", "clean", "silent", "pristine", "empty", "dead", "pure"))
EVENTS = Family("events", generic=False)   # a discontinuity or a band limit: present unless negated


@dataclass(frozen=True)
class Term:
    """A way of naming one evidence kind. `implied`: the direction the words carry by themselves;
    `when_negated`: the direction a negator in front gives; both before `polarity` is applied."""
    kind: str
    pattern: re.Pattern
    family: Family
    polarity: int = 1
    implied: str | None = None
    when_negated: str = "normal"
    absorbed_as: dict = field(default_factory=dict)  # family name -> direction, when another kind shares the clause


def term(kind: str, family: Family, *alternatives: str, **kw) -> Term:
    return Term(kind, words(*alternatives), family, **kw)


_PAUSES = (r"(?:pauses|silen\w+(?:\s+(?:segments|parts|portions|regions|gaps|intervals|stretches))?|gaps|"
           r"low[- ]energy\s+(?:segments|parts|regions)|non[- ]speech\s+(?:parts|segments|regions))")
_ENERGY_NOUN = r"(?:energy|level|loudness|amplitude|power|intensity)"
_EVENT_NOUN = (r"(?:jumps?|changes?|drops?|rises?|steps?|transitions?|breaks?|onsets?|offsets?|discontinuit\w*|"
               r"clicks?|glitch\w*)")
_ABRUPT = r"(?:abrupt|sudden|sharp|instant\w*|steep)(?:ly)?"

# Priority order: longer, more specific phrases first ("harmonics-to-noise" before "harmonic", "pitch jumps"
# before "jumps", "energy in the pauses" before "energy").
TERMS: list[Term] = [
    term("band_limit", EVENTS, r"cut[- ]?offs?", r"cuts?\s+off", "cut", r"band[- ]?limit(?:ed|ing|ation)?",
         r"low[- ]?pass(?:ed)?(?:\s+filter(?:ed|ing)?)?", r"brick[- ]?wall", r"(?:spectral\s+)?cliff",
         implied="present", absorbed_as={"*": "low"}),
    term("hnr", HNR, r"harmonics?[- ]to[- ]noise(?:[- ]ratio)?", "hnr", when_negated="low"),
    term("hnr", HNR, r"breath(?:y|iness)", r"aspirat\w+", r"hoarse\w*", implied="low"),
    term("f0_jitter", JITTER, r"jitter\w*", r"(?:period|cycle)[- ]to[- ](?:period|cycle)(?:\s+(?:variation|"
         r"perturbation|irregularit\w+))?", r"(?:pitch|glottal)\s+periods?", when_negated="low"),
    term("f0_smoothness", CONTOUR, r"(?:pitch|f0|intonation)(?:\s+contour|\s+track)?\s+(?:jumps?|breaks?)",
         implied="high"),
    term("f0_smoothness", CONTOUR, r"(?:pitch|f0|intonation|fundamental\s+frequency|melody)(?:\s+(?:contour|"
         r"track|trajectory|curve|movement|pattern|line))?"),
    term("energy_discontinuity", EVENTS,
         rf"{_ABRUPT}\s+(?:[\w-]+\s+){{0,2}}?{_EVENT_NOUN}(?:\s+(?:in|of)\s+(?:the\s+)?{_ENERGY_NOUN})?",
         rf"(?:{_ENERGY_NOUN}\s+)?discontinu\w*(?:\s+(?:in|of)\s+(?:the\s+)?{_ENERGY_NOUN})?",
         rf"(?:{_ENERGY_NOUN}\s+)?(?:jumps?|changes?|drops?|rises?)\s+(?:abruptly|suddenly|sharply)",
         r"(?:energy\s+|level\s+)?jumps?", r"clicks?(?:-like)?", r"splic\w*", r"glitch\w*",
         r"concatenation\s+(?:joins?|points?|artefacts?|artifacts?)",
         implied="present", absorbed_as={"contour": "high"}),
    term("noise_floor", NOISE_FLOOR, r"digital(?:ly)?\s+silen\w+", r"(?:pure|perfect|complete)\s+silence",
         implied="low"),
    term("noise_floor", NOISE_FLOOR, r"noise[- ]floor", rf"background\s+(?:noise|hiss|{_ENERGY_NOUN})",
         rf"(?:residual\s+|background\s+)?(?:noise|hiss|{_ENERGY_NOUN})\s+(?:in|during|of|within)\s+(?:the\s+)?"
         rf"{_PAUSES}", rf"(?:in|during|within)\s+(?:the\s+)?{_PAUSES}", r"(?:the\s+)?pauses", r"silences",
         r"silent\s+(?:segments|parts|portions|regions|intervals|stretches)", when_negated="low"),
    term("phase_irregularity", PHASE, r"phase\s+(?:coheren\w+|continuity|consistency|locking)", polarity=-1,
         when_negated="low"),
    term("phase_irregularity", PHASE, r"phase\s+(?:noise|randomi[sz]ation|scrambling)", implied="high"),
    term("phase_irregularity", PHASE, r"phase(?:\s+(?:irregularit\w+|behaviou?r|structure|evolution|"
         r"spectrum|response))?", r"phases"),
    term("flatness", FLATNESS, r"(?:spectral\s+)?flatness", when_negated="low"),
    term("flatness", FLATNESS, r"noise[- ]like", r"white[- ]noise[- ]like", r"spectrally\s+flat", "noisy",
         implied="high"),
    term("flatness", HARMONICITY, r"harmonic(?:s|ity)?(?:\s+(?:structure|content|partials|peaks|ripple|pattern))?",
         r"tonal(?:ity)?", r"partials", polarity=-1, when_negated="low"),
    term("bandwidth", BANDWIDTH, "bandwidth", r"spectral\s+(?:extent|width)", when_negated="low"),
    term("bandwidth", BANDWIDTH, r"narrow[- ]?band", implied="low"),
    term("band_energy", ENERGY, r"(?:spectral\s+)?(?:energy|power|loudness|level|content|intensity|magnitude)"
         r"(?!\s+(?:envelope|contour|trajectory|curve|track|over\s+time))", when_negated="low"),
]

# Quantifiers in front of a quantity ("little energy", "hardly any harmonics") act like a negation.
QUANTIFIED_NONE = re.compile(r"\b(?:little|hardly\s+any|barely\s+any|almost\s+no|nearly\s+no|very\s+little|"
                             r"scarcely\s+any)\s+$", FLAGS)

# Clause boundaries inside a sentence: two claims joined by ", and", "while", "whereas", "but", ";".
SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
CLAUSE_SPLIT = re.compile(r",\s*(?:and|but|while|whereas|yet)\s+|\s+(?:while|whereas|but|yet)\s+|;\s*", FLAGS)
