"""`spoofrl train CONFIG [--set key=value ...] [--init RUN_DIR] [--resume] [--out DIR]`."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_device_option, add_out_dir_option, add_set_option

DESCRIPTION = """\
Train or fine-tune a detector with one of the objectives:
  sft            cross-entropy (class weights, label smoothing)
  grpo           GRPO with the detector's softmax over (spoof, bonafide) as the policy: G sampled labels (or
                 the exact expectation), rewards for right/wrong, group- or batch-normalised advantages,
                 clipping against an old policy, KL to the frozen initial model
  sft_then_grpo  SFT for objective.sft_steps, then GRPO
CONFIG is a recipe name in configs/train/ (sft, grpo, grpos, grpo-noneg, sft-then-grpo, posttrain,
finetune) or a YAML path; `spoofrl config train` lists every option.

The run folder gets config.yaml (fully resolved), model.safetensors (best on the dev set by EER; the
model scores as log-odds of bona fide: higher = more bona fide), last/ (resumable checkpoint), metrics.csv,
train.log, tb/ (TensorBoard) and, when training ends, summary.json.
Ctrl-C saves last/ and stops; `--resume` continues to the same result as an uninterrupted run. A file that
turns out unreadable mid-run stops it with one line naming the file; last/ keeps the steps done, so fix the
file and `--resume`.
Several processes / GPUs: torchrun --nproc_per_node N --no-python spoofrl train CONFIG ..."""


def register(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a detector (SFT, GRPO, SFT then GRPO)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="recipe name in configs/train/ or a YAML file")
    add_set_option(p)
    p.add_argument("--init", metavar="RUN_DIR", help="start from this model folder's weights (e.g. a post-training "
                                                     "run); its architecture is used and it is the GRPO reference")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint "
                                                         "(same config; --init may be left out)")
    add_out_dir_option(p, "run folder (default: runs/<config name>)")
    p.add_argument("--manifest", metavar="CSV", help="shortcut for --set data.manifest=CSV")
    add_device_option(p, default=None, help="shortcut for --set device=... ('auto', 'cpu', 'cuda')")
    p.add_argument("--stop-after", type=int, metavar="STEPS", help="save last/ and exit after this many steps "
                                                                   "(for time-limited job slots; continue with "
                                                                   "--resume)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from spoofrl.errors import ConfigError
    from spoofrl.training import load_train_config, train
    overrides = list(args.overrides)
    if args.manifest:
        overrides.append(f"data.manifest={args.manifest}")
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_train_config(args.config, overrides)
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError(f"--stop-after must be at least 1, got {args.stop_after}")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.resume and not args.out:
        raise ConfigError("--resume needs --out (the run folder to continue)")
    train(cfg, out, init=args.init, resume=args.resume, stop_after=args.stop_after)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the whole run
        print(out)
    return 0
