"""The reward API: what a reward function receives and returns, and how several combine.

A reward function is called with keyword arguments

    fn(completions=..., completion_ids=..., prompts=..., columns=..., context=...) -> list[float | None]

for B items with N samples each, flattened item-major (item b's samples at b*N .. b*N+N-1):

- `completions`: list[str], B*N texts (for a classifier: its label names, e.g. "spoof" / "bonafide");
- `completion_ids`: list[list[int]], the token ids of each completion ([label index] for a classifier);
- `prompts`: list[str] | None, each item's prompt repeated N times (None when there is no prompt);
- `columns`: dict[str, list], the dataset columns of the batch, each repeated N times to length B*N;
- `context`: a `RewardContext` (N, the training step, anything else in `extra`).

It returns one value per completion, or None where it does not apply (no reference text, say). This
follows TRL's GRPOTrainer reward functions, except that the dataset columns come as one `columns` dict
rather than as **kwargs, and that a sample no reward applies to is an error (TRL warns and its nansum
gives that sample a silent 0, which would pull its group's advantages as if it had been scored).

`RewardSet.score` calls each reward once and combines them: total = sum of weight * value over the rewards
that returned a value (TRL's nansum), with per-reward values and statistics for logging.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from spoofrl.errors import ConfigError, SpoofrlError

# how many of the samples that no reward applies to are named in the error (the rest are counted)
_SAMPLES_NAMED = 3


@dataclass(frozen=True)
class RewardContext:
    """What a reward may need besides the batch: N, the training step, and anything else in `extra`
    (e.g. evidence measured on the audio)."""

    num_generations: int
    step: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.num_generations, bool) or not isinstance(self.num_generations, int) \
                or self.num_generations < 1:
            raise ValueError(f"num_generations must be a positive integer, got {self.num_generations!r}")


class RewardFn(Protocol):
    """Anything a RewardSet can call: see the module docstring for the arguments."""

    def __call__(self, *, completions: list[str], completion_ids: list[list[int]], prompts: list[str] | None,
                 columns: dict[str, list], context: RewardContext) -> Sequence[float | None]: ...


class Reward:
    """Base class of configurable rewards: a subclass sets `Options` to a dataclass of `option(...)` fields
    (None: no options) and implements `__call__`. The registry builds it as `cls(options)`."""

    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None):
        if self.Options is None:
            if options is not None:
                raise TypeError(f"{type(self).__name__} takes no options")
        elif options is None:
            options = self.Options()
        self.options = options

    def __call__(self, *, completions: list[str], completion_ids: list[list[int]], prompts: list[str] | None,
                 columns: dict[str, list], context: RewardContext) -> list[float | None]:
        raise NotImplementedError


def batch_column(columns: Mapping[str, list], name: str) -> list:
    """The column `name` of the batch; a ConfigError naming it and the columns present when it is absent
    (an option that names a column the dataset does not have)."""
    if name not in columns:
        present = ", ".join(sorted(columns)) or "none"
        raise ConfigError(f"the batch has no column '{name}'; columns present: {present}")
    return columns[name]


_ARGUMENT_NAMES = ("completions", "completion_ids", "prompts", "columns", "context")


@dataclass(frozen=True)
class FunctionReward:
    """A plain callable used as a reward, under `name`."""

    fn: Callable[..., Sequence[float | None]]
    name: str

    def __call__(self, **arguments: Any) -> Sequence[float | None]:
        return self.fn(**arguments)


def reward_from_function(fn: Callable[..., Sequence[float | None]], name: str) -> FunctionReward:
    """Wrap `fn(completions, completion_ids, prompts, columns, context) -> list[float | None]` as a reward.

    The arguments are passed by keyword, so `fn` may list them in any order or take `**kwargs` for those it
    ignores; a signature that cannot take all five is refused here rather than at the first training step."""
    if not callable(fn):
        raise ConfigError(f"reward '{name}': {fn!r} is not callable")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return FunctionReward(fn, name)
    try:
        signature.bind(**dict.fromkeys(_ARGUMENT_NAMES))
    except TypeError as err:
        raise ConfigError(f"reward '{name}': {getattr(fn, '__name__', fn)!r} cannot be called with the "
                          f"arguments {', '.join(_ARGUMENT_NAMES)} ({err})") from None
    return FunctionReward(fn, name)


@dataclass(frozen=True)
class WeightedReward:
    """One reward of a RewardSet: its name in logs, the function, and its weight in the total."""

    name: str
    fn: RewardFn
    weight: float = 1.0


@dataclass
class RewardScores:
    """The rewards of B x N samples: `total` [B, N] float32 (what advantages are computed from),
    `per_reward` each reward's own values [B, N] (NaN where it did not apply), `stats` scalars to log."""

    total: torch.Tensor
    per_reward: dict[str, torch.Tensor]
    stats: dict[str, float]


