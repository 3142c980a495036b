"""The run folder of `spoofrl train` and its files.

    config.yaml         the fully resolved train config (also saved beside every checkpoint)
    model.safetensors   best weights on the dev set by EER (the last ones when there is no dev set);
                        with config.yaml, the folder loads with spoofrl.models.load_model(run_dir)
    last/               resumable checkpoint: model.safetensors + config.yaml (a model folder too),
                        optimizer.pt (optimiser, scheduler, gradient scaler), rng.pt, state.json (step,
                        stage, best so far), reference / old-policy snapshots and the reference-logit cache
    stage1/             sft_then_grpo: the SFT stage's best model and the weights GRPO started from
    metrics.csv         step,epoch,loss,reward_mean,kl,clip_frac,entropy,lr,dev_eer (empty where n/a)
    train.log           the log
    tb/                 TensorBoard events (every statistic, not only the CSV's)
    summary.json        written last, on success: best_step, best_dev_eer, steps, seconds, ...
"""
from __future__ import annotations

import csv
import json
import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from spoofrl.config import save_yaml
from spoofrl.errors import SpoofrlError
from spoofrl.models.io import save_weights, use_umask_permissions
from spoofrl.runfiles import CONFIG, LAST, METRICS, STAGE1, SUMMARY, TENSORBOARD, TRAIN_LOG, WEIGHTS

LOG = logging.getLogger(__name__)

METRIC_COLUMNS = ["step", "epoch", "loss", "reward_mean", "kl", "clip_frac", "entropy", "lr", "dev_eer"]


def save_model_folder(detector: torch.nn.Module, folder: Path, config: dict) -> None:
    """model.safetensors + config.yaml: a folder spoofrl.models.load_model reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(detector, folder / WEIGHTS)
    save_yaml(config, folder / CONFIG)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    use_umask_permissions(path)


def rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """(torch generator states as tensors, numpy / python states as JSON-able lists)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    plain = {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss], "python": [version, list(internal), gauss_next]}
    return tensors, plain


def set_rng_state(tensors: dict[str, Any], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available() and len(tensors["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(tensors["cuda"])
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(run_dir: Path, *, detector: torch.nn.Module, config: dict, optim_state: dict, state: dict,
                    tensors: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write last/ atomically (into a temporary folder, then swapped in)."""
    tmp, last, old = run_dir / (LAST + ".tmp"), run_dir / LAST, run_dir / (LAST + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_folder(detector, tmp, config)
    torch.save(optim_state, tmp / "optimizer.pt")
    rng_tensors, rng_plain = rng_state()
    torch.save(rng_tensors, tmp / "rng.pt")
    (tmp / "rng.json").write_text(json.dumps(rng_plain))
    for name, group in tensors.items():
        if group:
            _save_tensors(group, tmp / f"{name}.safetensors")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if last.exists():
        last.replace(old)
    tmp.replace(last)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_save(run_dir: Path) -> None:
    """A kill between the two renames of save_checkpoint leaves last.old and no last/: put it back."""
    last, old = run_dir / LAST, run_dir / (LAST + ".old")
    if not last.exists() and old.exists():
        old.replace(last)
    shutil.rmtree(run_dir / (LAST + ".tmp"), ignore_errors=True)


# the keys of state.json that a resume reads
STATE_KEYS = ("step", "stage", "best_eer", "best_step", "evals_since_best", "log_sums", "log_count")


def _unreadable(path: Path, err: BaseException | str) -> SpoofrlError:
    detail = " ".join(str(err).split())[:300] or type(err).__name__
    return SpoofrlError(f"{path}: cannot read this checkpoint file ({detail}); fix or delete {path.parent} "
                        f"to start over")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _unreadable(path, err) from None


def _read_torch(path: Path) -> Any:
    try:
        # weights_only: plain tensors and numbers, no arbitrary pickled objects
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as err:
        raise _unreadable(path, err) from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from spoofrl.models.io import read_weights
    try:
        return read_weights(path)
    except SpoofrlError as err:
        raise _unreadable(path, str(err).removeprefix(f"{path}: ")) from None


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The files of last/; any unreadable one (missing, truncated, invalid JSON, not a checkpoint) is a
    one-line SpoofrlError naming that file."""
    last = run_dir / LAST
    state_path = last / "state.json"
    state = _read_json(state_path)
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
        raise _unreadable(state_path, f"not a checkpoint state: no {', '.join(missing)}")
    optim_path = last / "optimizer.pt"
    optim = _read_torch(optim_path)
    if not isinstance(optim, dict) or any(k not in optim for k in ("optimizer", "scheduler", "scaler")):
        raise _unreadable(optim_path, "not a saved optimizer state")
    out = {"state": state,
           "model": _read_tensors(last / WEIGHTS),
           "optim": optim,
           "rng": (_read_torch(last / "rng.pt"), _read_json(last / "rng.json")),
           "tensors": {}}
    for path in sorted(last.glob("*.safetensors")):
        if path.name != WEIGHTS:
            out["tensors"][path.stem] = _read_tensors(path)
    return out


def write_summary(run_dir: Path, summary: dict) -> None:
    tmp = run_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(run_dir / SUMMARY)


class MetricsWriter:
    """metrics.csv rows and TensorBoard scalars (rank 0 only). On resume, rows after the checkpoint's step
    (written by the killed run after its last checkpoint) are dropped, so the file matches an uninterrupted
    run's."""

    def __init__(self, run_dir: Path, resume_step: int | None, *, metric_column: str = "dev_eer"):
        self.path = run_dir / METRICS
        self.columns = METRIC_COLUMNS[:-1] + [metric_column]  # the task's validation metric last
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        elif not self.path.is_file() or resume_step is None:
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=None if resume_step is None else resume_step + 1)

    def _truncate(self, step: int) -> None:
        with self.path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with self.path.open("w", newline="") as fh:
            csv.writer(fh).writerows(keep)

    def row(self, values: dict[str, Any]) -> None:
        def cell(v):
            if v is None:
                return ""
            return f"{v:.6g}" if isinstance(v, float) else str(v)
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([cell(values.get(c)) for c in self.columns])

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        for key, value in values.items():
            if value is not None:
                self.tb.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()


__all__ = ["CONFIG", "WEIGHTS", "LAST", "STAGE1", "METRICS", "SUMMARY", "TRAIN_LOG", "TENSORBOARD", "METRIC_COLUMNS",
           "save_model_folder", "save_checkpoint", "load_checkpoint", "recover_interrupted_save", "write_summary",
           "MetricsWriter", "rng_state", "set_rng_state"]
