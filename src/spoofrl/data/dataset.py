"""Training data: utterances from a manifest, cropped / padded, augmented, batched.

Reproducibility: every random choice of an item (crop offset, augmentation) comes from a generator seeded by
(seed, epoch, utterance index), and every epoch's batch order from one seeded by (seed, epoch). So a run
gives the same batches whatever the number of loader workers, and a resumed run continues with exactly the
batches the uninterrupted run would have seen.

Items are requested as `(index, epoch)` pairs; `collate` pads them into a `Batch`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from spoofrl.audio import audio_info, load_audio
from spoofrl.data.augment import Augmenter
from spoofrl.data.manifest import LABEL_INDEX, Utterance
from spoofrl.errors import AudioError, ConfigError, SpoofrlError

NUM_CLASSES = len(LABEL_INDEX)


@dataclass
class Batch:
    """A padded training batch. `start` is each crop's first sample in its file; `augmented` marks items whose
    signal was changed (their reference-model outputs cannot be cached)."""

    wave: torch.Tensor        # [B, T] float32
    lengths: torch.Tensor     # [B] samples
    targets: torch.Tensor     # [B] class index (0 spoof, 1 bona fide)
    index: torch.Tensor       # [B] utterance index in the dataset
    start: torch.Tensor       # [B] crop offset (samples)
    augmented: torch.Tensor   # [B] bool

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.wave, self.lengths, self.targets, self.index,
                                                                  self.start, self.augmented)))

    def pin_memory(self) -> "Batch":
        """Page-locked copies, so that `to(cuda, non_blocking=True)` overlaps with compute (DataLoader calls it)."""
        return Batch(*(t.pin_memory() for t in (self.wave, self.lengths, self.targets, self.index, self.start,
                                                 self.augmented)))

    def subset(self, rows: torch.Tensor) -> "Batch":
        """The rows `rows` (bool mask or indices), trimmed to their longest length."""
        lengths = self.lengths[rows]
        longest = int(lengths.max()) if len(lengths) else 0
        return Batch(self.wave[rows][:, :longest], lengths, self.targets[rows], self.index[rows], self.start[rows],
                     self.augmented[rows])

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, 0x5EED])


class TrainDataset(torch.utils.data.Dataset):
    """Utterances -> (wave, length, target, index, start, augmented) with cropping and augmentation.

    crop_samples > 0: a window of that length (random offset, or the start), shorter files padded by
    repetition (pad 'repeat') or left short for zero-padding in the batch (pad 'zero').
    crop_samples == 0: whole files; files longer than max_samples (when > 0) are cut to a random window.
    """

    def __init__(self, utts: Sequence[Utterance], sample_rate: int, *, crop_samples: int = 0,
                 crop: str = "random", pad: str = "repeat", max_samples: int = 0,
                 augmenter: Augmenter | None = None, seed: int = 0):
        self.utts = list(utts)
        self.sample_rate = sample_rate
        self.crop_samples, self.crop, self.pad = crop_samples, crop, pad
        self.max_samples = max_samples
        self.augmenter = augmenter
        self.seed = seed
        self.targets = np.array([u.target for u in self.utts], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.utts)

    def _window(self, x: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        limit = self.crop_samples or self.max_samples
        if limit and len(x) > limit:
            random_start = self.crop == "random" or not self.crop_samples
            start = int(rng.integers(0, len(x) - limit + 1)) if random_start else 0
            return start, x[start:start + limit]
        if self.crop_samples and len(x) < self.crop_samples and self.pad == "repeat":
            return 0, np.tile(x, math.ceil(self.crop_samples / len(x)))[:self.crop_samples]
        return 0, x

    def __getitem__(self, key: tuple[int, int]) -> dict:
        try:
            return self._item(*key)
        except SpoofrlError as err:
            # A loader worker's exception reaches the training process re-wrapped in a RuntimeError with the
            # worker's traceback; a failure sent as data keeps the one-line message (see load_batches).
            return {"failure": LoadFailure.of(err, self.utts[key[0]].audio_path)}

    def _item(self, index: int, epoch: int) -> dict:
        utt = self.utts[index]
        rng = item_rng(self.seed, epoch, index)
        x = load_audio(utt.audio_path, self.sample_rate)
        start, x = self._window(x, rng)
        augmented = False
        if self.augmenter is not None:
            x, augmented = self.augmenter(x, rng)
        return {"wave": np.ascontiguousarray(x, dtype=np.float32), "target": int(self.targets[index]),
                "index": index, "start": start, "augmented": augmented}


@dataclass
class LoadFailure:
    """Why an item could not be made: the file and the reason, sent back from a loader worker as data
    (DataLoader re-raises a worker's exception as text with the worker's traceback, not as our error)."""

    path: str
    reason: str

    @classmethod
    def of(cls, err: SpoofrlError, path) -> "LoadFailure":
        if isinstance(err, AudioError):
            return cls(err.path, err.reason)
        return cls(str(path), f"cannot prepare it for training ({err})")  # e.g. a codec round trip failed

    def error(self) -> AudioError:
        return AudioError(self.path, self.reason)


def collate(items: list[dict]) -> Batch | LoadFailure:
    failures = [it["failure"] for it in items if "failure" in it]
    if failures:
        return failures[0]
    lengths = [len(it["wave"]) for it in items]
    wave = np.zeros((len(items), max(lengths)), dtype=np.float32)
    for i, it in enumerate(items):
        wave[i, :lengths[i]] = it["wave"]
    return Batch(torch.from_numpy(wave), torch.tensor(lengths, dtype=torch.long),
                 torch.tensor([it["target"] for it in items], dtype=torch.long),
                 torch.tensor([it["index"] for it in items], dtype=torch.long),
                 torch.tensor([it["start"] for it in items], dtype=torch.long),
                 torch.tensor([it["augmented"] for it in items], dtype=torch.bool))


# ------------------------------------------------------------------------------------------ class balance


def class_counts(targets: np.ndarray) -> np.ndarray:
    return np.bincount(targets, minlength=NUM_CLASSES)


def inverse_frequency_weights(targets: np.ndarray) -> np.ndarray:
    """Per-class weights N / (K n_c): each class contributes equally; 1 for a balanced set."""
    counts = class_counts(targets).astype(np.float64)
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


# ------------------------------------------------------------------------------------------ batch plans


def utterance_durations(utts: Sequence[Utterance], sample_rate: int, desc: str = "reading durations") -> np.ndarray:
    """Lengths in samples at `sample_rate`, from file headers (no decoding for wav/flac)."""
    from spoofrl.log import progress
    out = np.empty(len(utts), dtype=np.int64)
    for i, u in enumerate(progress(utts, desc=desc, unit="file")):
        seconds, _, _ = audio_info(u.audio_path)
        out[i] = max(int(round(seconds * sample_rate)), 1)
    return out


class BatchPlanner:
    """The batches of each epoch, as lists of utterance indices, for one process of a (possibly
    distributed) run. Same seed and epoch -> same batches."""

    def __init__(self, targets: np.ndarray, *, batching: str, batch_size: int, batch_samples: int,
                 effective_lengths: np.ndarray | None, balance: str, seed: int, rank: int = 0, world: int = 1):
        self.targets = targets
        self.batching, self.batch_size, self.batch_samples = batching, batch_size, batch_samples
        self.lengths = effective_lengths
        self.balance, self.seed = balance, seed
        self.rank, self.world = rank, world
        if batching == "dynamic" and effective_lengths is None:
            raise ValueError("dynamic batching needs the utterance lengths")
        self._cache: dict[int, list[list[int]]] = {}

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.targets)
        if self.balance == "sampler":
            per_class = inverse_frequency_weights(self.targets)[self.targets]
            return rng.choice(n, size=n, replace=True, p=per_class / per_class.sum())
        return rng.permutation(n)

    def _fixed(self, order: np.ndarray) -> list[list[int]]:
        size = min(self.batch_size, len(order))
        full = len(order) // size
        return [order[i * size:(i + 1) * size].tolist() for i in range(full)]  # an incomplete last batch is dropped

    def _dynamic(self, order: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        lengths = self.lengths[order]
        ranked = order[np.argsort(lengths, kind="stable")]  # similar lengths together; ties in random order
        batches, current, longest = [], [], 0
        for idx in ranked.tolist():
            need = max(longest, int(self.lengths[idx])) * (len(current) + 1)
            if current and need > self.batch_samples:
                batches.append(current)
                current, longest = [], 0
            current.append(idx)
            longest = max(longest, int(self.lengths[idx]))
        if current:
            batches.append(current)
        rng.shuffle(batches)
        return batches

    def global_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch, 0xBA7C4])
        order = self._order(rng)
        batches = self._fixed(order) if self.batching == "fixed" else self._dynamic(order, rng)
        usable = len(batches) // self.world * self.world  # every process gets the same number of batches
        if usable == 0:
            raise ConfigError(f"the training data makes {len(batches)} batch(es), fewer than the {self.world} "
                              f"processes; use smaller batches or fewer processes")
        return batches[:usable]

    def batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch` (every world-th global batch)."""
        if epoch not in self._cache:
            self._cache = {epoch: self.global_batches(epoch)[self.rank::self.world]}
        return self._cache[epoch]

    def steps_in_epoch(self, epoch: int) -> int:
        return len(self.batches(epoch))

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, batch position in it) of the global optimizer step `step` (0-based)."""
        epoch = 0
        while True:
            n = self.steps_in_epoch(epoch)
            if step < n:
                return epoch, step
            step -= n
            epoch += 1


def make_loader(dataset: TrainDataset, planner: BatchPlanner, epoch: int, first: int, workers: int
                ) -> torch.utils.data.DataLoader:
    """Loader over `planner`'s batches of `epoch` from position `first` on (items that failed come as a
    LoadFailure instead of a Batch; load_batches raises them)."""
    batches = [[(i, epoch) for i in b] for b in planner.batches(epoch)[first:]]
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       worker_init_fn=_worker_init if workers else None,
                                       pin_memory=torch.cuda.is_available())


def load_batches(dataset: TrainDataset, planner: BatchPlanner, epoch: int, first: int, workers: int
                 ) -> Iterator[Batch]:
    """The batches of make_loader; an unusable file raises its AudioError (naming the file) in this process."""
    for batch in make_loader(dataset, planner, epoch, first, workers):
        if isinstance(batch, LoadFailure):
            raise batch.error()
        yield batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # loader workers decode audio; leave the cores to the model


__all__ = ["Batch", "TrainDataset", "collate", "BatchPlanner", "make_loader", "load_batches", "LoadFailure",
           "inverse_frequency_weights", "class_counts", "utterance_durations", "item_rng", "NUM_CLASSES"]
