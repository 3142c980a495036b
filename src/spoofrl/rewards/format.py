r"""`format`: does the completion follow the expected structure (a regular expression)?

The default is FT-GRPO's own format regex (arXiv 2601.02983, its public code):
`^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])` with '.' matching newlines: a <think> block, then
the <answer>, and nothing after it. Like FT-GRPO's, it does not look inside <think>: whether the
`<Frequency Domain>` and `<Time Domain>` sections are there is the `ft_presence` reward's job, whether
what they say is true `ft_grounded`'s. The completion is stripped first (FT-GRPO's is not), so a
trailing newline does not fail it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from spoofrl.config import invalid, option
from spoofrl.rewards.base import Reward

FT_GRPO_PATTERN = r"^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])"


@dataclass
class FormatOptions:
    pattern: str = option(FT_GRPO_PATTERN, "regular expression the whole stripped completion must match "
                                           "(re.fullmatch, '.' matches newlines); default: FT-GRPO's "
                                           "<think>...</think> <answer>...</answer> with nothing after")
    match: float = option(1.0, "reward of a completion that matches")
    no_match: float = option(0.0, "reward of one that does not")

    def validate(self) -> None:
        try:
            re.compile(self.pattern, re.DOTALL)
        except re.error as err:
            raise invalid("pattern", f"not a valid regular expression ({err})") from None


class FormatReward(Reward):
    """`match` when re.fullmatch(pattern, completion.strip(), re.DOTALL), else `no_match`."""

    Options = FormatOptions

    def __init__(self, options: FormatOptions | None = None):
        super().__init__(options)
        self._pattern = re.compile(self.options.pattern, re.DOTALL)

    def __call__(self, *, completions, completion_ids, prompts, columns, context) -> list[float]:
        return [self.options.match if self._pattern.fullmatch(c.strip()) else self.options.no_match
                for c in completions]
