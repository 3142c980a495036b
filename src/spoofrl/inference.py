"""Scoring many waveforms or manifest utterances with a detector, in batches.

Scores are raw log-odds of bona fide (`spoofrl.models.detector.logits_to_score`: logit[bonafide] -
logit[spoof], natural log): higher = more bona fide.
Waveforms are sorted by length and batched with their neighbours so that padding stays small. The model
sees the true lengths, but the frames at a padded wave's end still see zeros instead of the STFT's reflect
padding, and pooled statistics (std, deltas) can move by a few tenths on a short wave. Where a score must
not depend on what else happens to be in the batch (`detect`, the server: the same file must always get
the same score), `exact_lengths=True` batches only waves of identical length, so nothing is padded.
Used by training validation, `detect`, experiments and the server.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

from spoofrl.data.manifest import Utterance
from spoofrl.models.detector import logits_to_score

# How many utterances `score_utterances` loads at once (in units of batches): bounds memory on big lists
# while still letting the length sort group similar clips.
_LOAD_BLOCK_BATCHES = 8


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The detector inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _model_sample_rate(model: torch.nn.Module) -> int:
    cfg = getattr(_unwrap(model), "cfg", None)
    return int(getattr(cfg, "sample_rate", 16000))


def pad_batch(waves: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D float waves to a [B, T] tensor plus their lengths [B]."""
    lengths = [len(w) for w in waves]
    batch = np.zeros((len(waves), max(lengths)), dtype=np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    return (torch.from_numpy(batch).to(device), torch.tensor(lengths, dtype=torch.long, device=device))


def _length_batches(lengths: Sequence[int], batch_size: int, exact: bool = False) -> list[np.ndarray]:
    """Index groups of similar length (stable sort, so ties keep their input order); with `exact`, each
    group holds a single length (no padding at all)."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1) if exact else [order]
    return [g[i:i + batch_size] for g in groups for i in range(0, len(g), batch_size)]


@torch.no_grad()
def _score_sorted(model: torch.nn.Module, waves: Sequence[np.ndarray], device: torch.device,
                  batch_size: int, on_batch=None, exact_lengths: bool = False) -> np.ndarray:
    detector = _unwrap(model)
    out = np.empty(len(waves), dtype=np.float64)
    for idx in _length_batches([len(w) for w in waves], batch_size, exact_lengths):
        wave, lengths = pad_batch([waves[i] for i in idx], device)
        logits = detector(wave, lengths).float()
        out[idx] = logits_to_score(logits).double().cpu().numpy()
        if on_batch is not None:
            on_batch(len(idx))
    return out


def _check_inputs(waves: Sequence[np.ndarray], batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, w in enumerate(waves):
        if np.ndim(w) != 1 or len(w) == 0:
            raise ValueError(f"wave {i}: expected a non-empty 1-D array, got shape {np.shape(w)}")


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, frozen norm statistics) for a block, then the module's previous mode back:
    validation scores a model in the middle of training. The one definition; training uses it too."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def score_waveforms(model: torch.nn.Module, waves: list[np.ndarray], *, device=None,
                    batch_size: int = 16, exact_lengths: bool = False) -> np.ndarray:
    """Raw log-odds of bona fide (float64, one per wave, input order). Waves must be at the model's rate.

    `exact_lengths`: batch only equal-length waves, so a score never depends on the other waves."""
    _check_inputs(waves, batch_size)
    if not waves:
        return np.empty(0, dtype=np.float64)
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    with eval_mode(model):
        return _score_sorted(model, [np.asarray(w, dtype=np.float32) for w in waves], device, batch_size,
                             exact_lengths=exact_lengths)


def score_utterances(model: torch.nn.Module, utts: list[Utterance], *, device=None, batch_size: int = 16,
                     max_seconds: float | None = None, desc: str = "scoring") -> np.ndarray:
    """Load each utterance (spoofrl.audio.load_audio at the model's rate) and score it.

    `max_seconds` keeps only the first N seconds of each file (None = whole file). Audio problems raise
    `AudioError` naming the file. Returns float64 log-odds of bona fide in `utts` order.
    """
    from spoofrl.audio import load_audio
    from spoofrl.log import progress

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scores = np.empty(len(utts), dtype=np.float64)
    if not utts:
        return scores
    sr = _model_sample_rate(model)
    keep = int(round(max_seconds * sr)) if max_seconds is not None else None
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    block = batch_size * _LOAD_BLOCK_BATCHES
    bar = progress(range(len(utts)), desc=desc, total=len(utts), unit="utt")
    with eval_mode(model):
        for start in range(0, len(utts), block):
            waves = [load_audio(u.audio_path, sr)[:keep] for u in utts[start:start + block]]
            scores[start:start + len(waves)] = _score_sorted(model, waves, device, batch_size,
                                                             on_batch=getattr(bar, "update", None))
    if hasattr(bar, "close"):
        bar.close()
    return scores


__all__ = ["score_waveforms", "score_utterances", "pad_batch", "eval_mode"]
