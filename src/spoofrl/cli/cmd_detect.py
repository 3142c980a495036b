"""`spoofrl detect PATH...`: score audio files (files, folders, globs) with a detector."""
from __future__ import annotations

import argparse
import sys

from spoofrl.cli.common import (add_batch_size_option, add_device_option, add_format_option, add_model_option,
                                add_output_option, check_output_file, write_report)

# spoofrl.detect.engine's DEFAULT_MIN_SPEECH_SHARE, written out: importing the engine here would slow every
# `spoofrl` command's start by most of a second (tests/test_detect.py checks that the two agree).
DEFAULT_MIN_SPEECH_SHARE = 0.05

DESCRIPTION = """\
Score audio files with a deepfake detector. PATH may be files, folders (searched recursively for audio
files) or quoted globs ('data/**/*.flac'); any format spoofrl reads (wav, flac, ogg, mp3, and through
ffmpeg m4a/opus/webm/...), any sample rate or channel count (downmixed and resampled to the model's rate).

Higher score = more bona fide. Without calibration the score is the model's log-odds of bona fide;
when the model folder has calibration.json (`spoofrl calibrate`) it is a log-likelihood ratio (LLR).
p_spoof is the probability of spoof (for an LLR, at the prior stated in calibration.json). Verdict:
bonafide when score >= --threshold (default 0: even odds), else spoof.

Speech: a voice activity detector (Silero VAD, weights inside the silero-vad package) measures the share of
each file (and chunk) that is speech. A file with less than --min-speech-share of speech (default 0.05:
noise, music, hum, silence) gets verdict 'no-speech' and no score, since a deepfake detector's score of
non-speech means nothing; --score-without-speech scores it anyway (verdict from the score, with a note).

Files are streamed in chunks of --chunk-seconds (memory stays flat for hour-long files); the file score
is the duration-weighted mean of the chunk scores, and files longer than one chunk get a per-chunk
timeline (in JSON; the table and CSV list the spoof-like spans). Files that cannot be scored get
verdict 'error' with the reason; the others are still scored.

Without --model, the small default model bundled with spoofrl is used: it was trained on spoofrl's
built-in benchmark (real recordings as bona fide; vocoded copies and rule-based TTS as spoofs; no modern
neural TTS or voice conversion) and is a demonstration, not a production detector.

Ctrl-C stops scoring; the report of the files finished so far is still written (the others get
verdict 'error', reason 'interrupted') and the exit status is 130.

Exit status: 0 every file scored or no-speech (no-speech is an answer, not a failure); 1 some files
failed (verdict 'error'); 2 nothing could be run; 130 interrupted."""


def register(sub):
    p = sub.add_parser("detect", help="score your own audio files (higher score = more bona fide)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders (recursive) or quoted globs")
    add_model_option(p, "run or model folder (model.safetensors + config.yaml [+ calibration.json]); default: the "
                        "bundled default model (a demonstration)")
    add_format_option(p, ("table", "csv", "json"), "table (default; readable), csv (one row per file) or json "
                      "(model info + every file with its per-chunk timeline)")
    add_output_option(p)
    p.add_argument("--threshold", type=float, default=0.0, metavar="T",
                   help="verdict is bonafide when score >= T (default 0: even odds on log-odds or LLR; for an "
                        "LLR the Bayes threshold for a prior and costs is ln(Cfa*P(spoof) / (Cmiss*P(bona fide))), "
                        "e.g. ln(10*0.05 / (1*0.95)) = -0.642 for ASVspoof 5's costs)")
    p.add_argument("--chunk-seconds", type=float, default=4.0, metavar="S",
                   help="length of the scored chunks and timeline steps, 0.5 to 600 (default 4; use about the "
                        "training crop length)")
    add_batch_size_option(p, 16, "chunks per forward pass (default 16)")
    p.add_argument("--min-speech-share", type=float, default=DEFAULT_MIN_SPEECH_SHARE, metavar="F",
                   help=f"files with a smaller share of speech (0 to 1) get verdict no-speech and no score "
                        f"(default {DEFAULT_MIN_SPEECH_SHARE:g}; 0 scores every file)")
    p.add_argument("--score-without-speech", action="store_true",
                   help="score files with little or no speech anyway (verdict from the score; the speech share "
                        "and a note are still reported)")
    add_device_option(p)
    p.set_defaults(func=run)


def _render(loaded, results, opts, fmt: str) -> str:
    import json

    from spoofrl.detect import format_csv, format_table, report_dict
    if fmt == "json":
        # allow_nan=False: bare NaN is not JSON (the engine turns non-finite scores into per-file errors)
        return json.dumps(report_dict(loaded, results, opts), indent=2, allow_nan=False)
    return format_csv(loaded, results, opts) if fmt == "csv" else format_table(loaded, results, opts)


def run(args) -> int:
    from spoofrl.detect import DetectInterrupted, DetectOptions, detect_files, expand_inputs, load_detection_model
    opts = DetectOptions(threshold=args.threshold, chunk_seconds=args.chunk_seconds, batch_size=args.batch_size,
                         min_speech_share=args.min_speech_share,
                         score_without_speech=args.score_without_speech).validate()
    check_output_file(args.output, "--output")
    inputs = expand_inputs(args.paths)
    loaded = load_detection_model(args.model, args.device)
    try:
        results, interrupted = detect_files(loaded, inputs, opts), False
    except DetectInterrupted as stop:
        results, interrupted = stop.results, True
    write_report(_render(loaded, results, opts, args.format), args.output, "--output")
    failed = [r for r in results if r.failed]
    no_speech = sum(r.no_speech for r in results)
    if no_speech:
        print(f"spoofrl detect: {no_speech} of {len(results)} file(s) hold too little speech to score (verdict "
              f"'no-speech'; --score-without-speech scores them anyway)", file=sys.stderr)
    if interrupted:
        print(f"spoofrl detect: interrupted; the report holds the {len(results) - len(failed)} file(s) scored "
              f"before Ctrl-C", file=sys.stderr)
        return 130
    if failed:
        print(f"spoofrl detect: {len(failed)} of {len(results)} file(s) could not be scored (verdict 'error')",
              file=sys.stderr)
        return 1
    return 0
