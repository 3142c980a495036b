"""The registry of rewards. Adding a reward: one file + one line here.

An entry is a `Reward` subclass (its `Options` dataclass holds its options) or a plain function with the
reward signature (no options). Rewards defined outside the package join with the decorator
`@REWARDS.register("my_reward")` on such a class or function.
"""
from spoofrl.registry import Registry

REWARDS = Registry("reward", {
    "answer": "spoofrl.rewards.answer:AnswerReward",
    "format": "spoofrl.rewards.format:FormatReward",
    "bleu": "spoofrl.rewards.text_similarity:BleuReward",
    "chrf": "spoofrl.rewards.text_similarity:ChrfReward",
    "ft_presence": "spoofrl.rewards.ft:FtPresenceReward",
    "ft_grounded": "spoofrl.rewards.ft:FtGroundedReward",
})
