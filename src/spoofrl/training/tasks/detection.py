"""The detection task: a two-class detector on manifest audio, model selection by dev EER.

Everything the one loop (spoofrl.training.trainer) needs that is specific to detection lives here: building
the detector from the config's model section (or --init's architecture), the training and dev data (crops,
augmentation, batch planning, class balance, the frozen front-end's feature cache), the model access that
objectives call for logits of the current, old and reference models, validation and saving a model folder.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from spoofrl.config import to_dict
from spoofrl.data.augment import Augmenter
from spoofrl.data.dataset import (NUM_CLASSES, Batch, BatchPlanner, TrainDataset, inverse_frequency_weights,
                                  load_batches, utterance_durations)
from spoofrl.data.manifest import BONAFIDE, SPOOF, Utterance, check_audio_exists, read_manifest
from spoofrl.errors import ConfigError
from spoofrl.runfiles import WEIGHTS
from spoofrl.training import distributed, fsdp
from spoofrl.training.config import TrainConfig
from spoofrl.training.forward import LogitsCache, ModelAccess, ParamSnapshot, TrainForward
from spoofrl.training.objectives import Objective
from spoofrl.training.runfolder import save_model_folder

LOG = logging.getLogger(__name__)


class DetectionTask:
    name = "detection"
    metric = "dev EER"          # lower is better
    metric_column = "dev_eer"   # its column in metrics.csv (and summary.json's best_<column>)

    @staticmethod
    def default_model_section() -> dict:
        return {"preset": "logmel-linear"}

    @staticmethod
    def resolve_model_section(section) -> dict:
        from spoofrl.training.config import resolve_model_section
        return resolve_model_section(section)

    @staticmethod
    def objectives():
        from spoofrl.training.registry import OBJECTIVES
        return OBJECTIVES

    def __init__(self, cfg: TrainConfig, out: Path, dist: distributed.DistInfo):
        self.cfg, self.out, self.dist, self.device = cfg, out, dist, dist.device
        self.model: nn.Module | None = None
        self.wrapped: nn.Module | None = None
        self.sharded = dist.enabled and cfg.parallel == "fsdp"   # FSDP2 (spoofrl.training.fsdp), else DDP

    def _shard(self, model: nn.Module, **entry_points) -> None:
        """Shard `model` over the processes (parallel: fsdp); precision bf16 becomes FSDP's mixed precision."""
        fsdp.shard_model(model, self.dist, mixed_precision="bf16" if self.cfg.precision == "bf16" else "fp32",
                         **entry_points)

    def _ddp(self, module: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    # ------------------------------------------------------------------------------------------ model
    def model_section(self, init: Path | None) -> dict:
        """The architecture to build: the config's model section, or --init's."""
        if init is None:
            return self.cfg.model
        from spoofrl.models.io import read_model_config
        init_model = to_dict(read_model_config(init).resolved())
        if init_model != self.cfg.model:
            LOG.info("--init: using the architecture of %s (%s), not the config's model section",
                     init, init_model.get("preset") or "custom")
        return init_model

    def build_model(self, init_weights: Path | None) -> nn.Module:
        """The detector of cfg.model (seeded: identical on every process and resume), with --init's weights."""
        from spoofrl.models import build_model
        from spoofrl.models.io import load_model
        torch.manual_seed(self.cfg.seed)
        detector = build_model(self.cfg.model)
        if init_weights is not None:
            detector.load_state_dict(load_model(init_weights).state_dict())
        if self.cfg.optim.frontend_lr_scale == 0:
            for p in detector.frontend.parameters():
                p.requires_grad_(False)
        self.model = detector.to(self.device)
        if self.sharded:   # the entry points besides forward that training calls (ModelAccess)
            self._shard(self.model, forward_methods=("forward_features", "extract_features"))
        wrapped = TrainForward(self.model)
        self.wrapped = self._ddp(wrapped) if self.dist.enabled and not self.sharded else wrapped
        return self.model

    @property
    def sample_rate(self) -> int:
        """The rate the model takes its audio at (the data are read at it)."""
        return self.model.cfg.sample_rate

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups: the front-end at lr x optim.frontend_lr_scale, the rest at lr."""
        scale = self.cfg.optim.frontend_lr_scale
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        frontend = [p for n, p in named if n.startswith("frontend.")]
        rest = [p for n, p in named if not n.startswith("frontend.")]
        return [g for g in ({"params": rest, "lr": lr, "lr_scale": 1.0},
                            {"params": frontend, "lr": lr * scale, "lr_scale": scale}) if g["params"]]

    def save_model(self, folder: Path, config: dict) -> None:
        save_model_folder(self.model, folder, config)

    def has_model(self, folder: Path) -> bool:
        return (folder / WEIGHTS).is_file()

    def load_weights(self, folder: Path) -> None:
        """The weights of a model folder written by save_model (a stage's best) into the model."""
        from safetensors.torch import load_file
        fsdp.load_full_state_dict(self.model, load_file(str(folder / WEIGHTS), device=str(self.device)))

    def _folder_state(self, folder: str) -> dict[str, torch.Tensor]:
        """The state dict of a model folder this task saves (for objective.reference)."""
        from spoofrl.models.io import load_model
        return load_model(folder).state_dict()

    def reference_from(self, folder: str) -> ParamSnapshot:
        """objective.reference: a model folder of the same architecture as the frozen reference."""
        state = self._folder_state(folder)
        mine = ParamSnapshot.of(self.model).tensors
        bad = [k for k, v in mine.items() if k not in state or state[k].shape != v.shape]
        if bad:
            raise ConfigError(f"objective.reference: {folder} has another architecture than the trained model "
                              f"(e.g. {bad[0]})")
        return ParamSnapshot.from_state({k: state[k] for k in mine}, self.device, self.model)

    # ------------------------------------------------------------------------------------------ data
    def _read_split(self, manifest: str, subsets: list[str], what: str) -> list[Utterance]:
        if not manifest:
            raise ConfigError(f"data.manifest: no manifest given (needed for the {what} data)")
        rows = read_manifest(manifest, subsets or None)
        if not rows:
            raise ConfigError(f"{manifest}: no {what} utterances")
        if self.cfg.data.check_audio:
            check_audio_exists(rows, manifest)
        return rows

    def _training_utterances(self) -> list[Utterance]:
        d = self.cfg.data
        return self._read_split(d.manifest, d.train_subsets, "training")

    def _check_train_labels(self) -> None:
        labels = {u.label for u in self.train_utts}
        if len(labels) < 2:
            LOG.warning("the training data has only %s utterances", labels.pop())

    def _check_dev_labels(self, manifest: str) -> None:
        if len({u.label for u in self.dev_utts}) < 2:
            raise ConfigError(f"{manifest}: the dev subsets {', '.join(self.cfg.data.dev_subsets)} need both "
                              f"bonafide and spoof utterances to compute an EER")

    def build_data(self) -> None:
        d, sr = self.cfg.data, self.sample_rate
        self.train_utts = self._training_utterances()
        self._check_train_labels()
        self.dev_utts: list[Utterance] = []
        if d.dev_subsets:
            manifest = d.dev_manifest or d.manifest
            self.dev_utts = self._read_split(manifest, d.dev_subsets, "dev")
            self._check_dev_labels(manifest)
            shared = {u.audio_path for u in self.train_utts} & {u.audio_path for u in self.dev_utts}
            if shared:  # e.g. train_subsets: [] (every row) takes the dev rows too
                LOG.warning("%d file(s) are in both the training and the dev data (e.g. %s): the dev EER that picks "
                            "the best model will be optimistic", len(shared), min(shared))
        crop = int(round(d.crop_seconds * sr))
        augmenter = Augmenter(d.augment, sr) if d.augment.enabled() else None
        self.dataset = TrainDataset(self.train_utts, sr, crop_samples=crop, crop=d.crop, pad=d.pad,
                                    max_samples=int(round(d.max_seconds * sr)), augmenter=augmenter,
                                    seed=self.cfg.seed)
        lengths = None
        if d.batching == "dynamic":
            lengths = self._effective_lengths(crop, sr)
        self.planner = BatchPlanner(self.dataset.targets, batching=d.batching, batch_size=d.batch_size,
                                    batch_samples=int(d.batch_seconds * sr), effective_lengths=lengths,
                                    balance=d.balance, seed=self.cfg.seed, rank=self.dist.rank,
                                    world=self.dist.world)
        self.class_weights = torch.tensor(inverse_frequency_weights(self.dataset.targets), dtype=torch.float32,
                                          device=self.device)
        self.feature_cache = self._open_feature_cache()

    @property
    def has_dev(self) -> bool:
        return bool(self.dev_utts)

    def loss_class_weights(self) -> torch.Tensor | None:
        """Per-class loss weights for objectives under data.balance: loss (None otherwise)."""
        return self.class_weights.cpu() if self.cfg.data.balance == "loss" else None

    def _open_feature_cache(self):
        """The on-disk cache of the frozen encode stage, or None (see data.feature_cache)."""
        setting = self.cfg.data.feature_cache
        if setting == "off" or not getattr(self.model, "frontend_is_frozen", False):
            return None
        if self.sharded:   # a cache hit skips a sharded forward on one process only: the others would wait
            LOG.info("data.feature_cache is off under parallel fsdp")
            return None
        if setting == "auto":
            if not getattr(self.model, "frontend_cache_recommended", False):
                return None
            folder = self.out / "feature_cache"
        else:
            folder = Path(setting)
        from spoofrl.features.cache import FeatureCache
        LOG.info("caching the frozen front-end's output in %s", folder)
        return FeatureCache(folder, self.model)

    def _utt_ids(self, batch: Batch) -> list[str]:
        """Ids naming each item's exact input: file, crop start and length (at the model's rate)."""
        return [f"{self.train_utts[i].audio_path}#{s}+{n}"
                for i, s, n in zip(batch.index.tolist(), batch.start.tolist(), batch.lengths.tolist())]

    def _effective_lengths(self, crop: int, sr: int) -> np.ndarray:
        d = self.cfg.data
        if crop and d.pad == "repeat":
            return np.full(len(self.train_utts), crop, dtype=np.int64)
        lengths = utterance_durations(self.train_utts, sr)
        limit = crop or int(round(d.max_seconds * sr))
        return np.minimum(lengths, limit) if limit else lengths

    def steps_in_epoch(self, epoch: int) -> int:
        return self.planner.steps_in_epoch(epoch)

    def batches(self, step: int, total: int) -> Iterator[tuple[int, int, int, Batch]]:
        """(global step, epoch, position in epoch, batch) from `step` to `total`."""
        epoch, pos = self.planner.locate(step)
        while step < total:
            for batch in load_batches(self.dataset, self.planner, epoch, pos, self.cfg.data.workers):
                yield step, epoch, pos, batch
                step, pos = step + 1, pos + 1
                if step >= total:
                    return
            epoch, pos = epoch + 1, 0

    # ------------------------------------------------------------------------------------------ steps
    def access(self, objective: Objective, reference: ParamSnapshot | None, autocast) -> ModelAccess:
        """What the objective calls for logits: current model, old policy, reference (with its logits cache)."""
        needs_ref = objective.needs_reference
        # no cache under FSDP: a hit skips a reference forward, a collective there
        cache = LogitsCache(len(self.dataset), NUM_CLASSES, self.device) if needs_ref and not self.sharded else None
        access = ModelAccess(self.wrapped, self.model, autocast=autocast, ref_cache=cache,
                             feature_cache=self.feature_cache, utt_ids=self._utt_ids)
        access.ref = reference if needs_ref else None
        return access

    def step_inputs(self, batch: Batch, access: ModelAccess, objective: Objective) -> tuple[Batch, torch.Tensor | None]:
        """The batch on the device, prepared in `access`, and its per-utterance loss weights (or None)."""
        batch = batch.to(self.device)
        access.prepare(batch)
        weighted = self.cfg.data.balance == "loss" and objective.sample_weighted
        return batch, self.class_weights[batch.targets] if weighted else None

    def validate(self) -> float:
        """Dev EER (fraction), the dev set split over the processes."""
        from spoofrl.inference import score_utterances
        from spoofrl.metrics import compute_eer
        d = self.cfg.data
        mine = list(range(self.dist.rank, len(self.dev_utts), self.dist.world))
        model = self.model
        if self.sharded:   # each process scores its share (a different number of batches): on a full copy
            from spoofrl.models import build_model
            model = fsdp.plain_copy(self.model, lambda: build_model(self.cfg.model))
        scores = score_utterances(model, [self.dev_utts[i] for i in mine], device=self.device,
                                  batch_size=d.dev_batch_size, max_seconds=d.dev_max_seconds or None, desc="dev")
        full = np.empty(len(self.dev_utts))
        for idx, sc in distributed.gather_objects(self.dist, (mine, scores.tolist())):
            full[idx] = sc
        labels = np.array([u.label for u in self.dev_utts])
        eer, _ = compute_eer(full[labels == BONAFIDE], full[labels == SPOOF])
        return float(eer)

    def summary(self) -> dict:
        return {"train_utterances": len(self.train_utts), "dev_utterances": len(self.dev_utts)}
