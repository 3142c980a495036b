"""GRPO core over per-sample log-probabilities of any action (class labels or token sequences).

Pieces, each usable alone (a reward function is any callable `(actions, targets, **context) -> [B, N]`;
the configurable rewards, their registry and weighting live in `spoofrl.rewards`):
- `advantages`: group / batch / no scaling, optional centring (`compute_advantages`);
- `loss`: the clipped, KL-regularised policy loss with GRPO / BNPO / DAPO / Dr. GRPO normalisation and
  mixed-policy (off-policy ground-truth) samples (`policy_loss`);
- `policy`: the Policy interface (`sample`, `log_prob`, `enumerate_actions`) and the classifier policy;
- `grpo`: one loss evaluation combining them (`grpo_loss`, `GRPOSettings`).
- `rollout`: the same split as TRL's GRPOTrainer for generative policies: one rollout, then num_iterations
  micro-batched optimizer passes over it (`make_rollout`, `rollout_loss`, `train_on_rollout`).
"""
from spoofrl.rl.advantages import SCALE_CHOICES, compute_advantages, reward_stats
from spoofrl.rl.grpo import GRPOOutput, GRPOSettings, grpo_loss
from spoofrl.rl.loss import KL_ESTIMATORS, LOSS_TYPES, LossOutput, kl_estimate, policy_loss
from spoofrl.rl.policy import CategoricalPolicy, LogProbs, Policy
from spoofrl.rl.rollout import Rollout, make_rollout, rollout_loss, train_on_rollout

__all__ = ["compute_advantages", "reward_stats", "SCALE_CHOICES", "GRPOSettings", "GRPOOutput", "grpo_loss",
           "policy_loss", "kl_estimate", "LossOutput", "LOSS_TYPES", "KL_ESTIMATORS", "Policy",
           "CategoricalPolicy", "LogProbs", "Rollout", "make_rollout", "rollout_loss", "train_on_rollout"]
