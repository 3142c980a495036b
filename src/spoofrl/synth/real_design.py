"""Benchmark design `real` (version 2): real human recordings as bona fide, spoofs made from them.

Bona fide: the clips of a real-speech manifest (`spoofrl data fetch`: Debian packages of game dialogue,
telephone prompts, children's-software words; speaker, language, gender, transcript, licence, packaging
per clip), read at 16 kHz mono, long clips cut into segments, leading/trailing silence trimmed, level
normalised. Spoofs of each base clip, all given the base's packaging (codec, rate, bit rate) so the
packaging cannot tell the classes apart:

- copy-synthesis of the clip through one of the benchmark's vocoders/codecs (`spoofrl.synth.attacks`);
- text-to-speech of its transcript (attack `tts-<engine>`: espeak-ng in the clip's language, flite and
  festival voices for English, pyopenjtalk for Japanese), timed to the clip's length;
- that TTS output passed through a vocoder (`tts-<engine>+<vocoder>`).

Pools of real speakers never overlap: a speaker's pool is set by the language they speak (`pool_of_language`;
a speaker recorded in several languages goes with the language of most of their clips): Dutch is the target
domain, French, Italian and Russian are held out for the OOD-source subsets, every other language is
post-training material. See docs/benchmark.md ("Design `real`").

`make_real_plan(clips, preset, seed)` is cheap and deterministic (seed + names; independent of worker
count and order), like the v1 plan in `spoofrl.synth.splits`.
"""
from __future__ import annotations

import csv
import hashlib
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from spoofrl.errors import ConfigError
from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.channels import CHANNELS
from spoofrl.synth.packaging import Packaging, vorbis_bitrate
from spoofrl.synth.sources import Voice, espeak, festival, flite, openjtalk
from spoofrl.synth.splits import TRAINING_SUBSETS  # noqa: F401  (the same training subsets as v1)
from spoofrl.synth.splits import OOD_ATTACKS, POSTTRAIN_ATTACKS, TARGET_ATTACKS, rng_for

DESIGN = "real"
VERSION = 2
# What a folder of design 2 holds changes with it (synth.json records it; another revision is not resumed):
# 1 the first; 2 no espeak-ng TTS for text espeak-ng says without vowels (`espeak_reads`), failed TTS voices
# replaced by the next of a seeded sequence (`tts_fallbacks`), clips that cannot be made left out (recorded).
REVISION = 2
SUBSETS = ("posttrain", "posttrain_dev", "target_train", "target_dev", "target_eval",
           "ood_attack", "ood_source", "ood_channel", "ood_mix")

# ------------------------------------------------------------------------------------------ lengths

MIN_CLIP_S = 1.0        # clips shorter than this in the manifest (letters, grunts) are not used
MAX_S = 8.0             # longer clips are cut into segments of at most about SEGMENT_S
SEGMENT_S = 7.0
MIN_S = 0.8             # trimming never makes a bona fide file shorter than this (margins widened)
MARGIN_S = 0.15         # silence kept before and after the speech when trimming

# ------------------------------------------------------------------------------------------ pools

TARGET_LANGUAGES = ("nl",)
OOD_LANGUAGES = ("fr", "it", "ru")
POOLS = ("posttrain", "target", "ood")
POOL_SUBSETS = {"posttrain": ("posttrain", "posttrain_dev", "ood_attack", "ood_channel"),
                "target": ("target_train", "target_dev", "target_eval"),
                "ood": ("ood_source", "ood_mix")}
SUBSET_POOL = {s: p for p, subsets in POOL_SUBSETS.items() for s in subsets}


def pool_of_language(language: str) -> str:
    if language in TARGET_LANGUAGES:
        return "target"
    if language in OOD_LANGUAGES:
        return "ood"
    return "posttrain"


# ------------------------------------------------------------------------------------------ TTS

# espeak-ng voice (language) for each manifest language: the language itself where espeak-ng has it,
# else the nearest one it has (Low German read as German, Walloon as Belgian French, Galician as Portuguese).
ESPEAK_LANGUAGES = frozenset(
    "af am an ar as az ba be bg bn bs ca cs cv cy da de el eo es et eu fa fi ga gd gn gu he hi hr ht hu hy "
    "ia id io is it ja ka kk kl kn ko ky la lb lt lv mi mk ml mr ms mt my nb ne nl om or pa pl pt ro ru sd si "
    "sk sl sq sr sv sw ta te th tk tn tr tt ug uk ur uz vi".split())
