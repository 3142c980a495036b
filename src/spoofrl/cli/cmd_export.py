"""`spoofrl export`: a trained model as an ONNX file for inference, verified against PyTorch."""
from __future__ import annotations

from spoofrl.cli.common import add_deprecated_alias, add_output_option, require

DESCRIPTION = """\
Export a trained model (a run folder or model folder: model.safetensors + config.yaml) to ONNX, then run
the file with onnxruntime and PyTorch on the same random batch and compare.

The ONNX model takes `wave` float32 [batch, samples] (zero-padded, at the model's sample rate, usually 16 kHz)
and `lengths` int64 [batch] (true lengths), and returns `logits` [batch, 2] over (spoof, bonafide) and
`score` [batch] = log-odds of bona fide (higher = more bona fide; raw, calibration.json is not applied).
Batch and sample axes are dynamic, except for AASIST, whose graph is fixed to the export length
(--seconds); feed it inputs cropped or zero-padded to that length.
"""


def register(sub):
    import argparse
    p = sub.add_parser("export", help="export a trained model to ONNX (checked against PyTorch)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run or model folder (model.safetensors + config.yaml)")
    # Not required=True for argparse: the old spelling --onnx fills it too (checked in run).
    add_deprecated_alias(p, "--onnx", add_output_option(p, "the ONNX file to write (required)", metavar="OUT.onnx"))
    p.add_argument("--seconds", type=float, default=4.0,
                   help="length of the example input traced at export (default 4, at least 0.1; the only "
                        "accepted length for models without a dynamic time axis)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version, 14 to 20 (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest accepted absolute difference between onnxruntime and PyTorch logits/scores "
                        "(default 1e-3)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from spoofrl.errors import SpoofrlError
    from spoofrl.models import load_model
    from spoofrl.models.export import check_onnx, export_onnx

    out = Path(require(args.output, "--output OUT.onnx"))
    if out.suffix != ".onnx":
        raise SpoofrlError(f"{out}: the output file should end in .onnx")
    if args.seconds <= 0 or args.tolerance <= 0:
        raise SpoofrlError("--seconds and --tolerance must be positive")
    model = load_model(args.run_dir, "cpu")
    report = export_onnx(model, out, seconds=args.seconds, opset=args.opset)
    size_mb = out.stat().st_size / 1e6
    shape = "[batch, samples]" if report.dynamic_time else f"[batch, {report.samples}] (fixed length)"
    print(f"wrote {out} ({size_mb:.1f} MB): wave {shape} float32 at {model.cfg.sample_rate} Hz + lengths "
          f"[batch] -> logits [batch, 2] (spoof, bonafide), score [batch] (log-odds of bona fide; "
          f"higher = more bona fide)")
    if args.no_check:
        return 0
    report = check_onnx(model, report, tolerance=args.tolerance)
    batches = " and ".join(f"{report.check_batch} x {n / model.cfg.sample_rate:.2f} s" for n in report.check_lengths)
    line = (f"onnxruntime vs PyTorch on random batches of {batches} (rows zero-padded to different lengths): "
            f"max abs diff {report.max_abs_diff:.2e} (tolerance {report.tolerance:g})")
    if not report.passed:
        raise SpoofrlError(f"{line}: the ONNX model does not reproduce PyTorch; {out} left for inspection")
    print(line + ": OK")
    return 0
