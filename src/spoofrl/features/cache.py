"""On-disk cache of a frozen front-end's output, so an expensive frozen encoder (a frozen SSL model) runs once
per utterance instead of once per epoch.

How a trainer uses it (one call per batch, instead of running the front-end):

    cache = FeatureCache(root / "feature_cache", model)            # refuses a trainable front-end
    raw, frame_lengths = cache.extract(model, utt_ids, wave, lengths)
    logits = model.forward_features(raw, frame_lengths)            # trainable head + back-end only

What is cached is `Detector.extract_features` (the front-end's encode stage; for an SSL front-end the
selected hidden layers, before the trainable fusion/projection), one safetensors file per utterance under
`root/<key>/`, where <key> hashes the encode-stage options and a fingerprint of the encoder's weights:
changing the checkpoint, the selected layers or the waveform normalisation starts a new cache folder, while
changing only the fusion, projection or back-end reuses it.

Requirements and guarantees:
  - An utterance id must always stand for the same input waveform; use a deterministic input (the whole
    file, or a fixed crop) and put anything that changes the input into the id, e.g. "a.wav@crop0-4s".
    Each entry also stores a fingerprint of its input (length, sum, sum of squares); a mismatch is treated
    as a miss and the entry is recomputed, so a stale cache is never silently used.
  - A cached entry equals what the front-end computes for that utterance alone: misses are computed in
    groups of equal length, without padding. Batches are re-padded with zeros past each frame length
    (back-ends ignore frames past `frame_lengths`).
  - Entries are stored in `dtype` (float16 by default: half the disk; SSL hidden states lose ~1e-3 relative
    precision) and returned as float32 on the input's device.
  - Random data augmentation of the waveform cannot be combined with a cache (the augmented input differs
    every epoch); augment cached features instead, or do not cache.
Writes are atomic (temporary file + rename), so concurrent workers and interrupted runs leave no torn files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from spoofrl.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _tensor_fingerprint(tensor: torch.Tensor) -> bytes:
    """Shape, dtype, sum and a few values: cheap, yet changes with any real change of weights."""
    flat = tensor.detach().reshape(-1).to("cpu", torch.float64)
    sample = torch.cat([flat[:64], flat[-64:]]) if flat.numel() > 128 else flat
    summary = [list(tensor.shape), str(tensor.dtype), float(flat.sum()), float(flat.abs().sum())]
    return json.dumps(summary).encode() + sample.numpy().tobytes()


def feature_cache_key(model, dtype: str = "float16") -> str:
    """Hex key of the model's encode stage: its options, sample rate, storage dtype and weights."""
    frontend = model.frontend
    digest = hashlib.sha256()
    signature = {"format": CACHE_FORMAT, "frontend": model.cfg.frontend["name"],
                 "options": frontend.encode_signature(), "sample_rate": model.cfg.sample_rate, "dtype": dtype}
    digest.update(json.dumps(signature, sort_keys=True, default=str).encode())
    for name, tensor in sorted(frontend.encoder_state().items()):
        digest.update(name.encode())
        digest.update(_tensor_fingerprint(tensor))
    return digest.hexdigest()[:20]


def input_fingerprint(wave: torch.Tensor) -> list[float]:
    """[samples, sum, sum of squares] of one unpadded waveform (float64)."""
    w = wave.detach().to(torch.float64)
    return [float(w.numel()), float(w.sum()), float((w * w).sum())]


def _same_input(stored: list[float], actual: list[float]) -> bool:
    if int(stored[0]) != int(actual[0]):
        return False
    scale = max(1.0, actual[2])  # sums computed on another device may differ in the last bits
    return abs(stored[1] - actual[1]) <= 1e-6 * scale and abs(stored[2] - actual[2]) <= 1e-6 * scale


