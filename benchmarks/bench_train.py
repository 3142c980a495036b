"""Training step cost: GRPO variants vs SFT, per model preset.

One optimizer step (forward, loss, backward, AdamW update) on a fixed random batch held in memory, so data
loading is left out and only the objective's cost is compared. GRPO runs the study's settings (G = 64,
clipping against an old policy, KL to a frozen reference with beta 0.04); the old policy and the reference
are parameter snapshots evaluated on the shared front-end output when the front-end is frozen. The
reference-logit cache is off here (worst case: every batch is new).

    python benchmarks/bench_train.py --presets logmel-linear resnet-logmel --batch 16 --seconds 4 --steps 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from spoofrl.data.dataset import Batch
from spoofrl.models import build_model, load_model_preset
from spoofrl.training.config import ObjectiveConfig
from spoofrl.training.forward import ModelAccess, ParamSnapshot, TrainForward, frontend_is_frozen
from spoofrl.training.objectives import build_objective

VARIANTS = {
    "sft": ("sft", {}),
    "grpo (G=64, old+ref)": ("grpo", {"old_policy_refresh_steps": 1000}),
    "grpos (G=64, ref, no old)": ("grpo", {"epsilon": None}),
    "grpo beta=0 (no ref)": ("grpo", {"beta": 0.0, "epsilon": None}),
    "grpo exact (old+ref)": ("grpo", {"estimator": "exact", "old_policy_refresh_steps": 1000}),
}


def make_batch(batch: int, seconds: float, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    wave = 0.1 * torch.randn(batch, n, generator=g)
    return Batch(wave, torch.full((batch,), n), torch.randint(0, 2, (batch,), generator=g), torch.arange(batch),
                 torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.bool)).to(device)


def time_variant(preset: str, stage: str, options: dict, batch: Batch, steps: int, warmup: int,
                 device: torch.device) -> list[float]:
    torch.manual_seed(0)
    model = build_model(load_model_preset(preset)).to(device)
    cfg = ObjectiveConfig(name=stage, **options)
    objective = build_objective(cfg, stage)
    access = ModelAccess(TrainForward(model), model)
    access.ref = ParamSnapshot.of(model) if objective.needs_reference else None
    access.old = ParamSnapshot.of(model) if objective.needs_old_policy else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        access.prepare(batch)
        loss, _ = objective(batch, access, None, torch.Generator(device=device).manual_seed(step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["logmel-linear", "resnet-logmel"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = make_batch(args.batch, args.seconds, device)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} x {args.seconds:g} s, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'preset':<16} {'objective':<28} {'ms/step':>9} {'x SFT':>7}")
    for preset in args.presets:
        model = build_model(load_model_preset(preset))
        frozen = frontend_is_frozen(model)
        sft_ms = None
        for name, (stage, options) in VARIANTS.items():
            ms = 1000 * statistics.median(time_variant(preset, stage, options, batch, args.steps, args.warmup,
                                                       device))
            sft_ms = sft_ms or ms
            print(f"{preset:<16} {name:<28} {ms:9.1f} {ms / sft_ms:7.2f}")
        print(f"{'':<16} (front-end {'frozen: features shared' if frozen else 'trained: full forwards'})")


if __name__ == "__main__":
    main()
