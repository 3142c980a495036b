"""The semantic-cue probe (SDD-APALLM, arXiv 2601.23066) for each input option of the built-in ALM.

The prompt carries a "transcript" whose topic the training rows correlate with the label
(spoofrl.explain.semantic); each `alm.inputs` option (audio, spectrogram, both) is trained with answer-only
SFT (configs/train/alm-sft.yaml) and its greedy answers scored on the in-domain test rows with the planted
cue and with the flipped one. Accuracy that falls on the flipped set = the model reads the words.

    python benchmarks/probe_semantic_flip.py --benchmark data/spoofrl-benchmark --out runs/semantic --seeds 1
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from spoofrl.alm import load_alm
from spoofrl.audio import load_audio
from spoofrl.detect.explanations import explain_waves, summarise
from spoofrl.explain.semantic import PROMPT, semantic_flip_manifests
from spoofrl.training.config import load_train_config
from spoofrl.training.trainer import train

TRAIN, DEV, TEST = ["posttrain", "target_train"], ["posttrain_dev", "target_dev"], ["target_eval"]


def accuracy(run: Path, manifest: Path, subset: str) -> float:
    rows = [r for r in csv.DictReader(manifest.open()) if r["subset"] == subset]
    model = load_alm(run)
    waves = [load_audio(r["path"], model.cfg.sample_rate) for r in rows]
    prompts = [PROMPT.format(cue=r["cue"]) for r in rows]
    explained = explain_waves(model, waves, prompts, max_completion_length=8, batch_size=16)
    return summarise(explained, [r["label"] for r in rows])["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", required=True, help="a built-in benchmark folder (spoofrl data synth)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--inputs", default="audio,spectrogram,both")
    args = ap.parse_args()
    out = Path(args.out)
    planted, flipped = semantic_flip_manifests(Path(args.benchmark) / "manifest.csv", out / "data",
                                               train_subsets=TRAIN + DEV, test_subsets=TEST)
    table = {}
    for inputs in args.inputs.split(","):
        for seed in range(args.seeds):
            run = out / f"{inputs}-seed{seed}"
            if not (run / "summary.json").is_file():
                t = time.time()
                cfg = load_train_config("alm-sft", [
                    f"data.manifest={planted}", f"data.train_subsets={TRAIN}", f"data.dev_subsets={DEV}",
                    f"model.alm.inputs={inputs}", f"schedule.steps={args.steps}", f"seed={seed}"])
                cfg.generation.prompt = PROMPT   # its {cue} is filled from the manifest's cue column
                train(cfg, run, resume=(run / "last").is_dir())
                print(f"{inputs} seed {seed}: trained in {time.time() - t:.0f} s", flush=True)
            table.setdefault(inputs, []).append((accuracy(run, planted, TEST[0]),
                                                 accuracy(run, flipped, f"{TEST[0]}_flip")))
    print(f"\n{'inputs':12s} {'planted cue':>14s} {'flipped cue':>14s}   (greedy answer accuracy, {TEST[0]})")
    for inputs, rows in table.items():
        cells = []
        for k in (0, 1):
            values = [r[k] for r in rows]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
        print(f"{inputs:12s} {cells[0]:>14s} {cells[1]:>14s}")
    (out / "probe.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
