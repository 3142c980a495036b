"""`format`: does the completion follow the expected structure (a regular expression)?

The default is the structure of FT-GRPO (arXiv 2601.02983): a `<think>` holding a `<frequency>` and then a
`<time>` analysis, followed by the `<answer>`; whitespace may separate the parts, and a section may not
contain another structure tag (so two `<frequency>` sections, or a section left open, do not match).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from spoofrl.config import invalid, option
from spoofrl.rewards.base import Reward

# a section's content: anything (newlines included) that is not one of the structure's tags
_CONTENT = r"(?:(?!</?(?:think|frequency|time|answer)>).)+"
FT_GRPO_PATTERN = (rf"<think>\s*<frequency>{_CONTENT}</frequency>\s*<time>{_CONTENT}</time>\s*</think>"
                   rf"\s*<answer>{_CONTENT}</answer>")


@dataclass
class FormatOptions:
    pattern: str = option(FT_GRPO_PATTERN, "regular expression the whole stripped completion must match "
                                           "(re.fullmatch, '.' matches newlines); default: FT-GRPO's "
                                           "<think><frequency/><time/></think><answer/>")
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
