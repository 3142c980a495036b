"""A detector = front-end + back-end, built from a `ModelConfig` by registry key.

Output convention (every model): `forward` returns logits [B, 2] over (spoof, bonafide);
`score` = logits[:, 1] - logits[:, 0] = log-odds of bona fide (natural log; higher = more bona fide).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spoofrl.config import ConfigError, from_dict, option, to_dict
from spoofrl.models.registry import BACKENDS, FRONTENDS


def _split_spec(spec: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"model.{kind} needs a 'name' (registry key) and its options")
    rest = {k: v for k, v in spec.items() if k != "name"}
    return spec["name"], rest


@dataclass
class ModelConfig:
    frontend: dict[str, Any] = option(factory=lambda: {"name": "logmel"},
                                      doc="front-end registry key under 'name' plus its options")
    backend: dict[str, Any] = option(factory=lambda: {"name": "pool-linear"},
                                     doc="back-end registry key under 'name' plus its options")
    sample_rate: int = option(16000, "sample rate the model expects; inputs are resampled to it")
    preset: str = option("", "name of the preset this config came from (informational)")

    def component_configs(self):
        """(front-end class, its Config, back-end class, its Config), validated."""
        fe_name, fe_opts = _split_spec(self.frontend, "frontend")
        be_name, be_opts = _split_spec(self.backend, "backend")
        fe_cls, be_cls = FRONTENDS.get(fe_name), BACKENDS.get(be_name)
        return (fe_cls, from_dict(fe_cls.Config, fe_opts, prefix=f"model.frontend({fe_name})"),
                be_cls, from_dict(be_cls.Config, be_opts, prefix=f"model.backend({be_name})"))

    def validate(self):
        self.component_configs()

    def resolved(self) -> "ModelConfig":
        """Same config with every component option filled in with its default (saved beside weights)."""
        _, fe_cfg, _, be_cfg = self.component_configs()
        return ModelConfig(frontend={"name": self.frontend["name"], **to_dict(fe_cfg)},
                           backend={"name": self.backend["name"], **to_dict(be_cfg)},
                           sample_rate=self.sample_rate, preset=self.preset)


class Detector(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        fe_cls, fe_cfg, be_cls, be_cfg = cfg.component_configs()
        self.frontend = fe_cls(fe_cfg)
        self.backend = be_cls(be_cfg, self.frontend.out_dim)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        feats, frame_lengths = self.frontend(wave, lengths)
        return self.backend(feats, frame_lengths)

    @staticmethod
    def logits_to_score(logits: torch.Tensor) -> torch.Tensor:
        """Log-odds of bona fide from (spoof, bonafide) logits."""
        return logits[..., 1] - logits[..., 0]

    @torch.no_grad()
    def score(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_to_score(self(wave, lengths))


def build_model(cfg: ModelConfig | dict) -> Detector:
    if isinstance(cfg, dict):
        cfg = from_dict(ModelConfig, cfg, prefix="model")
    return Detector(cfg)


def load_model_preset(name_or_path: str, overrides: list[str] | None = None) -> ModelConfig:
    """A preset from configs/models/ (or a YAML path) -> validated ModelConfig."""
    from pathlib import Path

    from spoofrl.config import apply_overrides, load_yaml, resolve_preset
    path = resolve_preset("models", name_or_path)
    data = apply_overrides(load_yaml(path), overrides)
    data.setdefault("preset", Path(path).stem)
    return from_dict(ModelConfig, data, prefix="model")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ModelConfig", "Detector", "build_model", "load_model_preset", "count_parameters", "field"]