class RewardOutputError(SpoofrlError, ValueError):
    """A reward returned something other than one finite number or None per completion."""


class RewardSet:
    """Weighted rewards, scored together: see `score`. Built from config by `build_rewards`."""

    def __init__(self, rewards: Sequence[WeightedReward]):
        if not rewards:
            raise ConfigError("no rewards configured: give at least one")
        names = [r.name for r in rewards]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"two rewards are named {', '.join(repr(n) for n in repeated)}; "
                              f"each needs its own name (in a config: set `id`)")
        for r in rewards:
            if not math.isfinite(r.weight):
                raise ConfigError(f"reward '{r.name}': weight must be a finite number, got {r.weight}")
        self.rewards = list(rewards)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __len__(self) -> int:
        return len(self.rewards)

    def __repr__(self) -> str:
        return f"RewardSet({', '.join(f'{r.name}*{r.weight:g}' for r in self.rewards)})"

    def score(self, completions: Sequence[str], completion_ids: Sequence[Sequence[int]],
              prompts: Sequence[str] | None, columns: Mapping[str, Sequence], context: RewardContext, *,
              shape: tuple[int, int] | None = None) -> RewardScores:
        """Call every reward once on the B*N completions and combine them into `RewardScores`.

        shape: (B, N); by default (len(completions) // N, N) with N = context.num_generations. Raises
        ConfigError when no reward applies to some sample (its total would be a made-up 0 that shifts the
        advantages of its group), RewardOutputError when a reward returns a bad value."""
        batch, group = self._shape(len(completions), context, shape)
        arguments = _arguments(completions, completion_ids, prompts, columns, context, batch * group)
        values = {r.name: self._evaluate(r, arguments, batch * group) for r in self.rewards}
        self._check_coverage(values, group)
        total = torch.zeros(batch * group, dtype=torch.float64)
        for r in self.rewards:
            total += r.weight * torch.nan_to_num(values[r.name], nan=0.0)
        total = total.to(torch.float32).view(batch, group)
        per_reward = {name: v.to(torch.float32).view(batch, group) for name, v in values.items()}
        stats: dict[str, float] = {}
        for name, v in values.items():
            stats.update(_reward_stats(name, v))
        stats["reward/total/mean"] = float(total.double().mean())
        stats["reward/total/std"] = _std(total.double().flatten())
        return RewardScores(total=total, per_reward=per_reward, stats=stats)

    @staticmethod
    def _shape(count: int, context: RewardContext, shape: tuple[int, int] | None) -> tuple[int, int]:
        group = context.num_generations
        if shape is None:
            if count % group:
                raise ValueError(f"{count} completions is not a multiple of num_generations={group}")
            return count // group, group
        batch, group_given = shape
        if group_given != group:
            raise ValueError(f"shape {tuple(shape)} has N={group_given} but context.num_generations={group}")
        if batch * group != count:
            raise ValueError(f"shape {tuple(shape)} needs {batch * group} completions, got {count}")
        return batch, group

    @staticmethod
    def _evaluate(reward: WeightedReward, arguments: dict[str, Any], count: int) -> torch.Tensor:
        """One reward's values as float64 [B*N], NaN where it returned None."""
        try:
            out = reward.fn(**arguments)
        except ConfigError as err:  # a missing column, say: say which reward needed it
            raise ConfigError(f"reward '{reward.name}': {err}") from err
        except Exception as err:
            err.add_note(f"raised by reward '{reward.name}'")
            raise
        return torch.tensor(_checked_values(reward.name, out, count), dtype=torch.float64)

    @staticmethod
    def _check_coverage(values: dict[str, torch.Tensor], group: int) -> None:
        applicable = torch.stack([~torch.isnan(v) for v in values.values()]).any(dim=0)
        missing = (~applicable).nonzero().flatten().tolist()
        if not missing:
            return
        named = ", ".join(f"item {i // group}, sample {i % group}" for i in missing[:_SAMPLES_NAMED])
        more = f" and {len(missing) - _SAMPLES_NAMED} more" if len(missing) > _SAMPLES_NAMED else ""
        raise ConfigError(f"no reward applies to {named}{more}: every reward ({', '.join(values)}) returned "
                          f"None there, so it has no reward to learn from; add a reward that scores every sample, "
                          f"or give those items what the rewards need (e.g. a reference text)")


