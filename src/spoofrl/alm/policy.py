"""`AlmPolicy`: an audio LLM as a `spoofrl.rl.Policy`, so `spoofrl.rl.grpo_loss` trains it unchanged.

Actions are token sequences [B, N, T] (the pad id after EOS); their mask (up to and including the first EOS)
is recomputed from the ids, so any [B, N, T] ids can be scored, e.g. reference answers appended for
mixed-policy GRPO (`reference_actions`). Log-probabilities are taken at the sampling temperature, as TRL does.
The last generated `Completions` (with texts, truncation flags and sampling-time log-probs) stay in `last`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from spoofrl.alm.batch import AlmBatch, Completions, completion_mask
from spoofrl.alm.config import SamplingConfig
from spoofrl.alm.model import SmallAlm
from spoofrl.rl.policy import LogProbs, Policy


Scorer = Callable[[AlmBatch, Completions, bool, float], tuple[torch.Tensor, torch.Tensor]]


class AlmPolicy(Policy):
    """`scorer(batch, completions, grad, temperature) -> (logp, mask)` replaces model.token_logprobs when
    given: the trainer scores through its DDP wrapper, or with a parameter snapshot (old / reference policy).
    `no_sync`: the DDP wrapper's, so micro-batches accumulate gradients without syncing."""

    def __init__(self, model: SmallAlm, sampling: SamplingConfig | None = None, *, grad: bool = True,
                 scorer: Scorer | None = None, no_sync: Callable | None = None):
        self.model = model
        self.sampling = sampling or SamplingConfig()
        self.grad = grad
        self.scorer = scorer
        if no_sync is not None:
            self.no_sync = no_sync
        self.last: Completions | None = None

    def sample(self, inputs: AlmBatch, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        self.last = self.model.generate(inputs, num, self.sampling, generator=generator)
        return self.last.ids

    def completions(self, actions: torch.Tensor) -> Completions:
        """Completions of given ids [B, N, T]: mask from the first EOS, texts decoded."""
        mask = completion_mask(actions, self.model.eos_token_id)
        truncated = ~(actions == self.model.eos_token_id).any(-1)
        return Completions(actions, mask, self.model.decode(actions, mask), truncated)

    def log_prob(self, inputs: AlmBatch, actions: torch.Tensor) -> LogProbs:
        mask = completion_mask(actions, self.model.eos_token_id)
        comps = Completions(actions, mask, [], torch.zeros(actions.shape[:2], dtype=torch.bool))
        grad, t = self.grad and torch.is_grad_enabled(), self.sampling.temperature
        if self.scorer is not None:
            logp, mask = self.scorer(inputs, comps, grad, t)
        else:
            logp, mask = self.model.token_logprobs(inputs, comps, grad=grad, temperature=t)
        return LogProbs(logp, mask)

    def decode(self, actions: torch.Tensor) -> list[list[str]]:
        return self.model.decode(actions)

    def reference_actions(self, texts: Sequence[str], length: int | None = None) -> torch.Tensor:
        """[B, 1, T] ids of one reference text per item (+ EOS), padded or cut to `length` tokens."""
        ids = self.model.completions_from_text(list(texts)).ids
        if length is not None:
            ids = ids[..., :length] if ids.shape[-1] >= length else torch.nn.functional.pad(
                ids, (0, length - ids.shape[-1]), value=self.model.pad_token_id)
        return ids.to(self.model.device)
