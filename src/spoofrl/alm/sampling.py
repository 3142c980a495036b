"""Next-token choice from logits: greedy, or sampling after temperature / top-k / top-p / min-p warping
(transformers' order and meanings)."""
from __future__ import annotations

import torch

from spoofrl.alm.config import SamplingConfig


def warp_logits(logits: torch.Tensor, s: SamplingConfig) -> torch.Tensor:
    """[M, V] float logits -> logits / temperature with the filtered-out tokens at -inf."""
    x = logits / s.temperature
    neg = float("-inf")
    if s.top_k:
        k = min(int(s.top_k), x.shape[-1])
        kth = torch.topk(x, k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, neg)
    if s.top_p < 1.0:
        ordered, order = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs      # mass of the more probable tokens
        drop = before >= s.top_p
        drop[..., 0] = False                              # the most probable token always stays
        x = x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), neg)
    if s.min_p:
        probs = torch.softmax(x, dim=-1)
        x = x.masked_fill(probs < s.min_p * probs.amax(-1, keepdim=True), neg)
    return x


def choose_tokens(logits: torch.Tensor, s: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """[M, V] logits -> [M] token ids (argmax when not sampling)."""
    if not s.do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(warp_logits(logits, s), dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