class FeatureCache:
    """Per-utterance cache of `model.extract_features` outputs under `root/<key>/` (see the module doc)."""

    def __init__(self, root: str | Path, model, *, dtype: str = "float16", verify_input: bool = True):
        model = getattr(model, "module", model)
        if not model.frontend_is_frozen:
            raise ConfigError("feature cache: the front-end is trainable (not frozen), so its output changes "
                              "during training and cannot be cached")
        if dtype not in _DTYPES:
            raise ConfigError(f"feature cache: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.dtype = _DTYPES[dtype]
        self.verify_input = verify_input
        self.key = feature_cache_key(model, dtype)
        self.dir = Path(root) / self.key
        self.hits = 0
        self.misses = 0
        self._describe(model, dtype)

    def _describe(self, model, dtype: str) -> None:
        """A human-readable note of what this folder caches (written once)."""
        note = self.dir / "cache.json"
        if note.is_file():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        info = {"format": CACHE_FORMAT, "frontend": model.cfg.frontend["name"],
                "encode_options": model.frontend.encode_signature(), "sample_rate": model.cfg.sample_rate,
                "dtype": dtype}
        tmp = note.with_name(f".cache.json.{os.getpid()}")
        tmp.write_text(json.dumps(info, indent=1, default=str))
        os.replace(tmp, note)

    # --- single entries --------------------------------------------------------------------------------
    def path_for(self, utt_id: str) -> Path:
        digest = hashlib.sha1(utt_id.encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.safetensors"

    def load(self, utt_id: str, fingerprint: list[float] | None = None) -> torch.Tensor | None:
        """The cached [frames, ...] features of `utt_id`, or None (absent, unreadable or for another input)."""
        path = self.path_for(utt_id)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata() or {}
            stored = json.loads(meta.get("input", "null"))
            feats = load_file(str(path))["feats"]
        except (SafetensorError, OSError, ValueError, KeyError) as err:
            log.warning("feature cache: %s unreadable (%s); recomputing", path, err)
            return None
        if meta.get("utt") != utt_id:  # a hash collision, or a file copied from elsewhere
            return None
        if self.verify_input and fingerprint is not None and (stored is None or not _same_input(stored, fingerprint)):
            log.warning("feature cache: input of %r changed since it was cached; recomputing", utt_id)
            return None
        return feats

    def store(self, utt_id: str, feats: torch.Tensor, fingerprint: list[float]) -> None:
        """Save one utterance's unpadded [frames, ...] features."""
        path = self.path_for(utt_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"feats": feats.detach().to("cpu", self.dtype).contiguous()}, str(tmp),
                  metadata={"utt": utt_id, "input": json.dumps(fingerprint)})
        os.replace(tmp, path)

    # --- batches ---------------------------------------------------------------------------------------
    def extract(self, model, utt_ids: Sequence[str], wave: torch.Tensor,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`model.extract_features(wave, lengths)` for a padded batch [B, T], read from the cache where
        possible; misses are computed (per group of equal length, unpadded) and stored.
        Returns (raw [B, F_max, ...] float32 on wave's device, frame_lengths [B])."""
        model = getattr(model, "module", model)
        if len(utt_ids) != wave.shape[0]:
            raise ValueError(f"{len(utt_ids)} utterance ids for a batch of {wave.shape[0]}")
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long)
        sizes = [int(n) for n in lengths.tolist()]
        prints = [input_fingerprint(wave[i, :n]) for i, n in enumerate(sizes)]
        items: list[torch.Tensor | None] = [self.load(u, p) for u, p in zip(utt_ids, prints)]
        missing = [i for i, item in enumerate(items) if item is None]
        self.hits += len(items) - len(missing)
        self.misses += len(missing)
        for group in _groups_by_length(missing, sizes):
            n = sizes[group[0]]
            raw, frame_lengths = model.extract_features(wave[group, :n],
                                                        torch.full((len(group),), n, device=wave.device))
            for row, i in enumerate(group):
                feats = raw[row, :int(frame_lengths[row])]
                self.store(utt_ids[i], feats, prints[i])
                items[i] = feats.to(self.dtype)  # what later epochs will read back
        return _pad(items, wave.device)


def _groups_by_length(indices: list[int], sizes: list[int]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(sizes[i], []).append(i)
    return list(groups.values())


def _pad(items: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    frames = [item.shape[0] for item in items]
    out = torch.zeros((len(items), max(frames), *items[0].shape[1:]), dtype=torch.float32, device=device)
    for i, item in enumerate(items):
        out[i, :frames[i]] = item.to(device=device, dtype=torch.float32)
    return out, torch.tensor(frames, dtype=torch.long, device=device)