ESPEAK_NEAREST = {"en": "en-us", "fr": "fr-fr", "nds": "de", "wa": "fr-be", "gl": "pt", "no": "nb", "nn": "nb",
                  "zh": "cmn"}


def espeak_language(language: str, speaker: str = "") -> str:
    """espeak-ng's voice for a clip's language ('' when it speaks none close enough)."""
    if language == "en" and ("GB" in speaker or "gb" in speaker):
        return "en-gb"
    if language == "pt" and "BR" in speaker:
        return "pt-br"
    if language in ESPEAK_NEAREST:
        return ESPEAK_NEAREST[language]
    return language if language in ESPEAK_LANGUAGES else ""


# Scripts that write consonants and leave vowels out (Hebrew, Arabic, Syriac, Thaana). espeak-ng reads them from
# the letters alone: its Hebrew voice gives an unpointed word only the vowels its letters spell, so KLettres'
# syllable 'עד' (ad) becomes the phonemes '?d' and is rendered as silence, 'גם' (gam) as 'gm'.
ABJAD = re.compile("[\u0590-\u05ff\u0600-\u06ff\u0700-\u074f\u0750-\u077f\u0780-\u07bf]")
ESPEAK_VOWELS = re.compile(r"[aeiouyAEIOUVY@0369&]")    # vowel symbols of espeak-ng's phoneme mnemonics


def espeak_reads(text: str, tts_lang: str) -> bool:
    """Whether espeak-ng says `text` in `tts_lang` as words, i.e. every word it speaks has a vowel. Asked of
    espeak-ng itself (its phonemes) only for text in a script that may leave the vowels unwritten (`ABJAD`);
    text in other scripts is spelled with its vowels."""
    if not tts_lang or not ABJAD.search(text):
        return True
    from spoofrl.synth.sources import espeak_phonemes
    words = espeak_phonemes(tts_lang, text).split()
    return bool(words) and all(ESPEAK_VOWELS.search(w) for w in words)


@dataclass(frozen=True)
class TtsVoice:
    voice: Voice | None       # None for espeak-ng: the language is filled in per clip
    variant: str              # espeak-ng variant, or the engine's voice name
    gender: str               # m | f


def _espeak_pool(male: str, female: str) -> list[TtsVoice]:
    return ([TtsVoice(None, v, "m") for v in male.split()] + [TtsVoice(None, v, "f") for v in female.split()])


@dataclass(frozen=True)
class TtsEngine:
    id: str                   # attack id, e.g. tts-espeak
    engine: str               # espeak-ng | flite | festival | openjtalk
    languages: frozenset[str] | None   # manifest languages it speaks (None: any espeak-ng speaks)
    doc: str


TTS_ENGINES: dict[str, TtsEngine] = {e.id: e for e in [
    TtsEngine("tts-espeak", "espeak-ng", None, "espeak-ng formant synthesis (its own voice model), the clip's language"),
    TtsEngine("tts-espeak-klatt", "espeak-ng", None,
              "espeak-ng with Klatt-synthesiser variants (another formant synthesiser), the clip's language"),
    TtsEngine("tts-flite-kal", "flite", frozenset({"en"}), "flite diphone voice kal16 (English)"),
    TtsEngine("tts-flite-cg", "flite", frozenset({"en"}), "flite clustergen statistical-parametric voices awb, rms, slt (English)"),
    TtsEngine("tts-festival-diphone", "festival", frozenset({"en"}), "festival diphone voices kal, ked (English)"),
    TtsEngine("tts-festival-hts", "festival", frozenset({"en"}), "festival HTS voice cmu_us_slt_arctic_hts (English)"),
    TtsEngine("tts-openjtalk", "openjtalk", frozenset({"ja"}), "pyopenjtalk HTS voice mei (Japanese)"),
]}

