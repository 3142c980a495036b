"""`spoofrl detect PATH...`: score audio files (files, folders, globs) with a detector."""
from __future__ import annotations

import argparse
import sys

from spoofrl.cli.common import add_device_option

DESCRIPTION = """\
Score audio files with a deepfake detector. PATH may be files, folders (searched recursively for audio
files) or quoted globs ('data/**/*.flac'); any format spoofrl reads (wav, flac, ogg, mp3, and through
ffmpeg m4a/opus/webm/...), any sample rate or channel count (downmixed and resampled to the model's rate).

Higher score = more bona fide. Without calibration the score is the model's log-odds of bona fide;
when the model folder has calibration.json (`spoofrl calibrate`) it is a log-likelihood ratio (LLR).
p_spoof is the probability of spoof (for an LLR, at the prior stated in calibration.json). Verdict:
bonafide when score >= --threshold (default 0: even odds), else spoof.

Files are streamed in chunks of --chunk-seconds (memory stays flat for hour-long files); the file score
is the duration-weighted mean of the chunk scores, and files longer than one chunk get a per-chunk
timeline (in JSON; the table and CSV list the spoof-like spans). Files that cannot be scored get
verdict 'error' with the reason; the others are still scored.

Without --model, the small default model bundled with spoofrl is used: it was trained on synthetic
data only (spoofrl's built-in benchmark) and is a demonstration, not a production detector.

Exit status: 0 all files scored; 1 some files failed (verdict 'error'); 2 nothing could be run."""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def register(sub):
    p = sub.add_parser("detect", help="score your own audio files (higher score = more bona fide)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders (recursive) or quoted globs")
    p.add_argument("--model", metavar="RUN_DIR", help="run or model folder (model.safetensors + config.yaml "
                   "[+ calibration.json]); default: the bundled default model (synthetic training data)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table (default; readable), csv (one row per file) or json (model info + every file "
                        "with its per-chunk timeline)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--threshold", type=float, default=0.0, metavar="T",
                   help="verdict is bonafide when score >= T (default 0: even odds on log-odds or LLR; for an "
                        "LLR the Bayes threshold for a prior and costs is ln(Cfa*P(spoof) / (Cmiss*P(bona fide))), "
                        "e.g. ln(10*0.05 / (1*0.95)) = -0.642 for ASVspoof 5's costs)")
    p.add_argument("--chunk-seconds", type=_positive_float, default=4.0, metavar="S",
                   help="length of the scored chunks and timeline steps (default 4; use about the training "
                        "crop length)")
    p.add_argument("--batch-size", type=_positive_int, default=16, metavar="B", help="chunks per forward pass")
    add_device_option(p)
    p.set_defaults(func=run)


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from pathlib import Path
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def run(args) -> int:
    import json
    import math

    from spoofrl.detect import (DetectOptions, detect_files, expand_inputs, format_csv, format_table,
                                load_detection_model, report_dict)
    from spoofrl.errors import SpoofrlError
    if not math.isfinite(args.threshold):
        raise SpoofrlError(f"--threshold must be a finite number, got {args.threshold}")
    inputs = expand_inputs(args.paths)
    loaded = load_detection_model(args.model, args.device)
    opts = DetectOptions(threshold=args.threshold, chunk_seconds=args.chunk_seconds, batch_size=args.batch_size)
    results = detect_files(loaded, inputs, opts)
    if args.format == "json":
        text = json.dumps(report_dict(loaded, results, opts), indent=2)
    elif args.format == "csv":
        text = format_csv(loaded, results, opts)
    else:
        text = format_table(loaded, results, opts)
    _write(text, args.output)
    failed = [r for r in results if r.failed]
    if failed:
        print(f"spoofrl detect: {len(failed)} of {len(results)} file(s) could not be scored (verdict 'error')",
              file=sys.stderr)
        return 1
    return 0
