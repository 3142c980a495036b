"""What an objective is: one batch -> (loss, statistics), with what it needs from the trainer.

An objective turns one batch into a loss and statistics, using `ModelAccess` for the logits of the current
model (with gradient) and, when it needs them, of the old policy and the frozen reference model. It tells the
trainer which of those it needs (`needs_old_policy`, `needs_reference`), so nothing unused is kept, and how a
class-balanced loss (data.balance: loss) reaches it (`sample_weighted`: per-utterance weights passed to each
call; otherwise the class weights given at construction).
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from spoofrl.data.dataset import Batch
from spoofrl.training.forward import ModelAccess

Stats = dict[str, float]


class Objective(Protocol):
    name: str
    needs_old_policy: bool
    needs_reference: bool
    sample_weighted: bool   # True: class balance as per-utterance weights in each call

    def __call__(self, batch: Batch, access: ModelAccess, sample_weights: torch.Tensor | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def probability_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Entropy, mean probability of the true class and accuracy of a batch's logits (for the logs)."""
    logp = F.log_softmax(logits.detach().float(), dim=-1)
    p_true = logp.exp().gather(1, targets.view(-1, 1)).squeeze(1)
    return {"entropy": -(logp.exp() * logp).sum(-1).mean(), "p_true": p_true.mean(),
            "accuracy": (logits.detach().argmax(-1) == targets).float().mean()}