# espeak-ng variants of the three TTS pools: no variant of one pool is a near copy of one of another
# (`sources.same_espeak_speaker`, checked by `check_real_design`); the OOD pool is the Klatt variants.
POSTTRAIN_TTS = {
    "tts-espeak": _espeak_pool("m1 m2 m3 m6 m7 Andy Lee sandro", "f1 f2 f5 steph Annie grandma"),
    "tts-flite-kal": [TtsVoice(flite("kal16"), "kal16", "m")],
    "tts-flite-cg": [TtsVoice(flite("awb"), "awb", "m"), TtsVoice(flite("rms"), "rms", "m"),
                     TtsVoice(flite("slt"), "slt", "f")],
}
TARGET_TTS = {
    "tts-espeak": _espeak_pool("m8 Storm travis Marco Jacky Michael gustave", "f3 f4 Alicia anika belinda shelby"),
}
OOD_TTS = {
    "tts-espeak-klatt": _espeak_pool("klatt klatt2 klatt3 klatt4 klatt5 klatt6 adam benjamin caleb david edward "
                                     "robosoft2 UniRobot announcer", ""),
    "tts-festival-diphone": [TtsVoice(festival("kal_diphone"), "kal_diphone", "m"),
                             TtsVoice(festival("ked_diphone"), "ked_diphone", "m")],
    "tts-festival-hts": [TtsVoice(festival("cmu_us_slt_arctic_hts"), "cmu_us_slt_arctic_hts", "f")],
    "tts-openjtalk": [TtsVoice(openjtalk("mei_normal"), "mei_normal", "f")],
}
TTS_WEIGHTS = {"tts-espeak": 2.0, "tts-espeak-klatt": 2.0}   # others 1.0 (where they speak the language)
FEMALE_PITCH = 1.35     # pitch factor when a clip of a woman gets a voice that only comes in male pitch

# ------------------------------------------------------------------------------------------ channels

# Transmission channels on top of the packaging, the same distribution for both classes of a subset.
POSTTRAIN_CHANNELS = {"clean": 0.55, "mp3": 0.15, "noise": 0.15, "bandlimit": 0.15}
TARGET_CHANNELS = {"clean": 0.4, "reverb": 0.25, "babble": 0.15, "opus": 0.2}
OOD_CHANNELS = {"gsm": 1 / 3, "mulaw": 1 / 3, "aac": 1 / 3}
OOD_MIX_CHANNELS = {"clean": 0.25, "gsm": 0.25, "mulaw": 0.25, "aac": 0.25}

# spoof kinds of a base that has a transcript and a TTS engine for its language (else: copy-synthesis only)
KIND_WEIGHTS = {"copy": 0.5, "tts": 0.25, "tts+vocoder": 0.25}


@dataclass(frozen=True)
class RealSubsetDesign:
    name: str
    role: str
    pool: str
    attacks: list[str]                   # copy-synthesis attacks (and the vocoders of TTS chains)
    tts: dict[str, list[TtsVoice]]       # TTS attack id -> voices
    channels: dict[str, float]
    spoofs_per_base: int
    about: str


