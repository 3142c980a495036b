"""Forward passes of the policy, the old policy and the reference model, shared as much as possible.

- When the detector's front-end encode stage has nothing to train (log-mel, or a frozen SSL encoder), its
  output (`Detector.extract_features`) is computed once per batch without gradient and the current, old and
  reference models only run the trainable rest (`Detector.forward_features`) on it.
- The old policy and the reference model are not full model copies: they are snapshots of the *trainable*
  parameters (plus buffers), evaluated with `torch.func.functional_call` on the one detector, so a frozen
  front-end (possibly a billion-parameter SSL encoder) is never duplicated.
- Reference logits are cached per utterance when the input is reproducible (not augmented, crop starting at
  the file's start): with a frozen front-end and no augmentation the reference runs once per utterance.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

from spoofrl.data.dataset import Batch
from spoofrl.inference import eval_mode
from spoofrl.training import fsdp


def frontend_is_frozen(detector: nn.Module) -> bool:
    """True when the front-end's encode stage trains nothing (log-mel, LFCC, a frozen SSL encoder)."""
    flag = getattr(detector, "frontend_is_frozen", None)
    if flag is not None:
        return bool(flag() if callable(flag) else flag)
    frontend = getattr(detector, "frontend", None)
    return frontend is not None and not any(p.requires_grad for p in frontend.parameters())


def compute_features(detector: nn.Module, wave: torch.Tensor, lengths: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encode stage's output (raw features, frame lengths), without gradient."""
    with torch.no_grad():
        return detector.extract_features(wave, lengths)


class TrainForward(nn.Module):
    """The module DistributedDataParallel wraps: the detector's full forward, or only its trainable part
    (`forward_features`) on precomputed encode-stage features, so DDP's gradient hooks fire in both cases.
    Also used with `functional_call` to evaluate parameter snapshots."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor, raw: torch.Tensor | None = None,
                frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        if raw is not None:
            return self.detector.forward_features(raw, frame_lengths)
        return self.detector(wave, lengths)


class ParamSnapshot:
    """A frozen copy of a model's trainable parameters and its buffers (old policy or reference). Under FSDP
    (spoofrl.training.fsdp) the copies are this process's shards and are evaluated by copying them into the
    shards (torch.func.functional_call would run the live weights there)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self._prefixed = {f"detector.{k}": v for k, v in tensors.items()}  # names inside TrainForward

    @classmethod
    def of(cls, model: nn.Module) -> "ParamSnapshot":
        return cls(fsdp.snapshot_tensors(model))

    def state(self) -> dict[str, torch.Tensor]:
        """Full CPU tensors to save. Sharded: a collective (every process calls it); rank 0 gets them, the
        others {}."""
        return fsdp.gather_tensors(self.tensors)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device,
                   model: nn.Module | None = None) -> "ParamSnapshot":
        """A snapshot of saved full tensors, cut to this process's shards when `model` is sharded."""
        if model is not None and fsdp.is_sharded(model):
            return cls(fsdp.shard_like(model, state))
        return cls({k: v.to(device) for k, v in state.items()})

    def logits(self, forward: TrainForward, batch: Batch, feats: tuple[torch.Tensor, torch.Tensor] | None
               ) -> torch.Tensor:
        """Logits of this snapshot on `batch` (eval mode, no gradient), through the detector's own modules
        with these tensors swapped in (torch.func.functional_call)."""
        args = (batch.wave, batch.lengths) if feats is None else (batch.wave, batch.lengths, *feats)
        return self.call(forward, args)

    def call(self, forward: nn.Module, args: tuple, prefix: str = "detector.") -> object:
        """forward(*args) in eval mode without gradient, with this snapshot's tensors in place of the model's;
        `forward` holds the model under the attribute `prefix` names (TrainForward: "detector.")."""
        model = forward.get_submodule(prefix.rstrip("."))
        if fsdp.is_sharded(model):
            with eval_mode(forward):
                return fsdp.call_with(model, self.tensors, lambda: forward(*args))
        tensors = self._prefixed if prefix == "detector." else {f"{prefix}{k}": v for k, v in self.tensors.items()}
        with torch.no_grad(), eval_mode(forward):
            return functional_call(forward, tensors, args)