def _arguments(completions, completion_ids, prompts, columns, context, count: int) -> dict[str, Any]:
    """The keyword arguments of every reward, after checking that each list has one entry per completion."""
    if not isinstance(context, RewardContext):
        raise TypeError(f"context must be a RewardContext, got {type(context).__name__}")
    lists = {"completion_ids": completion_ids, **({} if prompts is None else {"prompts": prompts}),
             **{f"columns['{k}']": v for k, v in columns.items()}}
    for what, value in lists.items():
        if isinstance(value, (str, bytes)) or len(value) != count:
            length = "a string" if isinstance(value, (str, bytes)) else f"length {len(value)}"
            raise ValueError(f"{what} has {length}; expected a list of {count} (one per completion, "
                             f"each item's entry repeated N times)")
    return {"completions": list(completions), "completion_ids": list(completion_ids),
            "prompts": None if prompts is None else list(prompts),
            "columns": {k: list(v) for k, v in columns.items()}, "context": context}


def _checked_values(name: str, out: Any, count: int) -> list[float]:
    """A reward's output as floats (NaN for None), or a RewardOutputError naming the reward."""
    if hasattr(out, "tolist") and not isinstance(out, (list, tuple)):  # a tensor or an array
        out = out.tolist()
    if isinstance(out, (str, bytes, Mapping)) or not isinstance(out, Sequence):
        raise RewardOutputError(f"reward '{name}' returned {type(out).__name__}; expected a list of "
                                f"{count} numbers or None")
    if len(out) != count:
        raise RewardOutputError(f"reward '{name}' returned {len(out)} values for {count} completions")
    values = []
    for i, value in enumerate(out):
        if value is None:
            values.append(math.nan)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RewardOutputError(f"reward '{name}' returned {value!r} for completion {i}; expected a number "
                                    f"or None")
        if not math.isfinite(value):
            raise RewardOutputError(f"reward '{name}' returned {value} for completion {i}; return None for "
                                    f"a completion it does not apply to, a finite number otherwise")
        values.append(float(value))
    return values


def _std(values: torch.Tensor) -> float:
    """Standard deviation with Bessel's correction like torch.std (and TRL); 0 for a single value."""
    return float(values.std()) if values.numel() > 1 else 0.0


def _reward_stats(name: str, values: torch.Tensor) -> dict[str, float]:
    """reward/<name>/mean and /std over the samples it applies to (left out when none), /applicable."""
    applicable = values[~torch.isnan(values)]
    stats = {f"reward/{name}/applicable": applicable.numel() / max(values.numel(), 1)}
    if applicable.numel():
        stats[f"reward/{name}/mean"] = float(applicable.mean())
        stats[f"reward/{name}/std"] = _std(applicable)
    return stats


def options_of(target: Any) -> type | None:
    """The options dataclass a registered reward declares (its `Options`), None for one without options."""
    options = getattr(target, "Options", None) if isinstance(target, type) else None
    if options is not None and not dataclasses.is_dataclass(options):
        raise ConfigError(f"{target.__name__}.Options must be a dataclass, got {options!r}")
    return options