REAL_DESIGN: list[RealSubsetDesign] = [
    RealSubsetDesign("posttrain", "train", "posttrain", POSTTRAIN_ATTACKS, POSTTRAIN_TTS, POSTTRAIN_CHANNELS, 2,
                     "broad post-training set: every language but Dutch, French, Italian and Russian (game "
                     "dialogue, telephone prompts, children's words, game shouts), 7 vocoder families, espeak-ng "
                     "and flite TTS"),
    RealSubsetDesign("posttrain_dev", "dev", "posttrain", POSTTRAIN_ATTACKS, POSTTRAIN_TTS, POSTTRAIN_CHANNELS, 2,
                     "validation for post-training (other clips of the same speakers)"),
    RealSubsetDesign("target_train", "train", "target", TARGET_ATTACKS, TARGET_TTS, TARGET_CHANNELS, 2,
                     "new target domain for fine-tuning: Dutch (acted game dialogue, other actors), other "
                     "vocoder settings and a new family (minphase), other espeak-ng voices, reverberant / "
                     "babble / opus channels"),
    RealSubsetDesign("target_dev", "dev", "target", TARGET_ATTACKS, TARGET_TTS, TARGET_CHANNELS, 2,
                     "validation in the target domain (other clips)"),
    RealSubsetDesign("target_eval", "eval", "target", TARGET_ATTACKS, TARGET_TTS, TARGET_CHANNELS, 2,
                     "in-domain test of the target domain (other clips)"),
    RealSubsetDesign("ood_attack", "eval", "posttrain", OOD_ATTACKS, OOD_TTS, POSTTRAIN_CHANNELS, 2,
                     "post-training speakers and channels; vocoders (hnm, celp) and TTS engines (espeak-ng "
                     "Klatt, festival) used by no training subset"),
    RealSubsetDesign("ood_source", "eval", "ood", POSTTRAIN_ATTACKS, POSTTRAIN_TTS, POSTTRAIN_CHANNELS, 2,
                     "post-training attacks and channels on speakers and languages (French, Italian, Russian) "
                     "heard by no training subset"),
    RealSubsetDesign("ood_channel", "eval", "posttrain", POSTTRAIN_ATTACKS, POSTTRAIN_TTS, OOD_CHANNELS, 2,
                     "post-training speakers and attacks through transmission codecs (gsm, mu-law, aac) used "
                     "by no training subset"),
    RealSubsetDesign("ood_mix", "eval", "ood", OOD_ATTACKS, OOD_TTS, OOD_MIX_CHANNELS, 2,
                     "everything shifted at once: unseen speakers and languages, unseen vocoders and TTS "
                     "engines, mostly unseen codecs"),
]
REAL_DESIGN_BY_NAME = {d.name: d for d in REAL_DESIGN}

# ------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class RealPreset:
    name: str
    bases: dict[str, int]                # subset -> number of base clips (fewer where the pool has fewer)
    about: str
    sources: tuple[str, ...] | None = None   # real sources it reads (None: all in the manifest)


def _scaled(pt, pt_dev, tg, tg_dev, tg_eval, ood_attack, ood_source, ood_channel, ood_mix) -> dict[str, int]:
    return dict(zip(SUBSETS, (pt, pt_dev, tg, tg_dev, tg_eval, ood_attack, ood_source, ood_channel, ood_mix)))


REAL_PRESETS = {
    "tiny": RealPreset("tiny", _scaled(3, 1, 1, 1, 1, 1, 1, 1, 1),
                       "asterisk-en only (one small package): the 4 subsets of the post-training pool, 18 files; "
                       "for tests", sources=("asterisk-en",)),
    "small": RealPreset("small", _scaled(120, 20, 40, 20, 30, 20, 20, 20, 20), "about 930 files (quick demos)"),
    "demo": RealPreset("demo", _scaled(360, 40, 120, 40, 80, 50, 50, 50, 50),
                       "about 2,500 files; sized for `spoofrl demo`"),
    "full": RealPreset("full", _scaled(3300, 330, 1000, 200, 450, 500, 700, 500, 500),
                       "every usable clip of the 10 sources (about 7,600 base clips, 23,000 files)"),
}

# ------------------------------------------------------------------------------------------ clips


@dataclass(frozen=True)
class RealClip:
    """One row of the real-speech manifest."""
    clip_id: str             # path as the manifest gives it (relative to the manifest's folder)
    path: Path               # absolute
    source: str
    speaker: str
    language: str
    gender: str              # f | m | -
    transcript: str
    condition: str           # packaging, codec-rate (vorbis-22k, g722-16k, pcm16-8k, ...)
    sample_rate: int
    duration: float
    license: str
    package: str
    version: str


