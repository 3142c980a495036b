"""Micro-benchmark of the small ALM: generation throughput, teacher-forced scoring and SFT step time.

    python -m spoofrl.alm.bench [--items 4] [--num 8] [--tokens 32] [--threads 2] [--device auto]

Generation runs `tokens` steps for every row (EOS is made impossible for the measurement), so tokens/s
counts items * num * tokens generated tokens. Numbers are printed, never asserted.
"""
from __future__ import annotations

import argparse
import time

import torch

from spoofrl.alm.config import AlmConfig, SamplingConfig
from spoofrl.alm.model import build_alm
from spoofrl.alm.tokenizer import train_tokenizer
from spoofrl.alm.toy import toy_batch, toy_texts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(*, items: int = 4, num: int = 8, tokens: int = 32, sft_batch: int = 8, repeats: int = 3,
              device: str | torch.device = "cpu", cfg: AlmConfig | None = None) -> dict[str, float]:
    device = torch.device(device)
    model = build_alm(cfg or AlmConfig(), train_tokenizer(toy_texts(), vocab_size=300), device=device)
    batch = toy_batch(items, seed=1).to(device)
    sampling = SamplingConfig(max_completion_length=tokens, seed=0)
    eos_bias = model.logit_bias[model.eos_token_id].item()
    model.logit_bias[model.eos_token_id] = float("-inf")
    try:
        model.eval()
        comps = model.generate(batch, num, sampling)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            comps = model.generate(batch, num, sampling)
        _sync(device)
        gen_s = (time.perf_counter() - start) / repeats
        model.train()
        start = time.perf_counter()
        for _ in range(repeats):
            logp, _ = model.token_logprobs(batch, comps, grad=True)
            logp.sum().backward()
        _sync(device)
        score_s = (time.perf_counter() - start) / repeats
    finally:
        model.logit_bias[model.eos_token_id] = eos_bias
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sft = toy_batch(sft_batch, seed=2).to(device)
    times = []
    for step in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        loss = model.sft_loss(sft)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if step >= 2:
            times.append(time.perf_counter() - start)
    generated = items * num * int(comps.mask.sum(-1).max())
    return {"generate_s": gen_s, "generate_tokens_per_s": generated / gen_s, "rows": items * num,
            "tokens_per_row": int(comps.mask.sum(-1).max()), "score_fwd_bwd_s": score_s,
            "sft_step_s": sum(times) / len(times), "sft_batch": sft_batch,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=4)
    ap.add_argument("--num", type=int, default=8, help="completions per item (G)")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--sft-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from spoofrl.device import pick_device
    out = benchmark(items=args.items, num=args.num, tokens=args.tokens, sft_batch=args.sft_batch,
                    device=pick_device(args.device))
    for key, value in out.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
