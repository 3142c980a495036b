"""`AudioLM`: the interface every audio-LLM backend offers; the GRPO core and generative SFT use only this.

SmallAlm (alm.model) implements it; a wrapper of a Hugging Face audio LLM (Qwen2-Audio, Qwen2.5-Omni, Granite
Speech) would implement the same methods with the same shapes and meanings (see docs/alm.md).
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from spoofrl.alm.batch import AlmBatch, Completions
from spoofrl.alm.config import SamplingConfig


@runtime_checkable
class AudioLM(Protocol):
    eos_token_id: int
    pad_token_id: int

    @property
    def device(self) -> torch.device: ...

    def generate(self, batch: AlmBatch, num: int = 1, sampling: SamplingConfig | None = None, *,
                 generator: torch.Generator | None = None) -> Completions:
        """`num` completions per item: ids / mask [B, N, T], text, truncated [B, N], sampling-time logprobs."""

    def token_logprobs(self, batch: AlmBatch, completions: Completions, *, grad: bool,
                       temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(logp [B, N, T] float32, 0 where masked; mask [B, N, T]): one teacher-forced forward, audio included."""

    def sft_loss(self, batch: AlmBatch, targets_text: Sequence[str] | None = None, *,
                 reduction: str = "token") -> torch.Tensor:
        """Cross-entropy over the target tokens (+ EOS) only."""

    def completions_from_text(self, texts: Sequence[str] | Sequence[Sequence[str]]) -> Completions:
        """Given texts as Completions (each + EOS)."""

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[str]]:
        """[B, N, T] ids -> texts, special tokens removed."""