def read_real_manifest(path: str | Path) -> list[RealClip]:
    """The clips of a manifest written by `spoofrl data fetch` (bona fide rows, paths relative to it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"real-speech manifest {path} not found: run `spoofrl data fetch` first (or give "
                          f"--real-manifest)")
    root = path.parent.resolve()
    clips = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"path", "label", "source", "condition", "speaker", "language", "duration"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path}: not a real-speech manifest (no column {', '.join(sorted(missing))}); "
                              f"make one with `spoofrl data fetch`")
        for row in reader:
            if row.get("label") != "bonafide":
                continue
            p = Path(row["path"])
            speaker = row.get("speaker") or "-"
            if speaker == "-":
                speaker = f"{row['source']}:-"
            try:
                rate = int(row.get("sample_rate") or 0)
                duration = float(row["duration"])
            except ValueError:
                raise ConfigError(f"{path}: bad duration or sample rate in the row of {row['path']}") from None
            clips.append(RealClip(
                clip_id=row["path"], path=p if p.is_absolute() else root / p, source=row["source"], speaker=speaker,
                language=row.get("language") or "-", gender=row.get("gender") if row.get("gender") in ("f", "m") else "-",
                transcript=row.get("transcript") or "", condition=row["condition"], sample_rate=rate,
                duration=duration, license=row.get("license") or "-", package=row.get("package") or "-",
                version=row.get("version") or "-"))
    clips.sort(key=lambda c: c.clip_id)
    return clips


def tts_text(transcript: str) -> str:
    """What a TTS engine is given: the transcript without [bracketed descriptions] and ellipses; of
    alternatives 'TIES / TEIS' (a clip listed under several names) the first."""
    text = re.sub(r"\[[^\]]*\]", " ", transcript)
    if " / " in text and all(len(part.split()) <= 3 for part in text.split(" / ")):
        text = text.split(" / ")[0]
    text = re.sub(r"\.\.\.+|…", " ", text)
    text = " ".join(text.split()).strip(" ,;:-")
    return text if re.search(r"\w", text) else ""


def speaker_pools(clips: Iterable[RealClip]) -> dict[str, str]:
    """speaker -> pool: the pool of the language of most of the speaker's clips (ties: alphabetical)."""
    langs: dict[str, Counter] = defaultdict(Counter)
    for c in clips:
        langs[c.speaker][c.language] += 1
    return {spk: pool_of_language(sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])
            for spk, cnt in langs.items()}


# ------------------------------------------------------------------------------------------ the plan


@dataclass
class RealItem:
    item_id: str
    label: str                    # bonafide | spoof
    kind: str                     # bonafide | copy | tts | tts+vocoder
    attack: str                   # manifest attack id ('-' for bona fide)
    vocoder: str                  # copy-synthesis attack applied ('-' for none)
    vocoder_params: dict
    tts_engine: str               # TTS attack id ('-' for none)
    tts_voice: Voice | None
    tts_gender: str               # gender of the TTS voice ('-' for none)
    tts_pitch: float
    channel: str
    channel_params: dict
    level_db: float
    subset: str

    @property
    def rel_path(self) -> str:
        return f"audio/{self.subset}/{self.item_id}.flac"


@dataclass
class RealBase:
    base_id: str
    subset: str
    clip: RealClip
    segment: int                  # index of the segment of the clip (0 when it is not cut)
    segments: int                 # how many segments the clip is cut into (1: not cut)
    text: str                     # what the TTS spoofs say ('' when none: no transcript, or a segment)
    tts_language: str             # espeak-ng voice language ('' when none)
    packaging: Packaging
    items: list[RealItem] = field(default_factory=list)

    @property
    def pool(self) -> str:
        return SUBSET_POOL[self.subset]


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _text_key(clip: RealClip) -> str:
    text = " ".join(tts_text(clip.transcript).lower().split())
    return f"{clip.language}:{text}" if text else f"clip:{clip.clip_id}"


def _interleaved(groups: dict[str, list], rng_key: str, seed: int) -> list:
    """Round robin over sorted keys, each key's list shuffled (seed + name): a prefix of any length has
    the keys in near-equal shares (until a key runs out)."""
    lists = []
    for key in sorted(groups):
        items = list(groups[key])
        order = rng_for(seed, f"{rng_key}/{key}").permutation(len(items))
        lists.append([items[i] for i in order])
    out = []
    for round_ in range(max((len(x) for x in lists), default=0)):
        out += [x[round_] for x in lists if round_ < len(x)]
    return out


def _ordered_text_groups(clips: list[RealClip], pool: str, seed: int) -> list[list[RealClip]]:
    """The pool's clips in groups of one text each (a text is never in two subsets), ordered so that sources,
    and the languages within a source, take turns."""
    by_text: dict[str, list[RealClip]] = defaultdict(list)
    for c in clips:
        by_text[_text_key(c)].append(c)
    by_source_lang: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for key in sorted(by_text):
        group = by_text[key]
        first = group[0]
        by_source_lang[first.source][first.language].append(group)
    per_source = {src: _interleaved(langs, f"pool/{pool}/{src}", seed) for src, langs in by_source_lang.items()}
    return _interleaved_keep_order(per_source)


