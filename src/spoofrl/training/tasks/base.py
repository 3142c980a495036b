"""What the one training loop needs from a task (spoofrl.training.trainer); detection is the first task.

The loop owns what every task shares: the run folder, configs and resume, stages and objectives, the
optimizer and schedule, old-policy and reference snapshots of the model's parameters, gradient steps,
checkpoints, Ctrl-C, processes and logging. The task owns what depends on the model and the data:
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from spoofrl.training.forward import ParamSnapshot


class Task(Protocol):
    name: str
    metric: str                 # what validate() returns, lower is better (e.g. "dev EER")
    metric_column: str          # its column in metrics.csv and summary.json (best_<column>), e.g. "dev_eer"
    model: nn.Module            # the trained model, set by build_model
    wrapped: nn.Module          # what runs the training forward (the model, or its DDP wrapper)
    has_dev: bool               # a validation set exists (else the last model is kept)

    @staticmethod
    def default_model_section() -> dict:
        """The model section of a config that gives none."""

    @staticmethod
    def resolve_model_section(section: Any) -> dict:
        """The config's model section, validated and with every default filled in (saved in config.yaml)."""

    @staticmethod
    def objectives() -> Any:
        """The registry of the task's objectives (name -> class built as cls(options, class_weights))."""

    def model_section(self, init: Path | None) -> dict:
        """The model config to build: the run config's, or the architecture of the --init folder."""

    def build_model(self, init_weights: Path | None) -> nn.Module:
        """Build the model (seeded from cfg.seed), load `init_weights`' weights when given, wrap it."""

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups at base rate `lr`; each carries `lr_scale` (its rate / lr)."""

    def save_model(self, folder: Path, config: dict) -> None:
        """A model folder the task's loader reads (weights + config)."""

    def has_model(self, folder: Path) -> bool:
        """A model folder written by save_model is there (a stage's best)."""

    def load_weights(self, folder: Path) -> None:
        """Load the weights of a folder written by save_model into the model (a stage's best)."""

    def reference_from(self, folder: str) -> ParamSnapshot:
        """objective.reference: another model folder's parameters as the frozen reference."""

    def build_data(self) -> None:
        """Read and check the training (and dev) data; plan the batches."""

    def loss_class_weights(self) -> torch.Tensor | None:
        """Per-class weights handed to objectives (class-balanced losses), or None."""

    def steps_in_epoch(self, epoch: int) -> int: ...

    def batches(self, step: int, total: int) -> Iterator[tuple[int, int, int, Any]]:
        """(global step, epoch, position in the epoch, batch) from `step` to `total`, deterministic for a seed."""

    def access(self, objective: Any, reference: ParamSnapshot | None, autocast: Any) -> Any:
        """What the objective calls for model outputs; has `old`, `ref` and `ref_cache` (each may be None)."""

    def step_inputs(self, batch: Any, access: Any, objective: Any) -> tuple[Any, torch.Tensor | None]:
        """The batch on the device, prepared in `access`, and its per-item loss weights (or None)."""

    def validate(self) -> float:
        """The validation metric of the current model (lower is better), over every process's share."""

    def summary(self) -> dict:
        """Task facts for summary.json (e.g. numbers of training and dev utterances)."""
