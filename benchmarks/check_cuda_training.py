"""The CUDA paths of training, end to end through the real trainer on a toy manifest made here (no data or network
needed): the built-in SmallAlm under precision bf16 (autocast), and a tiny random Qwen2-Audio with LoRA in
bf16 weights (model.hf.dtype auto), each an SFT stage then a GRPO stage, then --resume of a run stopped inside
GRPO. Prints, per run: the weights' dtype, seconds per step, peak CUDA memory, the best dev error, and whether
the resumed run ended with the uninterrupted run's weights. On a machine without CUDA it runs on the CPU (fp32)
as a smoke test of the script.

    python benchmarks/check_cuda_training.py            # part of scripts/gpu_checks.sh
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench_fsdp import toy_manifest


def generation_config(manifest: Path, device: str, model: dict, steps: int) -> dict:
    return {"task": "generation", "device": device, "precision": "bf16", "model": model,
            "data": {"manifest": str(manifest), "train_subsets": ["train"], "dev_subsets": ["dev"],
                     "crop_seconds": 0.5, "batch_size": 4},
            "generation": {"prompt": "<audio> low or high?", "metric": "answer"},
            "objective": {"max_completion_length": 8},
            "stages": [{"objective": "sft", "steps": steps // 2},
                       {"objective": "grpo", "options": {"num_generations": 4, "micro_batch_size": 2,
                                                         "beta": 0.04}}],
            "optim": {"lr": 1e-3}, "schedule": {"steps": steps, "eval_every": steps // 2, "log_every": 5}}


def run(name: str, cfg: dict, root: Path, device: torch.device) -> dict:
    from safetensors.torch import load_file

    from spoofrl.training import Trainer, load_train_config
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    trainer = Trainer(load_train_config(cfg), root / name)
    trainer.run()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    summary = json.loads((root / name / "summary.json").read_text())
    dtype = str(next(trainer.model.parameters()).dtype)
    steps = summary["steps"]
    part = root / f"{name}-resumed"
    Trainer(load_train_config(cfg), part, stop_after=steps - 2).run()
    Trainer(load_train_config(cfg), part, resume=True).run()
    a, b = (load_file(str(folder / "last" / "model.safetensors")) for folder in (root / name, part))
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return {"run": name, "dtype": dtype, "s_per_step": round(summary["seconds"] / steps, 3), "wall_s": round(wall, 1),
            "peak_cuda_mb": None if peak is None else round(peak, 1), "best_dev_error": summary["best_dev_error"],
            "resume_bit_identical": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="steps per run (half SFT, half GRPO)")
    ap.add_argument("--out", help="folder for the runs and results.json (default: a temp folder)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(args.out or tempfile.mkdtemp(prefix="check-cuda-"))
    root.mkdir(parents=True, exist_ok=True)
    manifest = toy_manifest(root / "data")
    from spoofrl.alm.hf.tiny import build_qwen2_audio
    build_qwen2_audio(root / "qwen2-audio")
    small = {"alm": {"conv_channels": 64, "encoder_layers": 1, "lm_layers": 2, "lm_width": 128},
             "tokenizer": {"vocab_size": 400}}
    hf = {"hf": {"path": str(root / "qwen2-audio"), "dtype": "auto", "lora": {"r": 8, "alpha": 16}}}
    rows = [run("small-alm-bf16", generation_config(manifest, device.type, small, args.steps), root, device),
            run("qwen2-audio-lora", generation_config(manifest, device.type, hf, args.steps), root, device)]
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "bf16_supported": device.type == "cuda" and torch.cuda.is_bf16_supported(),
            "rows": rows}
    (root / "results.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
