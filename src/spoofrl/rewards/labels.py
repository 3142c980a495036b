"""Rewards for a classifier's sampled labels: the bridge between label actions and the text reward API.

A two-class detector's GRPO policy samples class indices [B, N]; the rewards of `spoofrl.rewards` score
texts. Each sampled label reaches them as its name ("spoof" / "bonafide", the completion text) with the
utterance's label as the `label` column, so `answer` is the study's 1/0 label reward (arXiv 2603.02914).
"""
from __future__ import annotations

import torch

from spoofrl.data.manifest import LABEL_INDEX
from spoofrl.rewards.base import RewardContext, RewardSet

LABEL_NAMES = tuple(sorted(LABEL_INDEX, key=LABEL_INDEX.get))   # class index -> label name


class LabelRewards:
    """`grpo_loss`'s reward function over sampled labels [B, N], scored by a RewardSet on their names; the
    per-reward statistics of the last call are kept in `stats` for the logs."""

    def __init__(self, rewards: RewardSet):
        self.rewards = rewards
        self.stats: dict[str, float] = {}

    def __call__(self, actions: torch.Tensor, targets: torch.Tensor, **context) -> torch.Tensor:
        b, n = actions.shape[:2]
        flat = actions.reshape(b * n).tolist()
        labels = [LABEL_NAMES[t] for t in targets.tolist() for _ in range(n)]
        scores = self.rewards.score([LABEL_NAMES[a] for a in flat], [[a] for a in flat], None, {"label": labels},
                                    RewardContext(num_generations=n), shape=(b, n))
        self.stats = scores.stats
        return scores.total.to(actions.device)