def _interleaved_keep_order(groups: dict[str, list]) -> list:
    lists = [groups[k] for k in sorted(groups)]
    out = []
    for round_ in range(max((len(x) for x in lists), default=0)):
        out += [x[round_] for x in lists if round_ < len(x)]
    return out


def _segments(clip: RealClip) -> int:
    return 1 if clip.duration <= MAX_S else int(math.ceil(clip.duration / SEGMENT_S))


def _assign(groups: list[list[RealClip]], quotas: dict[str, int]) -> dict[str, list[tuple[RealClip, int, int]]]:
    """Give text groups to subsets in order, each to the subset furthest behind its quota (as a fraction),
    until every quota is met or the groups run out. Returns subset -> [(clip, segment, segments)]."""
    out: dict[str, list] = {s: [] for s in quotas}
    if not quotas or not any(quotas.values()):
        return out
    filled = {s: 0 for s in quotas}
    for group in groups:
        open_ = [s for s, q in quotas.items() if q > 0 and filled[s] < q]
        if not open_:
            break
        subset = min(open_, key=lambda s: (filled[s] / quotas[s], list(quotas).index(s)))
        for clip in group:
            n = _segments(clip)
            out[subset] += [(clip, k, n) for k in range(n)]
            filled[subset] += n
    return out


def _speaks(engine_id: str, voices: list[TtsVoice], base_lang: str, tts_lang: str, want: str) -> bool:
    """Whether a TTS engine of a subset can speak a clip: it has voices, speaks the clip's language, and (for
    engines other than espeak-ng) has a voice of the gender wanted."""
    engine = TTS_ENGINES[engine_id]
    if not voices or (engine.engine == "espeak-ng" and not tts_lang):
        return False
    if engine.languages is not None and base_lang not in engine.languages:
        return False
    # a man's clip never gets only a woman's voice, and vice versa (espeak-ng variants come in both)
    return engine.engine == "espeak-ng" or any(v.gender == want for v in voices)


def _pick_tts(design: RealSubsetDesign, base_lang: str, tts_lang: str, gender: str,
              rng: np.random.Generator, exclude: set[str]) -> tuple[str, TtsVoice, float] | None:
    """(TTS attack id, voice, pitch factor) for a clip: an engine of the subset that speaks its language,
    a voice of the clip's gender where the engine has one (drawn 50/50 when the gender is unknown)."""
    want = gender if gender in ("f", "m") else ("f" if rng.random() < 0.5 else "m")
    weights = {engine_id: TTS_WEIGHTS.get(engine_id, 1.0) for engine_id, voices in design.tts.items()
               if engine_id not in exclude and _speaks(engine_id, voices, base_lang, tts_lang, want)}
    if not weights:
        return None
    engine_id = _weighted(rng, weights)
    voices = design.tts[engine_id]
    fitting = [v for v in voices if v.gender == want] or voices
    tv = fitting[int(rng.integers(len(fitting)))]
    pitch = float(rng.uniform(0.92, 1.08))
    if tv.gender != want and want == "f":
        pitch *= FEMALE_PITCH
    if tv.voice is None:
        tv = TtsVoice(espeak(f"{tts_lang}+{tv.variant}"), tv.variant, tv.gender)
    return engine_id, tv, round(pitch, 3)


def _tts_available(design: RealSubsetDesign, base_lang: str, tts_lang: str) -> bool:
    for engine_id, voices in design.tts.items():
        engine = TTS_ENGINES[engine_id]
        if voices and (tts_lang if engine.engine == "espeak-ng" else base_lang in (engine.languages or ())):
            return True
    return False


