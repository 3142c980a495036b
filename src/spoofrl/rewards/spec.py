"""Rewards from config: `RewardSpec` (one entry of a list of rewards) and `build_rewards`.

    rewards:
      - {name: answer, weight: 1.0}
      - {name: format, weight: 0.1}
      - {name: bleu, id: bleu_transcript, weight: 0.1, options: {reference_column: transcript}}

A spec's `options` are validated against the reward's own options dataclass (with `spoofrl.config.from_dict`)
when the spec is loaded, so a typo points at `rewards[2].options.reference_colum` before training starts.
Two rewards logged under one name are refused: the second one needs its own `id`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from spoofrl.config import OptionError, from_dict, invalid, option, to_dict
from spoofrl.errors import ConfigError
from spoofrl.rewards.base import (
    RewardFn,
    RewardSet,
    WeightedReward,
    options_of,
    reward_from_function,
)
from spoofrl.rewards.registry import REWARDS

# a reward's name in logs: reward/<id>/mean must stay one path segment
_ID = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class RewardSpec:
    """One reward of the objective: which, how much it counts, and its options."""

    name: str = option(doc="the reward, a key of spoofrl.rewards.REWARDS (answer, format, bleu, chrf, or one "
                           "registered by the user)")
    weight: float = option(1.0, "its weight in the total reward (negative: a penalty)")
    id: str = option("", "its name in logs and per-reward scores (default: `name`); needed to use one reward "
                         "twice, e.g. bleu against two columns")
    options: dict[str, Any] = option(doc="the reward's own options (see docs/rewards.md); unknown keys are "
                                         "refused", factory=dict)

    @property
    def log_name(self) -> str:
        return self.id or self.name

    def validate(self) -> None:
        if self.name not in REWARDS:
            raise invalid("name", f"unknown reward '{self.name}'; known: {', '.join(REWARDS.names())}")
        if self.id and not _ID.fullmatch(self.id):
            raise invalid("id", f"{self.id!r} must be letters, digits, '_', '.' or '-' (it names log keys)")
        reward_options(self.name, self.options)


def reward_options(name: str, options: dict[str, Any]) -> Any:
    """The options object of reward `name` built from the dict `options` (None for a reward without options).
    Errors are relative to the spec (`options.correct`), for `from_dict` to prefix with the spec's path."""
    target = REWARDS.get(name)
    options_cls = options_of(target)
    if options_cls is None:
        if options:
            kind = "a plain function" if not isinstance(target, type) else "a reward without options"
            raise invalid("options", f"reward '{name}' is {kind} and takes no options; got "
                                     f"{', '.join(sorted(map(str, options)))}")
        return None
    try:
        return from_dict(options_cls, options, prefix="options")
    except OptionError as err:
        raise invalid(err.key, err.reason) from None
    except ConfigError as err:  # a missing required option
        raise invalid("options", str(err)) from None


def build_reward(name: str, options: Any, log_name: str) -> RewardFn:
    """An instance of reward `name` with its (already built) options object."""
    target = REWARDS.get(name)
    if not isinstance(target, type):
        return reward_from_function(target, log_name)
    try:
        return target(options) if options_of(target) is not None else target()
    except OptionError as err:  # invalid("tokenize", ...) from the constructor: an option of the spec
        if not err.relative:
            raise
        raise invalid(f"options.{err.key}", err.reason) from None


def build_rewards(specs: Sequence[RewardSpec | dict], *, prefix: str = "rewards") -> RewardSet:
    """A RewardSet from a list of specs (RewardSpec objects or dicts as read from YAML).

    prefix: where the list sits in the config, for messages (`objective.rewards[1].options.pattern: ...`)."""
    if isinstance(specs, (str, bytes, dict)) or not isinstance(specs, Sequence):
        raise OptionError(f"{prefix}: expected a list of rewards, got {specs!r}", key=prefix,
                          reason=f"expected a list of rewards, got {specs!r}")
    if not specs:
        raise OptionError(f"{prefix}: give at least one reward", key=prefix, reason="give at least one reward")
    checked = [_checked_spec(spec, f"{prefix}[{i}]") for i, spec in enumerate(specs)]
    _refuse_duplicates(checked, prefix)
    rewards = []
    for i, spec in enumerate(checked):
        with _keyed_by(f"{prefix}[{i}]"):
            fn = build_reward(spec.name, reward_options(spec.name, spec.options), spec.log_name)
        rewards.append(WeightedReward(spec.log_name, fn, spec.weight))
    return RewardSet(rewards)


def _checked_spec(spec: RewardSpec | dict, where: str) -> RewardSpec:
    """A spec validated as from YAML: a RewardSpec built in Python goes through from_dict too, so that its
    types and options are checked the same way."""
    if isinstance(spec, RewardSpec):
        spec = to_dict(spec)
    if not isinstance(spec, dict):
        raise OptionError(f"{where}: expected a mapping with a reward `name`, got {spec!r}", key=where,
                          reason=f"expected a mapping with a reward `name`, got {spec!r}")
    return from_dict(RewardSpec, spec, prefix=where)


def _refuse_duplicates(specs: list[RewardSpec], prefix: str) -> None:
    first: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.log_name in first:
            key = f"{prefix}[{i}].{'id' if spec.id else 'name'}"
            reason = (f"a second reward named '{spec.log_name}' (the first is {prefix}[{first[spec.log_name]}]); "
                      f"give one of them a distinct `id`")
            raise OptionError(f"{key}: {reason}", key=key, reason=reason)
        first[spec.log_name] = i


@contextmanager
def _keyed_by(where: str):
    """Turn an error about an option of the spec (a relative key) into one keyed by the spec's path."""
    try:
        yield
    except OptionError as err:
        if not err.relative:
            raise
        key = f"{where}.{err.key}"
        raise OptionError(f"{key}: {err.reason}", key=key, reason=err.reason) from None
