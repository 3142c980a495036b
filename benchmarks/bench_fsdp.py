"""`parallel: ddp` vs `parallel: fsdp` on two CPU processes (gloo): what each process holds, and what a step costs.

Trains the built-in SmallAlm (a wider LM than the recipes', so that its weights dominate) through the real
trainer, an SFT stage then a GRPO stage (G completions, micro-batches, a k3 reference snapshot), once per mode,
on a toy manifest of tones written to a temp folder. Per process it reports the bytes of the parameters, of the
optimizer state (AdamW moments) and of the reference snapshot that the process holds (its shards under fsdp),
the wall time per step (summary.json) and peak RSS; and the largest weight difference between the two modes'
models after the SFT stage and at the end (they train on the same per-process batches).

    python benchmarks/bench_fsdp.py --width 512 --layers 4 --steps 6
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch._dynamo  # noqa: F401  (optimizers import it; loaded before the fork)
import torch.distributed.checkpoint.state_dict  # noqa: F401
import torch.distributed.fsdp  # noqa: F401
import torch.multiprocessing as mp
import torch.utils.tensorboard  # noqa: F401

WORLD = 2


def toy_manifest(root: Path, n_train: int = 32, n_dev: int = 4) -> Path:
    """Low tones (bonafide) and high noise (spoof), 0.5 s at 16 kHz."""
    (root / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    lines = ["path,label,attack,source,condition,subset"]
    for split, n in (("train", n_train), ("dev", n_dev)):
        for i in range(n):
            low = i % 2 == 0
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) if low else \
                0.1 * np.diff(rng.standard_normal(8001))
            path = f"wav/{split}_{i}.wav"
            sf.write(root / path, wave.astype(np.float32), 16000)
            lines.append(f"{path},{'bonafide' if low else 'spoof'},{'-' if low else 'hp'},toy,-,{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def config(manifest: Path, args, parallel: str) -> dict:
    width = args.width
    return {
        "task": "generation", "parallel": parallel, "device": "cpu", "threads": args.threads,
        "model": {"alm": {"conv_channels": 64, "encoder_layers": 0, "lm_layers": args.layers, "lm_width": width,
                          "lm_heads": 8, "lm_kv_heads": 4, "lm_ffn": 2 * width, "tie_embeddings": False},
                  "tokenizer": {"vocab_size": 400}},
        "data": {"manifest": str(manifest), "train_subsets": ["train"], "dev_subsets": ["dev"],
                 "crop_seconds": 0.5, "batch_size": 4},
        "generation": {"prompt": "<audio> low or high?", "metric": "answer"},
        "objective": {"max_completion_length": 8},
        "stages": [{"objective": "sft", "steps": args.steps // 2},
                   {"objective": "grpo", "options": {"num_generations": 4, "micro_batch_size": 2, "beta": 0.04}}],
        "optim": {"lr": 1e-3}, "schedule": {"steps": args.steps, "eval_every": args.steps, "log_every": 1}}


def local_bytes(tensors) -> int:
    """Bytes this process holds of these tensors (a DTensor's local shard)."""
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def worker(rank: int, parallel: str, port: int, manifest: str, out: str, args) -> None:
    import torch.distributed as dist

    from spoofrl.training import Trainer, load_train_config
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SPOOFRL_NO_PROGRESS="1")
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    run = Path(out) / parallel
    start = time.perf_counter()
    trainer = Trainer(load_train_config(config(Path(manifest), args, parallel)), run)
    trainer.run()
    wall = time.perf_counter() - start
    opt_state = [v for s in trainer.optimizer.state.values() for v in s.values()
                 if isinstance(v, torch.Tensor) and v.dim() > 0]
    full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v.detach().clone()
            for k, v in trainer.model.state_dict().items()}
    summary = json.loads((run / "summary.json").read_text())
    result = {
        "params": sum(p.numel() for p in full.values()),
        "param_bytes": local_bytes(trainer.model.parameters()),
        "optimizer_bytes": local_bytes(opt_state),
        "reference_bytes": local_bytes(trainer.reference.tensors.values()) if trainer.reference else 0,
        "s_per_step": summary["seconds"] / summary["steps"], "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch.save(full, Path(out) / f"{parallel}_rank{rank}.pt")
    (Path(out) / f"{parallel}_rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=512, help="LM hidden size")
    ap.add_argument("--layers", type=int, default=4, help="LM decoder layers")
    ap.add_argument("--steps", type=int, default=6, help="training steps (half SFT, half GRPO)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fsdp-"))
    manifest = toy_manifest(root / "data")
    for parallel in ("ddp", "fsdp"):   # one mode per pair of processes: the peak RSS is that mode's
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(worker, args=(parallel, port, str(manifest), str(root / "runs"), args), nprocs=WORLD,
                           join=True, start_method="fork")
    ranks = [{m: json.loads((root / "runs" / f"{m}_rank{r}.json").read_text()) for m in ("ddp", "fsdp")}
             for r in range(WORLD)]
    a, b = (torch.load(root / "runs" / f"{m}_rank0.pt", weights_only=True) for m in ("ddp", "fsdp"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    from safetensors.torch import load_file
    sa, sb = (load_file(str(root / "runs" / m / "stage1" / "model.safetensors")) for m in ("ddp", "fsdp"))
    sft_diff = max(float((sa[k] - sb[k]).abs().max()) for k in sa)
    print(f"SmallAlm LM width {args.width} x {args.layers} layers, {ranks[0]['ddp']['params'] / 1e6:.2f} M "
          f"parameters; {args.steps} steps (SFT then GRPO, G 4, micro-batch 2), 2 gloo processes x "
          f"{args.threads} thread(s)")
    print("| mode | rank | parameters MB | AdamW state MB | reference snapshot MB | s / step | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("ddp", "fsdp"):
        for r, res in enumerate(ranks):
            x = res[mode]
            print(f"| {mode} | {r} | {x['param_bytes'] / 2**20:.1f} | {x['optimizer_bytes'] / 2**20:.1f} | "
                  f"{x['reference_bytes'] / 2**20:.1f} | {x['s_per_step']:.2f} | {x['peak_rss_mb']:.0f} |")
    print(f"largest |ddp - fsdp| weight difference: {sft_diff:.3g} after the SFT stage, {diff:.3g} at the end")


if __name__ == "__main__":
    main()
