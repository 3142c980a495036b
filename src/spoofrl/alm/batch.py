"""What goes into an audio LLM (`AlmBatch`) and what comes out of its generation (`Completions`).

AlmBatch: B waveforms, zero-padded to [B, S] float32 with their lengths in samples, and B prompt strings (the
user turn; `<audio>` marks where the audio goes, or the audio comes first when it is absent). Optional: a
system prompt per item, a reference completion per item (SFT targets, mixed-policy ground truth, reward
references) and any other dataset columns (lists of B values, handed to reward functions).

Completions: `num` completions for each of the B inputs, as TRL's GRPO uses them:
    ids        [B, N, T] int64  generated tokens, the pad id after EOS (T = longest completion of the call)
    mask       [B, N, T] bool   True on generated tokens, up to and including EOS
    text       B lists of N strings, decoded with special tokens removed
    truncated  [B, N] bool      no EOS within max_completion_length
    logprobs   [B, N, T] float  (from generate) log-prob of each token under softmax(logits / temperature),
                                0 where mask is False; None when built from text
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from spoofrl.errors import ConfigError
from spoofrl.rows import Rows, row_indices


@dataclass
class AlmBatch:
    waves: torch.Tensor                       # [B, S] float32, zero-padded
    lengths: torch.Tensor                     # [B] int64, samples
    prompts: list[str]                        # user turns; "<audio>" marks the audio's place
    system: list[str] | None = None           # system prompt per item (None: no system turn)
    references: list[str] | None = None       # reference completion per item (SFT target, ground truth)
    columns: dict[str, list] = field(default_factory=dict)   # other dataset columns, B values each

    def __post_init__(self):
        b = self.waves.shape[0]
        if self.waves.dim() != 2:
            raise ConfigError(f"AlmBatch.waves must be [B, S], got shape {tuple(self.waves.shape)}")
        if self.lengths.shape != (b,):
            raise ConfigError(f"AlmBatch.lengths must be [{b}], got shape {tuple(self.lengths.shape)}")
        for name in ("prompts", "system", "references"):
            value = getattr(self, name)
            if value is not None and len(value) != b:
                raise ConfigError(f"AlmBatch.{name} has {len(value)} entries for {b} waveforms")
        for name, value in self.columns.items():
            if len(value) != b:
                raise ConfigError(f"AlmBatch column {name!r} has {len(value)} entries for {b} waveforms")

    @classmethod
    def from_waves(cls, waves: Sequence[Any], prompts: Sequence[str] | str, *,
                   system: Sequence[str] | str | None = None, references: Sequence[str] | None = None,
                   **columns: Sequence[Any]) -> "AlmBatch":
        """Pad 1-D waveforms (numpy arrays, tensors or lists) into a batch. A single prompt / system string is
        used for every item."""
        arrays = [np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float32)
                  for w in waves]
        if not arrays:
            raise ConfigError("AlmBatch needs at least one waveform")
        for i, a in enumerate(arrays):
            if a.ndim != 1 or a.size == 0:
                raise ConfigError(f"waveform {i}: expected a non-empty 1-D signal, got shape {a.shape}")
        b = len(arrays)
        lengths = [a.size for a in arrays]
        padded = np.zeros((b, max(lengths)), dtype=np.float32)
        for i, a in enumerate(arrays):
            padded[i, :lengths[i]] = a

        def as_list(v):
            return None if v is None else [v] * b if isinstance(v, str) else list(v)

        return cls(torch.from_numpy(padded), torch.tensor(lengths, dtype=torch.long), as_list(prompts),
                   as_list(system), as_list(references), {k: list(v) for k, v in columns.items()})

    def to(self, device: torch.device | str) -> "AlmBatch":
        return AlmBatch(self.waves.to(device, non_blocking=True), self.lengths.to(device), self.prompts,
                        self.system, self.references, self.columns)

    def select(self, rows: Rows) -> "AlmBatch":
        """The items `rows` (indices, a bool mask or a slice), trimmed to their longest waveform."""
        idx = row_indices(rows, len(self))
        index = torch.tensor(idx, dtype=torch.long, device=self.waves.device)
        lengths = self.lengths[index.to(self.lengths.device)]
        longest = max(int(lengths.max()), 1) if idx else 1

        def pick(v):
            return None if v is None else [v[i] for i in idx]

        return AlmBatch(self.waves[index][:, :longest], lengths, pick(self.prompts), pick(self.system),
                        pick(self.references), {k: pick(v) for k, v in self.columns.items()})

    def __len__(self) -> int:
        return int(self.waves.shape[0])


def collate_alm(items: Sequence[Mapping[str, Any]]) -> AlmBatch:
    """Batch dataset items: each a mapping with "wave" (1-D float signal at the model's sample rate) and
    "prompt" (str), optionally "system" (str) and "completion" (the reference answer, TRL's prompt-completion
    key); every other key becomes a column (e.g. "label", "index") passed on to reward functions."""
    if not items:
        raise ConfigError("collate_alm: no items")
    for i, item in enumerate(items):
        for key in ("wave", "prompt"):
            if key not in item:
                raise ConfigError(f"collate_alm: item {i} has no {key!r}")
    keys = [k for k in items[0] if k not in ("wave", "prompt", "system", "completion")]

    def has(key: str) -> bool:
        return all(key in it for it in items)

    return AlmBatch.from_waves([it["wave"] for it in items], [str(it["prompt"]) for it in items],
                               system=[str(it["system"]) for it in items] if has("system") else None,
                               references=[str(it["completion"]) for it in items] if has("completion") else None,
                               **{k: [it.get(k) for it in items] for k in keys})


def completion_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True on tokens up to and including the first EOS of each sequence (the last axis), False after it."""
    is_eos = (ids == eos_id).long()
    return (torch.cumsum(is_eos, dim=-1) - is_eos) == 0


@dataclass
class Completions:
    ids: torch.Tensor                  # [B, N, T] int64, pad id after EOS
    mask: torch.Tensor                 # [B, N, T] bool, True up to and including EOS
    text: list[list[str]]              # [B][N] decoded, special tokens removed
    truncated: torch.Tensor            # [B, N] bool: no EOS within max_completion_length
    logprobs: torch.Tensor | None = None   # [B, N, T] float32 at sampling time (see the module doc)
    temperature: float = 1.0           # the temperature `logprobs` were computed at

    @property
    def batch_size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num(self) -> int:
        return int(self.ids.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        """[B, N] generated tokens per completion (EOS included)."""
        return self.mask.sum(-1)

    def to(self, device: torch.device | str) -> "Completions":
        return Completions(self.ids.to(device), self.mask.to(device), self.text, self.truncated.to(device),
                           None if self.logprobs is None else self.logprobs.to(device), self.temperature)

    def select(self, rows: Rows) -> "Completions":
        """The inputs `rows` (along B), trimmed to their longest completion."""
        idx = row_indices(rows, self.batch_size)
        index = torch.tensor(idx, dtype=torch.long, device=self.ids.device)
        mask = self.mask[index]
        longest = max(int(mask.sum(-1).max()), 1) if idx else 1
        logprobs = None if self.logprobs is None else self.logprobs[index][..., :longest]
        return Completions(self.ids[index][..., :longest], mask[..., :longest], [self.text[i] for i in idx],
                           self.truncated[index], logprobs, self.temperature)
