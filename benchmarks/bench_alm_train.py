"""Training step cost of audio LLMs: generative SFT vs GRPO (G completions per item), step time and peak memory.

Each row runs in its own process (peak RSS, or peak CUDA memory, is then that row's alone) on one fixed
in-memory batch, through the objectives the trainer uses (`GenerativeSFT`, `GenerativeGRPO`: rollout with
the KV cache, rewards, reference log-probs, micro-batched loss, optimizer steps), so data loading is left out.
Models: the built-in SmallAlm (config `alm-sft`'s architecture) and, with --hf, tiny random Hugging Face audio
LLMs with LoRA (built as tests/test_alm_hf.py builds them).

    python benchmarks/bench_alm_train.py --threads 2 --batch 4 --G 8 --tokens 16 --steps 4
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROWS = ("sft", "grpo", "grpo mu=2", "grpo mb=1")


def small_alm(device: torch.device):
    from spoofrl.alm import build_alm, train_tokenizer
    from spoofrl.alm.config import AlmConfig
    from spoofrl.config import from_dict, load_yaml
    section = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "train" / "alm-sft.yaml")["model"]
    tokenizer = train_tokenizer(["<answer>bonafide</answer>", "<answer>spoof</answer>", "Is this real?"],
                                vocab_size=400, extra_tokens=section["tokenizer"]["extra_tokens"])
    return build_alm(from_dict(AlmConfig, section["alm"]), tokenizer, device=device)


def hf_alm(kind: str, device: torch.device):
    """A tiny random Hugging Face audio LLM (spoofrl.alm.hf.tiny) with LoRA r 8, loaded from a temp folder."""
    import tempfile

    from spoofrl.alm.hf import LoraOptions, load_hf_alm
    from spoofrl.alm.hf.tiny import BUILDERS
    folder = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    torch.manual_seed(0)
    BUILDERS[kind](folder)
    return load_hf_alm(folder, lora=LoraOptions(r=8, alpha=16), device=device)


def batch(size: int, seconds: float, device: torch.device):
    from spoofrl.alm import AlmBatch
    g = torch.Generator().manual_seed(0)
    waves = [0.1 * torch.randn(int(seconds * 16000), generator=g) for _ in range(size)]
    labels = ["bonafide" if i % 2 else "spoof" for i in range(size)]
    return AlmBatch.from_waves(waves, "<audio>\nIs this real?", references=[f"<answer>{x}</answer>" for x in labels],
                               label=labels).to(device)


class Update:
    """The trainer's update (backward, clip-free optimizer step), for objectives outside a run."""

    def __init__(self, optimizer):
        self.optimizer, self.step_index, self.grad_norms = optimizer, 0, []

    def backward(self, loss):
        loss.backward()

    def step(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_norms.append(0.0)
        return 0.0


def run_row(row: str, args) -> dict:
    from spoofrl.config import from_dict
    from spoofrl.training.config import ObjectiveConfig
    from spoofrl.training.forward import ParamSnapshot
    from spoofrl.training.objectives.generative_grpo import GenerativeGRPO
    from spoofrl.training.objectives.generative_sft import GenerativeSFT
    from spoofrl.training.tasks.generation import AlmTrainForward, GenerationAccess
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = (small_alm(device) if args.model == "small" else hf_alm(args.model, device)).train()
    forward = AlmTrainForward(model)
    task = SimpleNamespace(model=model, forward=forward, wrapped=forward)
    data = batch(args.batch, args.seconds, device)
    options = {"max_completion_length": args.tokens, "num_generations": args.G, "beta": 0.04,
               "rewards": [{"name": "answer"}, {"name": "format", "weight": 0.1,
                                                "options": {"pattern": "^<answer>(bonafide|spoof)</answer>$"}}]}
    if row == "grpo mu=2":
        options["num_iterations"] = 2
    if row == "grpo mb=1":
        options["micro_batch_size"] = 1
    cfg = from_dict(ObjectiveConfig, options, prefix="objective")
    objective = GenerativeSFT(cfg) if row == "sft" else GenerativeGRPO(cfg)
    access = GenerationAccess(task, ParamSnapshot.of(model) if objective.needs_reference else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    eos = model.logit_bias[model.eos_token_id].item()
    model.logit_bias[model.eos_token_id] = float("-inf")   # every completion runs `tokens` tokens
    times = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generator = torch.Generator(device=device).manual_seed(step)
        if row == "sft":
            loss, _ = objective(data, access, None, generator)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            objective(data, access, None, generator, Update(optimizer))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:    # the first step warms up
            times.append(time.perf_counter() - start)
    model.logit_bias[model.eos_token_id] = eos
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"row": row, "step_s": statistics.median(times), "peak_mb": round(peak, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="items per step")
    ap.add_argument("--G", type=int, default=8, help="completions per item")
    ap.add_argument("--tokens", type=int, default=16, help="completion length (EOS disabled)")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio per item")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="small", choices=["small", "qwen2_audio", "qwen2_5_omni_thinker",
                                                           "granite_speech"],
                    help="the built-in SmallAlm (alm-sft's architecture) or a tiny HF model with LoRA")
    ap.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)   # one row, in a child process
    args = ap.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(args.row, args)))
        return
    results = []
    for row in ROWS:
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--row", row]
        results.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    sft = results[0]["step_s"]
    print(f"{args.model} ({results[0]['parameters'] / 1e6:.2f} M parameters, {results[0]['trainable'] / 1e6:.3f} M "
          f"trained), batch {args.batch}, G {args.G}, "
          f"{args.tokens} tokens, {args.seconds} s audio, {args.threads} threads, {args.device}")
    print(f"{'row':12s} {'step s':>8s} {'x sft':>6s} {'peak MB':>8s}")
    for r in results:
        print(f"{r['row']:12s} {r['step_s']:8.3f} {r['step_s'] / sft:6.2f} {r['peak_mb']:8.0f}")


if __name__ == "__main__":
    main()
