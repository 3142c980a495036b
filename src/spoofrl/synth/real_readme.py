"""README.md of a `real`-design benchmark folder, and the class-balance statistics it reports (computed
from the files written, not from intentions): per subset and class, shares of languages, genders,
packaging/channel conditions and the duration distribution, with one number per axis that says how far
apart the two classes are (total-variation distance for categories, Kolmogorov-Smirnov for durations)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from spoofrl.data.manifest import Utterance
from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.channels import CHANNELS
from spoofrl.synth.readme import names_text, unseen_pairs
from spoofrl.synth.real_design import (MAX_S, MIN_CLIP_S, MIN_S, OOD_LANGUAGES, REAL_DESIGN, REAL_PRESETS,
                                       SEGMENT_S, SUBSETS, TARGET_LANGUAGES, TTS_ENGINES, VERSION,
                                       RealBase)

CAVEAT = (
    "**What this measures.** Bona fide files are real human recordings (game dialogue acted in Czech and "
    "Dutch, telephone voice prompts read by voice talents in five languages, letters and words read for "
    "children's software in about 30 languages, game shouts). Spoofs are (a) copy-synthesis of those very "
    "recordings through classic vocoders and speech codecs, (b) rule-based and classic statistical TTS "
    "(espeak-ng formant and Klatt synthesis in every language; flite diphone and clustergen, festival diphone "
    "and HTS voices in English) saying the recordings' transcripts, and (c) that TTS through the vocoders. "
    "Every spoof carries its base recording's packaging (codec, sample rate, bit rate), and language, gender "
    "and length are matched per base, so none of them separates the classes. A detector trained here learns "
    "human speech against classic synthesis and vocoding, and the OOD subsets measure generalisation to "
    "unseen vocoders and TTS engines, unseen speakers and languages, and unseen transmission codecs.\n\n"
    "**What it does not measure.** There is no modern neural TTS or voice conversion here (no neural "
    "vocoder, no VITS / diffusion / codec-language-model speech, no voice cloning of the real speakers): "
    "numbers on this benchmark say nothing about detecting those. The real recordings are studio or "
    "game-production quality (no phone-microphone speech, no spontaneous conversation), speakers are few per "
    "language (one to forty), and the espeak-ng TTS is far from human-like, so the TTS spoofs are easy; "
    "the copy-synthesis spoofs carry the real voices and are the hard part. For real-world claims use public "
    "corpora (`spoofrl data import`)."
)


# ------------------------------------------------------------------------------------------ statistics

def _shares(values: list[str]) -> dict[str, float]:
    n = max(len(values), 1)
    return {k: v / n for k, v in Counter(values).items()}


def total_variation(a: list[str], b: list[str]) -> float:
    """Half the L1 distance between the category shares of a and b (0: identical, 1: disjoint)."""
    sa, sb = _shares(a), _shares(b)
    return 0.5 * sum(abs(sa.get(k, 0.0) - sb.get(k, 0.0)) for k in set(sa) | set(sb))


def ks_distance(a: list[float], b: list[float]) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    if not a or not b:
        return 0.0
    a_, b_ = np.sort(a), np.sort(b)
    grid = np.concatenate([a_, b_])
    return float(np.max(np.abs(np.searchsorted(a_, grid, side="right") / len(a_)
                               - np.searchsorted(b_, grid, side="right") / len(b_))))


def class_balance(rows: list[Utterance]) -> dict[str, dict]:
    """subset -> per-class counts, duration quantiles and the class distances per axis."""
    out = {}
    for subset in SUBSETS:
        sub = [r for r in rows if r.subset == subset]
        if not sub:
            continue
        bona = [r for r in sub if r.label == "bonafide"]
        spoof = [r for r in sub if r.label == "spoof"]

        def col(rs, key):
            return [r.extra.get(key, "-") for r in rs]
        dur = {lab: [float(r.extra.get("duration") or 0.0) for r in rs] for lab, rs in (("bonafide", bona), ("spoof", spoof))}
        out[subset] = {
            "files": len(sub), "bonafide": len(bona), "spoof": len(spoof),
            "tv_language": total_variation(col(bona, "language"), col(spoof, "language")),
            "tv_gender": total_variation(col(bona, "gender"), col(spoof, "gender")),
            "tv_packaging": total_variation(col(bona, "packaging"), col(spoof, "packaging")),
            "tv_condition": total_variation([r.condition for r in bona], [r.condition for r in spoof]),
            "ks_duration": ks_distance(dur["bonafide"], dur["spoof"]),
            "duration_quantiles": {lab: [round(float(q), 2) for q in np.percentile(d, [10, 50, 90])] if d else []
                                   for lab, d in dur.items()},
            "mean_duration": {lab: round(float(np.mean(d)), 3) if d else 0.0 for lab, d in dur.items()},
            "languages": {lab: dict(Counter(col(rs, "language")).most_common()) for lab, rs in (("bonafide", bona), ("spoof", spoof))},
            "conditions": {lab: dict(Counter(r.extra.get("packaging", "-") for r in rs).most_common())
                           for lab, rs in (("bonafide", bona), ("spoof", spoof))},
            "genders": {lab: dict(Counter(col(rs, "gender")).most_common()) for lab, rs in (("bonafide", bona), ("spoof", spoof))},
        }
    return out


def duration_histogram(rows: list[Utterance], edges=(0, 1, 1.5, 2, 3, 4, 6, 8.01)) -> dict[str, list[float]]:
    """Share of files per duration bin, per class, over the whole benchmark."""
    out = {}
    for lab in ("bonafide", "spoof"):
        d = np.array([float(r.extra.get("duration") or 0.0) for r in rows if r.label == lab])
        h, _ = np.histogram(d, bins=np.array(edges, dtype=float))
        out[lab] = [round(float(v), 3) for v in h / max(len(d), 1)]
    return out


# ------------------------------------------------------------------------------------------ tables

def subset_table(plan: list[RealBase], rows: list[Utterance]) -> list[str]:
    lines = ["| subset | role | files | bona fide | spoof | real speakers | languages | sources | copy-synthesis | TTS engines | channels |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in REAL_DESIGN:
        bases = [b for b in plan if b.subset == d.name]
        if not bases:
            continue
        sub = [r for r in rows if r.subset == d.name]
        items = [i for b in bases for i in b.items]
        lines.append(
            f"| {d.name} | {d.role} | {len(sub)} | {sum(r.label == 'bonafide' for r in sub)} | "
            f"{sum(r.label == 'spoof' for r in sub)} | {len({b.clip.speaker for b in bases})} | "
            f"{len({b.clip.language for b in bases})} | {', '.join(sorted({b.clip.source for b in bases}))} | "
            f"{names_text({i.vocoder for i in items if i.vocoder != '-'})} | {names_text({i.tts_engine for i in items if i.tts_engine != '-'})} | "
            f"{names_text({i.channel for i in items})} |")
    return lines


def _sets(plan: list[RealBase], subset: str) -> dict[str, set]:
    bases = [b for b in plan if b.subset == subset]
    items = [i for b in bases for i in b.items]
    return {"vocoders": {i.vocoder for i in items if i.vocoder != "-"},
            "tts": {i.tts_engine for i in items if i.tts_engine != "-"},
            "channels": {i.channel for i in items}, "speakers": {b.clip.speaker for b in bases},
            "languages": {b.clip.language for b in bases}, "texts": {b.text for b in bases if b.text}}


def unseen_table(plan: list[RealBase]) -> list[str]:
    subsets = [d.name for d in REAL_DESIGN if any(b.subset == d.name for b in plan)]
    sets = {s: _sets(plan, s) for s in subsets}
    lines = ["| subset | relative to | unseen vocoders | unseen TTS engines | unseen channels | unseen real speakers | unseen languages | shared texts |",
             "|---|---|---|---|---|---|---|---|"]
    for s, t in unseen_pairs(subsets):
        a, b = sets[s], sets[t]
        lines.append(f"| {s} | {t} | {names_text(a['vocoders'] - b['vocoders'])} | {names_text(a['tts'] - b['tts'])} | "
                     f"{names_text(a['channels'] - b['channels'])} | {len(a['speakers'] - b['speakers'])} of "
                     f"{len(a['speakers'])} | {len(a['languages'] - b['languages'])} of {len(a['languages'])} | "
                     f"{len(a['texts'] & b['texts'])} |")
    return lines


def balance_table(balance: dict[str, dict]) -> list[str]:
    lines = ["| subset | bona fide | spoof | duration p10/p50/p90 bona fide (s) | spoof (s) | KS duration | TV language | "
             "TV gender | TV packaging | TV packaging+channel |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s, b in balance.items():
        q = b["duration_quantiles"]
        lines.append(f"| {s} | {b['bonafide']} | {b['spoof']} | {'/'.join(map(str, q['bonafide']))} | "
                     f"{'/'.join(map(str, q['spoof']))} | {b['ks_duration']:.3f} | {b['tv_language']:.3f} | "
                     f"{b['tv_gender']:.3f} | {b['tv_packaging']:.3f} | {b['tv_condition']:.3f} |")
    return lines


def source_table(plan: list[RealBase]) -> list[str]:
    lines = ["| source | package (version) | licence | base clips | speakers | languages | packaging |",
             "|---|---|---|---|---|---|---|"]
    by: dict[str, list[RealBase]] = {}
    for b in plan:
        by.setdefault(b.clip.source, []).append(b)
    for src, bases in sorted(by.items()):
        pkgs = sorted({f"{b.clip.package} ({b.clip.version})" for b in bases})
        lines.append(f"| {src} | {', '.join(pkgs)} | {', '.join(sorted({b.clip.license for b in bases}))} | "
                     f"{len(bases)} | {len({b.clip.speaker for b in bases})} | "
                     f"{', '.join(sorted({b.clip.language for b in bases}))} | "
                     f"{', '.join(sorted({b.clip.condition for b in bases}))} |")
    return lines


MAX_LISTED = 100     # outcome rows listed in the README; all of them are in outcomes/


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def outcome_lines(outcomes) -> list[str]:
    """What could not be made as planned (`real_generate.Outcomes`): spoofs made with a fallback voice and
    clips left out, each with its reason; said explicitly when there are none."""
    fallbacks = sorted(outcomes.fallbacks.values(), key=lambda r: r["item"]) if outcomes else []
    left_out = sorted(outcomes.left_out.values(), key=lambda r: r["base"]) if outcomes else []
    out = ["## What could not be made as planned", ""]
    if not fallbacks and not left_out:
        return out + ["Every planned file was made as planned: no TTS voice failed and no clip was left out.", ""]
    nf, nl = len(fallbacks), len(left_out)
    out += [f"{nf} spoof{'s' * (nf != 1)} made with a fallback voice, {nl} clip{'s' * (nl != 1)} left out. A TTS "
            "voice that cannot speak a text (espeak-ng gives silence, an engine fails) is replaced by the next voice "
            "of a sequence drawn from the seed and the file (the same for every build and resume with this seed); "
            "a clip is left out, with its bona fide file and its spoofs, when no voice can speak its text or it "
            "cannot be made at all. Records: `outcomes/`; the fallback of a file is also in `meta.jsonl`.", ""]
    if fallbacks:
        out += ["| file | subset | text | planned voice | made with | why the planned voice failed |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['item']} | {r['subset']} | {_cell(r['text'])} | {r['planned']['tts_voice']} | "
                f"{r['used']['tts_voice']} | {_cell(r['failed'][0][1])} |" for r in fallbacks[:MAX_LISTED]]
        out += [f"| ... {nf - MAX_LISTED} more in `outcomes/` | | | | | |"] if nf > MAX_LISTED else []
        out += [""]
    if left_out:
        out += ["| clip left out | subset | real clip | files | reason |", "|---|---|---|---|---|"]
        out += [f"| {r['base']} | {r['subset']} | {_cell(r['origin'])} | {len(r['files'])} | {_cell(r['reason'])} |"
                for r in left_out[:MAX_LISTED]]
        out += [f"| ... {nl - MAX_LISTED} more in `outcomes/` | | | | |"] if nl > MAX_LISTED else []
        out += [""]
    return out


def render_real_readme(plan: list[RealBase], rows: list[Utterance], preset: str, seed: int,
                       missing: dict | None = None, manifest: Path | None = None, outcomes=None) -> str:
    about = REAL_PRESETS[preset].about if preset in REAL_PRESETS else "custom preset"
    balance = class_balance(rows)
    hist = duration_histogram(rows)
    out = [f"# spoofrl benchmark, design `real` (version {VERSION}; preset `{preset}`, seed {seed})", "",
           f"Made by `spoofrl data synth --design real --preset {preset} --seed {seed}` ({about}) from the real "
           f"recordings of `{manifest}` (`spoofrl data fetch`). The same command on the same clips makes identical "
           "files on any machine with the same synthesizer and codec versions; `synth.json` records the design, "
           "version, preset, seed and a fingerprint of the clips used.", "", CAVEAT, "",
           "## How to use it", "",
           "1. Post-train a detector on `posttrain` (validate on `posttrain_dev`).",
           "2. Fine-tune it on the target domain `target_train` (Dutch; validate on `target_dev`).",
           "3. Test in-domain on `target_eval` and out-of-domain on `ood_attack`, `ood_source`, `ood_channel`, "
           "`ood_mix`.", "",
           "Each base clip gives one bona fide file and two spoofs of it; the `base` column pairs them, "
           "`origin` names the real clip. Spoofs carry their base's `speaker`, `language`, `gender` and "
           "`packaging` (and `source`): those columns describe the clip a spoof imitates, so no column but the "
           "label and attack columns differs between the classes of a base. `condition` is the packaging, plus "
           "`+channel` when a transmission channel was applied (drawn alike for both classes).", "",
           "## Real recordings (bona fide) and their licences", "",
           "Every file derived from a clip (its bona fide copy and its spoofs) is under that clip's licence "
           "(the `license` column; GPL-2 / GPL-2+ game and education data, CC-BY-SA-3.0 and CC-BY-3.0 "
           "telephone prompts, GFDL-1.3 game voices); credit the packages below when you redistribute.", ""]
    out += source_table(plan)
    out += ["", f"Clips shorter than {MIN_CLIP_S:g} s are not used; clips longer than {MAX_S:g} s are cut at "
            f"pauses into segments of about {SEGMENT_S:g} s (a segment has no transcript, so no TTS spoof); "
            f"leading and trailing silence is trimmed to 0.15 s (never below {MIN_S:g} s in all).", "",
            "## Subsets", ""]
    out += subset_table(plan, rows)
    out += ["", "What each subset is for:", ""]
    out += [f"- `{d.name}`: {d.about}." for d in REAL_DESIGN]
    out += ["", "Speaker pools follow the language: Dutch speakers form the target domain "
            f"({', '.join(TARGET_LANGUAGES)}), French, Italian and Russian speakers the OOD pool "
            f"({', '.join(OOD_LANGUAGES)}), everyone else post-training; a speaker recorded in two languages "
            "(Allison Smith: the English and Spanish telephone prompts) stays in the pool of most of their clips. "
            "A text (transcript) occurs in one subset of a pool only.", "",
            "## What is unseen, relative to each training subset", ""]
    out += unseen_table(plan)
    out += ["", "## Class balance (from the files)", "",
            "Per subset: the duration distribution of each class, and how far apart the classes are: KS = the "
            "Kolmogorov-Smirnov statistic of the durations, TV = total-variation distance of the shares of "
            "languages, genders, packagings and conditions (0 = the same distribution). Language, gender and "
            "packaging are equal by construction; the transmission channel is drawn per file from one "
            "distribution for both classes, so its TV is sampling noise (it shrinks with the subset's size).", ""]
    out += balance_table(balance)
    edges = ["<1", "1-1.5", "1.5-2", "2-3", "3-4", "4-6", "6-8"]
    out += ["", "Share of files per duration (s), whole benchmark:", "",
            "| class | " + " | ".join(edges) + " |", "|---|" + "---|" * len(edges)]
    out += [f"| {lab} | " + " | ".join(f"{v:.3f}" for v in hist[lab]) + " |" for lab in ("bonafide", "spoof")]
    out += [""] + outcome_lines(outcomes)
    out += ["## Attacks", "", "Copy-synthesis and TTS-chain vocoders (`spoofrl.synth.attacks`):", "",
            "| id | family | what it does |", "|---|---|---|"]
    used = {i.vocoder for b in plan for i in b.items}
    out += [f"| `{k}` | {a.family} | {a.doc} |" for k, a in ATTACKS.items() if k in used]
    out += ["", "TTS engines (attack `tts-<engine>`, chains `tts-<engine>+<vocoder>`): each speaks the base "
            "clip's transcript in its language (espeak-ng every language, the others English / Japanese only), "
            "with a voice of the clip speaker's gender where known (else drawn 50/50; a woman's clip given an "
            "espeak-ng Klatt voice, which has male pitch only, is raised x1.35), at the speaking rate that "
            "matches the clip's speech length, over a noise floor at the clip's own floor level.", "",
            "| id | what it is | files |", "|---|---|---|"]
    tts_count = Counter(i.tts_engine for b in plan for i in b.items if i.tts_engine != "-")
    out += [f"| `{k}` | {e.doc} | {tts_count[k]} |" for k, e in TTS_ENGINES.items() if tts_count[k]]
    if missing:
        out += ["", "Left out on the machine that made this folder:", ""]
        out += [f"- `{k}`: {why}" for k, why in sorted(missing.items())]
    out += ["", "## Channels (on top of the packaging, both classes alike)", "", "| id | what it does |", "|---|---|"]
    used_ch = {i.channel for b in plan for i in b.items}
    out += [f"| `{k}` | {c.doc} |" for k, c in CHANNELS.items() if k in used_ch]
    out += ["", "## Files", "",
            "- `manifest.csv`: `path,label,attack,source,condition,subset` plus `base`, `origin`, `speaker`, "
            "`language`, `gender`, `text` (what TTS said), `packaging`, `channel`, `kind` (bonafide / copy / "
            "tts / tts+vocoder), `tts_engine`, `tts_voice`, `vocoder`, `license`, `segment`, `duration`. "
            "Written last: a folder without it is unfinished; rerun the same command to complete it.",
            "- `meta.jsonl`: one line per file with every parameter.",
            "- `audio/<subset>/<base>_<k>.flac`: 16 kHz mono 16-bit FLAC; the bona fide copy's `k` is random.",
            "- `synth.json`: design, version, revision, preset, seed, clip fingerprint, left-out engines.",
            "- `outcomes/`: one JSON record per spoof made with a fallback voice (`<file>.json`) and per clip left "
            "out (`<base>.json`), with the reason; absent when everything was made as planned.",
            "- `probe.json` (with `--probe`): the channel-parity probe (a classifier on packaging features "
            "only; EER near 50 % means packaging does not reveal the class).", ""]
    return "\n".join(out)


def write_real_readme(plan: list[RealBase], rows: list[Utterance], path: Path, preset: str, seed: int,
                      missing: dict | None = None, manifest: Path | None = None, outcomes=None) -> None:
    path.write_text(render_real_readme(plan, rows, preset, seed, missing, manifest, outcomes))
