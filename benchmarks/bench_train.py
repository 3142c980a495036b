"""Training step cost: GRPO variants vs SFT, per model preset.

One optimizer step (forward, loss, backward, AdamW update) on a fixed random batch held in memory, so data
loading is left out and only the objective's cost is compared. GRPO runs the study's settings (G = 64,
clipping against an old policy, KL to a frozen reference with beta 0.04); the old policy and the reference
are parameter snapshots evaluated on the shared front-end output when the front-end is frozen. The
reference-logit cache is off (worst case: every batch is new) except in the last, "ref cached" row.

    python benchmarks/bench_train.py --threads 2 --batch 8 --steps 6 --presets logmel-linear resnet-logmel ssl-tiny-ffn-fusion
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from spoofrl.data.dataset import Batch
from spoofrl.models import build_model, load_model_preset
from spoofrl.training.config import ObjectiveConfig
from spoofrl.training.forward import LogitsCache, ModelAccess, ParamSnapshot, TrainForward, frontend_is_frozen
from spoofrl.training.objectives import build_objective

VARIANTS = {
    "sft": ("sft", {}),
    "grpo (G=64, old+ref)": ("grpo", {"old_policy_refresh_steps": 1000}),
    "grpos (G=64, ref, no old)": ("grpo", {"epsilon": None}),
    "grpo beta=0 (no ref)": ("grpo", {"beta": 0.0, "epsilon": None}),
    "grpo exact (old+ref)": ("grpo", {"estimator": "exact", "old_policy_refresh_steps": 1000}),
    # the same batch every step, as when inputs repeat (no augmentation, crop at the file start): the
    # reference runs once, later steps read its logits from the cache
    "grpo (old+ref), ref cached": ("grpo", {"old_policy_refresh_steps": 1000, "_ref_cache": True}),
}


def make_batch(batch: int, seconds: float, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    wave = 0.1 * torch.randn(batch, n, generator=g)
    return Batch(wave, torch.full((batch,), n), torch.randint(0, 2, (batch,), generator=g), torch.arange(batch),
                 torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.bool)).to(device)


class Variant:
    """One objective on its own copy of the model, optimiser and policy snapshots."""

    def __init__(self, preset: str, stage: str, options: dict, batch: Batch, device: torch.device):
        torch.manual_seed(0)
        self.model = build_model(load_model_preset(preset)).to(device)
        options = dict(options)
        cached = options.pop("_ref_cache", False)
        cfg = ObjectiveConfig(name=stage, **options)
        self.objective = build_objective(cfg, stage)
        cache = LogitsCache(len(batch), 2, device) if cached else None
        self.access = ModelAccess(TrainForward(self.model), self.model, ref_cache=cache)
        self.access.ref = ParamSnapshot.of(self.model) if self.objective.needs_reference else None
        self.access.old = ParamSnapshot.of(self.model) if self.objective.needs_old_policy else None
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4)
        self.model.train()
        self.batch, self.device, self.times = batch, device, []

    def step(self, index: int, keep: bool) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        self.access.prepare(self.batch)
        loss, _ = self.objective(self.batch, self.access, None,
                                 torch.Generator(device=self.device).manual_seed(index))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 100.0)
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if keep:
            self.times.append(time.perf_counter() - t0)


def time_variants(preset: str, batch: Batch, steps: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median ms per step of every variant. Variants take turns step by step, so a change in the load of a
    shared machine hits all of them alike and the ratios to SFT stay fair."""
    variants = {name: Variant(preset, stage, options, batch, device) for name, (stage, options) in VARIANTS.items()}
    for index in range(warmup + steps):
        for variant in variants.values():
            variant.step(index, keep=index >= warmup)
    return {name: 1000 * statistics.median(v.times) for name, v in variants.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["logmel-linear", "resnet-logmel"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = make_batch(args.batch, args.seconds, device)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} x {args.seconds:g} s, "
          f"median of {args.steps} steps after {args.warmup} warm-up, variants interleaved")
    print(f"{'preset':<16} {'objective':<28} {'ms/step':>9} {'x SFT':>7}")
    for preset in args.presets:
        model = build_model(load_model_preset(preset))
        frozen = frontend_is_frozen(model)
        times = time_variants(preset, batch, args.steps, args.warmup, device)
        for name, ms in times.items():
            print(f"{preset:<16} {name:<28} {ms:9.1f} {ms / times['sft']:7.2f}")
        print(f"{'':<16} (front-end {'frozen: features shared' if frozen else 'trained: full forwards'})")


if __name__ == "__main__":
    main()
