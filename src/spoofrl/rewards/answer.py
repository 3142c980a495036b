"""`answer`: accuracy of the verdict.

The answer of a completion is the text of its last `<answer>...</answer>` (the last one: a model that
drafts an answer in its reasoning and corrects it is judged on the correction), else the whole completion
unless `require_tag`. It is compared, case-insensitively and stripped, to the target column (`label`).
A two-class detector's completions are its label names ("spoof" / "bonafide"), so the same reward serves it:
`correct` / `wrong` are its reward for a right / wrong label.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from spoofrl.config import invalid, option
from spoofrl.rewards.base import Reward, batch_column

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass
class AnswerOptions:
    target_column: str = option("label", "the dataset column holding the right answer")
    correct: float = option(1.0, "reward of a right answer")
    wrong: float = option(0.0, "reward of a wrong answer (also: no answer tag under require_tag, or an answer "
                               "outside `choices`)")
    require_tag: bool = option(False, "only the text of an <answer>...</answer> counts; without one the "
                                      "completion is wrong (false: the whole completion is the answer)")
    choices: list[str] = option(doc="the answers allowed (case-insensitive); any other counts as wrong. "
                                    "Empty: any", factory=list)

    def validate(self) -> None:
        for i, choice in enumerate(self.choices):
            if not choice.strip():
                raise invalid(f"choices[{i}]", "must not be empty")


def extract_answer(completion: str, require_tag: bool = False) -> str | None:
    """The text of the last <answer>...</answer>, else the stripped completion (None under require_tag)."""
    tagged = _ANSWER_TAG.findall(completion)
    if tagged:
        return tagged[-1].strip()
    return None if require_tag else completion.strip()


def _normal(text: object) -> str:
    return str(text).strip().casefold()


class AnswerReward(Reward):
    """`correct` when the extracted answer equals the target, `wrong` otherwise; None for an item whose
    target is None."""

    Options = AnswerOptions

    def __init__(self, options: AnswerOptions | None = None):
        super().__init__(options)
        self._choices = {_normal(c) for c in self.options.choices}

    def __call__(self, *, completions, completion_ids, prompts, columns, context) -> list[float | None]:
        targets = batch_column(columns, self.options.target_column)
        return [None if target is None else self._score(completion, target)
                for completion, target in zip(completions, targets)]

    def _score(self, completion: str, target: object) -> float:
        answer = extract_answer(completion, self.options.require_tag)
        if answer is None or (self._choices and _normal(answer) not in self._choices):
            return self.options.wrong
        return self.options.correct if _normal(answer) == _normal(target) else self.options.wrong