class LogitsCache:
    """Reference logits per utterance, for inputs that come back identical (see module doc)."""

    def __init__(self, size: int, classes: int, device: torch.device):
        self.values = torch.zeros(size, classes, device=device)
        self.valid = torch.zeros(size, dtype=torch.bool, device=device)

    @staticmethod
    def cacheable(batch: Batch) -> torch.Tensor:
        return (~batch.augmented) & (batch.start == 0)

    def lookup(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self.valid[batch.index] & self.cacheable(batch)
        return self.values[batch.index], hit

    def store(self, batch: Batch, logits: torch.Tensor) -> None:
        keep = self.cacheable(batch)
        self.values[batch.index[keep]] = logits[keep].detach().float()
        self.valid[batch.index[keep]] = True

    def clear(self) -> None:
        self.valid.zero_()

    def state(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.cpu(), "valid": self.valid.cpu()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.values.copy_(state["values"])
        self.valid.copy_(state["valid"])


def _merge_rows(first_rows: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor],
                rest: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleave two feature batches back into batch order (rows where `first_rows` is True come from
    `first`), zero-padding the frame axis to the longer one."""
    (a, a_len), (b, b_len) = first, rest
    frames = max(a.shape[1], b.shape[1])
    out = a.new_zeros((first_rows.shape[0], frames, *a.shape[2:]))
    out[first_rows, :a.shape[1]] = a
    out[~first_rows, :b.shape[1]] = b.to(a.dtype)
    lengths = a_len.new_zeros(first_rows.shape[0])
    lengths[first_rows], lengths[~first_rows] = a_len, b_len.to(a_len.dtype)
    return out, lengths


class ModelAccess:
    """Logits of the current, old and reference models on one batch, sharing front-end work.

    `prepare(batch)` must be called first for each batch; it computes shared features when possible.
    """

    def __init__(self, wrapped: nn.Module, detector: nn.Module, *, autocast=None, share_features: bool = True,
                 ref_cache: LogitsCache | None = None, feature_cache=None, utt_ids=None):
        self.wrapped = wrapped          # TrainForward, possibly inside DistributedDataParallel
        self.detector = detector
        self.plain = TrainForward(detector)  # for snapshots: no DDP hooks, same modules
        self.autocast = autocast or contextlib.nullcontext
        self.share_features = share_features and frontend_is_frozen(detector)
        self.old: ParamSnapshot | None = None
        self.ref: ParamSnapshot | None = None
        self.ref_cache = ref_cache
        # on-disk cache of the frozen encode stage (spoofrl.features.cache.FeatureCache) and a function
        # batch -> utterance ids naming each item's exact input (file and crop)
        self.feature_cache = feature_cache if self.share_features else None
        self.utt_ids = utt_ids
        self._batch: Batch | None = None
        self._feats: tuple[torch.Tensor, torch.Tensor] | None = None

    def prepare(self, batch: Batch) -> None:
        self._batch = batch
        self._feats = None
        if self.share_features:
            with self.autocast():
                self._feats = self._features(batch)

    def _features(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.feature_cache is None:
            return compute_features(self.detector, batch.wave, batch.lengths)
        cached = LogitsCache.cacheable(batch)
        if not bool(cached.any()):
            return compute_features(self.detector, batch.wave, batch.lengths)
        part = batch if bool(cached.all()) else batch.subset(cached)
        with torch.no_grad():
            from_cache = self.feature_cache.extract(self.detector, self.utt_ids(part), part.wave, part.lengths)
        if part is batch:
            return from_cache
        rest = batch.subset(~cached)
        return _merge_rows(cached, from_cache, compute_features(self.detector, rest.wave, rest.lengths))

    def logits(self) -> torch.Tensor:
        """Current model, with gradient."""
        b = self._batch
        with self.autocast():
            if self._feats is not None:
                return self.wrapped(b.wave, b.lengths, self._feats[0], self._feats[1]).float()
            return self.wrapped(b.wave, b.lengths).float()

    def old_logits(self) -> torch.Tensor:
        with self.autocast():
            return self.old.logits(self.plain, self._batch, self._feats).float()

    def ref_logits(self) -> torch.Tensor:
        b = self._batch
        if self.ref_cache is None:
            with self.autocast():
                return self.ref.logits(self.plain, b, self._feats).float()
        cached, hit = self.ref_cache.lookup(b)
        if bool(hit.all()):
            return cached
        miss = ~hit
        feats = None if self._feats is None else (self._feats[0][miss], self._feats[1][miss])
        with self.autocast():
            fresh = self.ref.logits(self.plain, b.subset(miss), feats).float()
        out = cached.clone()
        out[miss] = fresh
        self.ref_cache.store(b, out)
        return out


__all__ = ["TrainForward", "ModelAccess", "ParamSnapshot", "LogitsCache", "frontend_is_frozen",
           "compute_features", "eval_mode"]
