"""A detector = front-end + back-end, built from a `ModelConfig` by registry key.

Output convention (every model): `forward` returns logits [B, 2] over (spoof, bonafide);
`score` = logits[:, 1] - logits[:, 0] = log-odds of bona fide (natural log; higher = more bona fide).

Two-stage use for frozen front-ends (e.g. a frozen SSL encoder whose hidden states are cached on disk):
    raw, frame_lengths = model.extract_features(wave, lengths)   # frozen part: cache this per utterance
    logits = model.forward_features(raw, frame_lengths)          # trainable part: front-end head + back-end
`model(wave, lengths)` is exactly `forward_features(*extract_features(wave, lengths))`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spoofrl.config import ConfigError, from_dict, option, to_dict
from spoofrl.models.registry import BACKENDS, FRONTENDS


def logits_to_score(logits: torch.Tensor) -> torch.Tensor:
    """The score, defined once: log-odds of bona fide from (spoof, bonafide) logits, natural log (higher =
    more bona fide). Inference, export and the models all call this."""
    return logits[..., 1] - logits[..., 0]


def _split_spec(spec: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"model.{kind} needs a 'name' (registry key) and its options")
    rest = {k: v for k, v in spec.items() if k != "name"}
    return spec["name"], rest


@dataclass
class ModelConfig:
    frontend: dict[str, Any] = option(factory=lambda: {"name": "logmel"},
                                      doc="front-end registry key under 'name' plus its options "
                                          "(`spoofrl models --describe KEY` lists them)")
    backend: dict[str, Any] = option(factory=lambda: {"name": "pool-linear"},
                                     doc="back-end registry key under 'name' plus its options")
    sample_rate: int = option(16000, "sample rate the model expects; inputs are resampled to it")
    preset: str = option("", "name of the preset this config came from (informational)")

    def component_configs(self):
        """(front-end class, its Config, back-end class, its Config), validated."""
        fe_name, fe_opts = _split_spec(self.frontend, "frontend")
        be_name, be_opts = _split_spec(self.backend, "backend")
        fe_cls, be_cls = FRONTENDS.get(fe_name), BACKENDS.get(be_name)
        fe_opts = self._with_model_sample_rate(fe_cls, fe_name, fe_opts)
        return (fe_cls, from_dict(fe_cls.Config, fe_opts, prefix=f"model.frontend({fe_name})"),
                be_cls, from_dict(be_cls.Config, be_opts, prefix=f"model.backend({be_name})"))

    def _with_model_sample_rate(self, fe_cls, fe_name: str, fe_opts: dict[str, Any]) -> dict[str, Any]:
        """A front-end with a `sample_rate` option analyses audio at the model's rate: filled in from
        `sample_rate` here, and an explicit, different value is refused (its filters would sit at the wrong
        frequencies)."""
        if "sample_rate" not in {f.name for f in dataclasses.fields(fe_cls.Config)}:
            return fe_opts
        own = fe_opts.get("sample_rate", self.sample_rate)
        if own != self.sample_rate:
            raise ConfigError(f"model.frontend({fe_name}).sample_rate is {own} but model.sample_rate is "
                              f"{self.sample_rate}; set model.sample_rate only")
        return {**fe_opts, "sample_rate": self.sample_rate}

    def validate(self):
        if self.sample_rate < 1000:
            raise ConfigError(f"sample_rate: {self.sample_rate} Hz is not a plausible audio rate")
        self.component_configs()

    def resolved(self) -> "ModelConfig":
        """Same config with every component option filled in with its default.

        For a built model prefer `Detector.resolved_config()`, which also records what was only known at
        build time (e.g. an SSL encoder's Hugging Face config read from its folder)."""
        _, fe_cfg, _, be_cfg = self.component_configs()
        return ModelConfig(frontend={"name": self.frontend["name"], **to_dict(fe_cfg)},
                           backend={"name": self.backend["name"], **to_dict(be_cfg)},
                           sample_rate=self.sample_rate, preset=self.preset)


class Detector(nn.Module):
    """Front-end + back-end. `forward(wave [B, T], lengths [B]) -> logits [B, 2]` over (spoof, bonafide)."""

    def __init__(self, cfg: ModelConfig, frontend: nn.Module | None = None):
        """`frontend`: the front-end `cfg` describes, already built (build_model reuses the one its size check
        had to build on the CPU)."""
        super().__init__()
        self.cfg = cfg
        fe_cls, fe_cfg, be_cls, be_cfg = cfg.component_configs()
        self.frontend = frontend if frontend is not None else fe_cls(fe_cfg)
        self.backend = be_cls(be_cfg, self.frontend.out_dim)

    # --- the two stages -------------------------------------------------------------------------------
    @property
    def frontend_is_frozen(self) -> bool:
        """True when the front-end's `encode` stage has no trainable parameter (a frozen SSL encoder,
        log-mel, LFCC, a fixed sinc filterbank): its output for a given waveform never changes during
        training, so `extract_features` outputs may be computed once and cached (features/cache.py)."""
        return self.frontend.is_frozen

    @property
    def frontend_cache_recommended(self) -> bool:
        """True when caching is worth it: a frozen front-end that is expensive to run (frozen SSL)."""
        return self.frontend_is_frozen and self.frontend.cache_recommended

    def extract_features(self, wave: torch.Tensor,
                         lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Front-end encode stage: wave [B, T] -> (raw [B, F, ...], frame_lengths [B]).

        `raw` is what a feature cache stores; its trailing shape depends on the front-end (an SSL front-end
        gives its selected hidden states [B, F, K, D]). Runs without autograd when the front-end is frozen
        and the input does not itself require a gradient (saves the activation memory)."""
        lengths = self._full_lengths(wave, lengths)
        no_grad = self.frontend_is_frozen and not wave.requires_grad
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            return self.frontend.encode(wave, lengths)

    def forward_features(self, raw: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Everything after the encode stage: front-end head (e.g. SSL layer fusion, projection) + back-end.
        Takes `extract_features` output (freshly computed or read from a cache) -> logits [B, 2]."""
        return self.backend(self.frontend.head(raw, frame_lengths), frame_lengths)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(*self.extract_features(wave, lengths))

    # --- scores ---------------------------------------------------------------------------------------
    logits_to_score = staticmethod(logits_to_score)

    @torch.no_grad()
    def score(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Raw score per waveform: log-odds of bona fide (natural log; higher = more bona fide)."""
        return self.logits_to_score(self(wave, lengths))

    # --- configuration --------------------------------------------------------------------------------
    def resolved_config(self) -> ModelConfig:
        """The config that rebuilds this exact architecture with no outside files (saved by save_model)."""
        return ModelConfig(frontend={"name": self.cfg.frontend["name"], **self.frontend.resolved_options()},
                           backend={"name": self.cfg.backend["name"], **self.backend.resolved_options()},
                           sample_rate=self.cfg.sample_rate, preset=self.cfg.preset)

    @staticmethod
    def _full_lengths(wave: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform batch [B, T], got shape {tuple(wave.shape)}")
        if lengths is None:
            return torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        return lengths.to(device=wave.device, dtype=torch.long)


def merge_model_sections(base: dict, extra: dict) -> dict:
    """Deep-merge `extra` into a copy of `base` (a preset and its overrides, e.g. `frontend.config.hidden_size`
    changes that one entry); a component whose registry `name` changes is replaced whole. The one merge rule:
    training configs and `load_model`/`build_model` both use it."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get("name"):
            out[key] = merge_model_sections(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def is_complete_section(data: dict) -> bool:
    """Both components named: the section is used as written (a `preset` key there is informational)."""
    return all(isinstance(data.get(k), dict) and "name" in data[k] for k in ("frontend", "backend"))


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """A model section -> validated ModelConfig. `preset: NAME` alone means that preset; a preset plus partial
    `frontend` / `backend` sections (without 'name', or with the preset's name) overrides those options, merged
    deeply (`merge_model_sections`), e.g. `{preset: ssl-linear, frontend: {path: /models/xls-r-300m}}`. A
    complete section (both components named) is used as written, whatever `preset` says."""
    if not isinstance(data, dict):
        raise ConfigError(f"model: expected a mapping, got {data!r}")
    if is_complete_section(data) or not data.get("preset"):
        return from_dict(ModelConfig, data, prefix="model")
    base = to_dict(load_model_preset(str(data["preset"])))
    merged = merge_model_sections(base, {k: v for k, v in data.items() if k != "preset"})
    merged["preset"] = data["preset"]
    return from_dict(ModelConfig, merged, prefix="model")


# A detector above this many weights is refused before it is built (the largest SSL encoders, XLS-R 2B, have 2.2 B).
MAX_PARAMETERS = 4_000_000_000


def build_model(cfg: ModelConfig | dict) -> Detector:
    """A detector from a ModelConfig or its dict form (validated; unknown keys raise ConfigError;
    a dict may name a preset, see `model_config_from_dict`). One above MAX_PARAMETERS is refused before anything
    is allocated."""
    if isinstance(cfg, dict):
        cfg = model_config_from_dict(cfg)
    skeleton, frontend = meta_model(cfg)
    check_model_size(skeleton)
    return Detector(cfg, frontend=frontend)


def meta_model(cfg: ModelConfig) -> tuple[nn.Module, nn.Module | None]:
    """(the detector's modules with shapes but no memory, under the names of Detector's state dict; the front-end
    when it had to be built for real). A front-end that cannot be built on the meta device (one that computes its
    filters, or loads a checkpoint) is built on the CPU: its size is bounded by its options or by the checkpoint
    on disk. A back-end that cannot is left out (None)."""
    fe_cls, fe_cfg, be_cls, be_cfg = cfg.component_configs()
    skeleton = nn.Module()
    skeleton.frontend = on_meta(lambda: fe_cls(fe_cfg))
    real = None
    if skeleton.frontend is None:
        skeleton.frontend = real = on_cpu(lambda: fe_cls(fe_cfg))
    skeleton.backend = on_meta(lambda: be_cls(be_cfg, skeleton.frontend.out_dim))
    return skeleton, real


def on_meta(build) -> nn.Module | None:
    """build() on the meta device (shapes, no memory), or None when it cannot run there (the meta device holds no
    values to compute with); a real build then runs, or reports, it."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:  # noqa: BLE001 - retried, or reported, by the real build
        return None


def on_cpu(build) -> nn.Module:
    """build() on the CPU, also inside a meta-device size check."""
    with torch.device("cpu"):
        return build()


def parameter_count(module: nn.Module) -> int:
    """Elements of the module's state dict, each tied tensor once (works on the meta device)."""
    unique = {id(t): t for t in module.state_dict(keep_vars=True).values()}
    return sum(t.numel() for t in unique.values())


def check_model_size(skeleton: nn.Module, limit: int = MAX_PARAMETERS, what: str = "model") -> None:
    """A ConfigError giving the size when `skeleton` (e.g. meta_model's) holds more than `limit` weights; a part
    left out (None) is not counted."""
    count = parameter_count(skeleton)
    if count > limit:
        raise ConfigError(f"{what}: the configured sizes give {count / 1e9:.3g} billion parameters, more than the "
                          f"{limit / 1e9:g} billion spoofrl builds; check the size options")


def load_model_preset(name_or_path: str, overrides: list[str] | None = None) -> ModelConfig:
    """A preset from configs/models/ (or a YAML path) -> validated ModelConfig.

    `overrides` are `key.path=value` strings relative to the model section, e.g. `frontend.path=/models/xlsr`
    (a leading `model.` is accepted too)."""
    from pathlib import Path

    from spoofrl.config import apply_overrides, load_yaml, resolve_preset
    path = resolve_preset("models", name_or_path)
    overrides = [o[len("model."):] if o.startswith("model.") else o for o in overrides or []]
    data = apply_overrides(load_yaml(path), overrides)
    data.setdefault("preset", Path(path).stem)
    try:
        return from_dict(ModelConfig, data, prefix="model")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ModelConfig", "Detector", "build_model", "model_config_from_dict", "load_model_preset", "count_parameters", "field"]