def _plan_base(design: RealSubsetDesign, index: int, clip: RealClip, segment: int, segments: int,
               seed: int, bitrate: int) -> RealBase:
    base_id = f"{design.name}_{index:05d}"
    rng = rng_for(seed, f"real/{base_id}/{clip.clip_id}/{segment}")
    text = tts_text(clip.transcript) if segments == 1 else ""
    tts_lang = espeak_language(clip.language, clip.speaker)
    if text and not espeak_reads(text, tts_lang):
        tts_lang = ""                 # espeak-ng would not say these words: no espeak-ng TTS of this clip
    packaging = Packaging.parse(clip.condition, clip.sample_rate, bitrate)
    base = RealBase(base_id, design.name, clip, segment, segments, text, tts_lang, packaging)
    tts_possible = bool(text) and _tts_available(design, clip.language, tts_lang)
    n_items = 1 + design.spoofs_per_base
    bona_slot = int(rng.integers(n_items))
    used_attacks: set[str] = set()
    for k in range(n_items):
        item_id = f"{base_id}_{k}"
        channel = _weighted(rng, design.channels)
        channel_params = CHANNELS[channel].sample_params(rng)
        level_db = round(float(rng.uniform(-32.0, -18.0)), 2)
        if k == bona_slot:
            base.items.append(RealItem(item_id, "bonafide", "bonafide", "-", "-", {}, "-", None, "-", 1.0,
                                       channel, channel_params, level_db, design.name))
            continue
        kind = _weighted(rng, KIND_WEIGHTS) if tts_possible else "copy"
        vocoder, engine_id, tv, pitch = "-", "-", None, 1.0
        if kind != "copy":
            picked = _pick_tts(design, clip.language, tts_lang, clip.gender, rng, set())
            if picked is None:
                kind = "copy"
            else:
                engine_id, tv, pitch = picked
        if kind != "tts":
            fresh = [a for a in design.attacks if (a if kind == "copy" else f"{engine_id}+{a}") not in used_attacks]
            choices = fresh or design.attacks
            vocoder = choices[int(rng.integers(len(choices)))]
        attack = {"copy": vocoder, "tts": engine_id, "tts+vocoder": f"{engine_id}+{vocoder}"}[kind]
        used_attacks.add(attack)
        base.items.append(RealItem(
            item_id, "spoof", kind, attack, vocoder, ATTACKS[vocoder].sample_params(rng) if vocoder != "-" else {},
            engine_id, tv.voice if tv else None, tv.gender if tv else "-", pitch,
            channel, channel_params, level_db, design.name))
    return base


@dataclass(frozen=True)
class TtsChoice:
    """A voice for a TTS spoof: its engine (attack id), the voice, the voice's gender and the pitch factor."""
    engine: str
    voice: Voice
    gender: str
    pitch: float


def tts_fallbacks(base: RealBase, item: RealItem, seed: int, missing: Iterable[str] = ()) -> list[TtsChoice]:
    """The voices to try, in order, when the planned voice of TTS spoof `item` cannot speak its text: every
    other voice of the subset's engines (less `missing`) that speaks the clip's language, of the clip's gender
    where known (else of the planned voice's), in an order drawn from the seed and the item id, so the same
    seed always gives the same benchmark, resumed or not."""
    design = REAL_DESIGN_BY_NAME[base.subset]
    want = base.clip.gender if base.clip.gender in ("f", "m") else item.tts_gender
    options = []
    for engine_id, voices in design.tts.items():
        if engine_id in set(missing) or not _speaks(engine_id, voices, base.clip.language, base.tts_language, want):
            continue
        for tv in [v for v in voices if v.gender == want] or voices:
            voice = tv.voice if tv.voice is not None else espeak(f"{base.tts_language}+{tv.variant}")
            if voice != item.tts_voice:
                options.append((engine_id, voice, tv.gender))
    rng = rng_for(seed, f"real/{item.item_id}/fallback")
    out = []
    for k in rng.permutation(len(options)):
        engine_id, voice, gender = options[int(k)]
        pitch = float(rng.uniform(0.92, 1.08)) * (FEMALE_PITCH if gender != want and want == "f" else 1.0)
        out.append(TtsChoice(engine_id, voice, gender, round(pitch, 3)))
    return out


