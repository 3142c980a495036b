"""Saving and loading models without pickle: weights in safetensors, config in YAML.

A model folder holds `model.safetensors` + `config.yaml` (the run's config; its `model` section, or the
whole file if it is a bare model config) and optionally `calibration.json`.

The saved `model` section is `Detector.resolved_config()`: every option filled in, and for an SSL front-end
the full Hugging Face config of the encoder, so a folder loads on a machine without the original
pretrained checkpoint (all weights, SSL ones included, are in model.safetensors).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from spoofrl.config import load_yaml, save_yaml, to_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.models.detector import Detector, ModelConfig, build_model, model_config_from_dict
from spoofrl.runfiles import CALIBRATION, CONFIG, WEIGHTS



def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; tied/shared tensors are cloned so safetensors accepts them."""
    model = getattr(model, "module", model)  # unwrap DDP
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Write the state dict atomically (temporary file, then rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state_for_saving(model), str(tmp))
    use_umask_permissions(tmp)
    tmp.replace(path)


def _read_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it is to set it; done once, at import
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def use_umask_permissions(path: str | Path) -> None:
    """safetensors creates files readable by their owner only (0600); give them the permissions of any other
    file the user writes (0666 minus the umask), so a model folder can be served or shared like its config."""
    os.chmod(path, 0o666 & ~_UMASK)


def resolved_model_dict(model: torch.nn.Module) -> dict:
    """The `model` section to save beside the weights of `model` (a Detector, possibly DDP-wrapped)."""
    model = getattr(model, "module", model)
    return to_dict(model.resolved_config())


def save_model(model: Detector, folder: str | Path, run_config: dict | None = None) -> Path:
    """Write weights and config into `folder` (created). `run_config` (e.g. the training config) is saved
    too, with its `model` section replaced by the model's fully resolved config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / WEIGHTS)
    cfg = dict(run_config) if run_config is not None else {}
    cfg["model"] = resolved_model_dict(model)
    save_yaml(cfg, folder / CONFIG)
    return folder


def read_model_config(folder: str | Path) -> ModelConfig:
    folder = Path(folder)
    data = load_yaml(folder / CONFIG)
    model_section = data.get("model", data)
    try:
        return model_config_from_dict(model_section)
    except ConfigError as err:
        raise ConfigError(f"{folder / CONFIG}: {err}") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU; a missing, truncated or corrupt file is a one-line
    SpoofrlError naming it."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        detail = " ".join(str(err).split())[:300]
        raise SpoofrlError(f"{path}: not a readable safetensors file ({detail})") from None


_read_weights = read_weights


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Rebuild a saved detector on `device` ('cpu', 'cuda', 'cuda:1', 'auto' = CUDA when present, a
    torch.device), in eval mode.

    No pickle is involved: the architecture comes from config.yaml, the tensors from model.safetensors
    (read on the CPU, then moved, so a GPU-trained folder loads on a CPU-only machine and vice versa)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpoofrlError(f"{folder}: model folder not found")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise SpoofrlError(f"{folder}: no {WEIGHTS} in the model folder")
    target = _checked_device(device)
    cfg = read_model_config(folder)
    try:
        model = build_model(cfg)
    except ConfigError as err:
        raise ConfigError(f"{folder / CONFIG}: {err}") from None
    state = read_weights(weights)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = " ".join(str(err).split())[:300]
        raise SpoofrlError(f"{weights}: weights do not match {folder / CONFIG} ({detail})") from None
    if missing or unexpected:
        raise SpoofrlError(f"{weights}: weights do not match {folder / CONFIG} "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(target).eval()


def _checked_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        from spoofrl.device import pick_device
        return pick_device("auto")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise SpoofrlError(f"bad device {str(device)!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpoofrlError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SpoofrlError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_calibration(folder: str | Path) -> dict | None:
    path = Path(folder) / CALIBRATION
    return json.loads(path.read_text()) if path.is_file() else None
