"""Saving and loading models without pickle: weights in safetensors, config in YAML.

A model folder holds `model.safetensors` + `config.yaml` (the run's config; its `model` section, or the
whole file if it is a bare model config) and optionally `calibration.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from spoofrl.config import from_dict, load_yaml, save_yaml, to_dict
from spoofrl.errors import SpoofrlError
from spoofrl.models.detector import Detector, ModelConfig, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CALIBRATION = "calibration.json"


def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; tied/shared tensors are cloned so safetensors accepts them."""
    model = getattr(model, "module", model)  # unwrap DDP
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state_for_saving(model), str(tmp))
    tmp.replace(path)


def save_model(model: Detector, folder: str | Path, run_config: dict | None = None) -> Path:
    """Write weights and config into `folder` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / WEIGHTS)
    model = getattr(model, "module", model)
    cfg = dict(run_config) if run_config is not None else {}
    cfg["model"] = to_dict(model.cfg.resolved())
    save_yaml(cfg, folder / CONFIG)
    return folder


def read_model_config(folder: str | Path) -> ModelConfig:
    folder = Path(folder)
    data = load_yaml(folder / CONFIG)
    model_section = data.get("model", data)
    return from_dict(ModelConfig, model_section, prefix="model")


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Rebuild a saved detector on `device`, in eval mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpoofrlError(f"{folder}: model folder not found")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise SpoofrlError(f"{folder}: no {WEIGHTS} in the model folder")
    model = build_model(read_model_config(folder))
    state = load_file(str(weights), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SpoofrlError(f"{weights}: weights do not match the config "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval()


def load_calibration(folder: str | Path) -> dict | None:
    path = Path(folder) / CALIBRATION
    return json.loads(path.read_text()) if path.is_file() else None