def make_real_plan(clips: list[RealClip], preset: str | RealPreset, seed: int,
                   missing_engines: Iterable[str] = ()) -> list[RealBase]:
    """Every base clip and every file of the benchmark, fully specified. `missing_engines`: TTS attack ids
    that cannot run here (optional engines not installed): left out of every subset."""
    if isinstance(preset, str):
        if preset not in REAL_PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; known: {', '.join(REAL_PRESETS)}")
        preset = REAL_PRESETS[preset]
    if preset.sources is not None:
        clips = [c for c in clips if c.source in preset.sources]
        absent = sorted(set(preset.sources) - {c.source for c in clips})
        if absent:
            raise ConfigError(f"preset '{preset.name}' needs the real-speech source{'s' * (len(absent) > 1)} "
                              f"{', '.join(absent)}: run `spoofrl data fetch --sources {','.join(absent)}`")
    usable = [c for c in clips if c.duration >= MIN_CLIP_S]
    pools = speaker_pools(usable)
    missing = set(missing_engines)
    plan: list[RealBase] = []
    for pool in POOLS:
        pool_clips = [c for c in usable if pools[c.speaker] == pool]
        groups = _ordered_text_groups(pool_clips, pool, seed)
        quotas = {s: preset.bases.get(s, 0) for s in POOL_SUBSETS[pool]}
        assigned = _assign(groups, quotas)
        for subset in POOL_SUBSETS[pool]:
            design = REAL_DESIGN_BY_NAME[subset]
            if missing:
                design = replace(design, tts={k: v for k, v in design.tts.items() if k not in missing})
            for i, (clip, k, n) in enumerate(assigned[subset]):
                bitrate = vorbis_bitrate(clip.path) if clip.condition.startswith("vorbis") else 0
                plan.append(_plan_base(design, i, clip, k, n, seed, bitrate))
    order = {s: i for i, s in enumerate(SUBSETS)}
    plan.sort(key=lambda b: (order[b.subset], b.base_id))
    return plan


def plan_digest(plan: list[RealBase]) -> str:
    """A short fingerprint of the clips a plan uses (the stamp refuses to resume with other clips)."""
    h = hashlib.sha256()
    for b in plan:
        h.update(f"{b.base_id}|{b.clip.clip_id}|{b.clip.duration}|{b.clip.condition}|{b.segment}/{b.segments}|"
                 f"{b.packaging.bitrate}\n".encode())
    return h.hexdigest()[:16]


def all_tts_voices() -> list[Voice]:
    """The non-espeak TTS voices of the design (espeak-ng voices depend on the clips' languages)."""
    out: dict[str, Voice] = {}
    for design in REAL_DESIGN:
        for voices in design.tts.values():
            out.update({tv.voice.id: tv.voice for tv in voices if tv.voice is not None})
    return list(out.values())


def check_real_design(data_dir=None) -> None:
    """Invariants the README promises; AssertionError when an edit broke one. Reads espeak-ng's variant
    files (near-copies of one voice must not sit in two TTS pools)."""
    from spoofrl.synth.sources import same_espeak_speaker
    assert not set(TARGET_LANGUAGES) & set(OOD_LANGUAGES)
    seen_tts = set(POSTTRAIN_TTS) | set(TARGET_TTS)
    assert not set(OOD_TTS) & seen_tts, "OOD TTS engines are seen in training"
    assert not set(OOD_ATTACKS) & (set(POSTTRAIN_ATTACKS) | set(TARGET_ATTACKS)), "OOD vocoders are seen"
    assert not set(OOD_CHANNELS) & (set(POSTTRAIN_CHANNELS) | set(TARGET_CHANNELS)), "OOD channels are seen"
    for d in REAL_DESIGN:
        assert set(d.attacks) <= set(ATTACKS) and set(d.channels) <= set(CHANNELS) and set(d.tts) <= set(TTS_ENGINES)
    variants = {name: {tv.variant for key, vs in pool.items() for tv in vs if TTS_ENGINES[key].engine == "espeak-ng"}
                for name, pool in (("post-training", POSTTRAIN_TTS), ("target", TARGET_TTS), ("OOD", OOD_TTS))}
    names = list(variants)
    clashes = [f"{a} ({pa}) ~ {b} ({pb})" for i, pa in enumerate(names) for pb in names[i + 1:]
               for a in sorted(variants[pa]) for b in sorted(variants[pb]) if same_espeak_speaker(a, b, data_dir)]
    assert not clashes, "espeak-ng TTS pools share near-copies of a voice: " + "; ".join(clashes)
