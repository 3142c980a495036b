"""`ft_presence` and `ft_grounded`: FT-GRPO's frequency-time reward, and one that checks what it says.

`ft_presence` is FT-GRPO's ft_reward (arXiv 2601.02983): inside <think>, both section tags
`<Frequency Domain>` and `<Time Domain>` present -> 1.0, one -> 0.5, none (or no <think>) -> 0. It checks
tags only: a rationale that invents every artefact scores as well as a true one.

`ft_grounded` reads the claims of the rationale (`spoofrl.explain.parse_claims`) and checks each against
the clip's evidence items, from the batch column `evidence_column` (per item a list of EvidenceItem dicts,
or that list as JSON text):

    reward = (n_true - penalty * (n_false + n_unverifiable)) / max(n_claims, 1), clipped to [-1, 1]

A rationale with fewer than `min_claims` claims gets 0: no credit, and no penalty, for saying nothing.
An item without evidence (None or an empty list) gets None for its samples. See docs/explain.md.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from spoofrl.config import option
from spoofrl.errors import ConfigError
from spoofrl.rewards.base import Reward, batch_column

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>.*?</answer>", re.DOTALL)
FREQUENCY_TAG, TIME_TAG = "<Frequency Domain>", "<Time Domain>"


def ft_presence_value(completion: str) -> float:
    """1.0 / 0.5 / 0.0 for both / one / none of the section tags inside the first <think>...</think>."""
    think = _THINK.search(completion)
    if think is None:
        return 0.0
    body = think.group(1)
    return 0.5 * ((FREQUENCY_TAG in body) + (TIME_TAG in body))


class FtPresenceReward(Reward):
    """FT-GRPO's ft_reward: both section tags inside <think> 1.0, one 0.5, none 0."""

    def __call__(self, *, completions, completion_ids, prompts, columns, context) -> list[float]:
        return [ft_presence_value(c) for c in completions]


@dataclass
class FtGroundedOptions:
    evidence_column: str = option("evidence", "the batch column holding each item's evidence: a list of "
                                              "EvidenceItem dicts (spoofrl data rationales writes them)")
    penalty: float = option(1.0, "weight of each false or unverifiable claim against the true ones", ge=0.0)
    min_claims: int = option(1, "a rationale with fewer claims gets 0 (no credit for saying nothing)", ge=1)
    threshold: float = option(2.0, "|z| at which an evidence item counts as high / low", gt=0.0)
    tol_s: float = option(0.15, "a claim about an instant matches an event this many seconds away", ge=0.0)
    cutoff_tol_hz: float = option(500.0, "a claimed cut-off frequency matches the measured one this many Hz "
                                         "away", ge=0.0)


def claims_text(completion: str) -> str:
    """The text whose claims count: both sections of the rationale, else its <think>, else the completion
    without its answer."""
    from spoofrl.explain import parse_rationale
    parsed = parse_rationale(completion)
    if parsed.frequency is not None or parsed.time is not None:
        return parsed.sections_text
    think = _THINK.search(completion)
    return think.group(1) if think else _ANSWER.sub(" ", completion)


class FtGroundedReward(Reward):
    """The share of a rationale's claims that the clip's evidence bears out, false and unverifiable ones
    counted against it (see the module docstring)."""

    Options = FtGroundedOptions

    def __call__(self, *, completions, completion_ids, prompts, columns, context) -> list[float | None]:
        evidence = batch_column(columns, self.options.evidence_column)
        items_of: dict[int, list] = {}   # one conversion per item: its N samples share the list
        values = []
        for completion, raw in zip(completions, evidence):
            if raw is None or (hasattr(raw, "__len__") and len(raw) == 0):
                values.append(None)
                continue
            if id(raw) not in items_of:
                items_of[id(raw)] = _items(raw, self.options.evidence_column)
            values.append(self.score(completion, items_of[id(raw)]))
        return values

    def score(self, completion: str, items: list) -> float:
        from spoofrl.explain import check_claims, parse_claims
        o = self.options
        check = check_claims(parse_claims(claims_text(completion)), items, o.threshold, tol_s=o.tol_s,
                             cutoff_tol_hz=o.cutoff_tol_hz)
        if check.n_claims < o.min_claims:
            return 0.0
        value = (check.n_true - o.penalty * (check.n_false + check.n_unverifiable)) / check.n_claims
        return float(min(1.0, max(-1.0, value)))


def _items(raw, column: str) -> list:
    from spoofrl.explain.claims import as_items
    if isinstance(raw, str):  # a dataset may store the list as JSON text
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ConfigError(f"column '{column}' holds text that is not a JSON list of evidence items "
                              f"({err})") from None
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"column '{column}' must hold a list of evidence item dicts per item, got "
                          f"{type(raw).__name__}")
    try:
        return as_items(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"column '{column}' holds something that is not an evidence item "
                          f"({type(err).__name__}: {err})") from None
