"""LoRA on the language model of a Hugging Face audio LLM, through peft.

`LoraOptions` is the typed configuration (YAML: `spoofrl.config.from_dict(LoraOptions, d)`); `apply_lora`
wraps a transformers model in a peft `PeftModel` whose adapters sit only on linear layers inside the language
model (a regular expression anchored at its module path, so the audio encoder's own q/k/v projections never
match). `merged_state_dict` gives the weights with the adapters folded in without touching the live model
(peft's merge_and_unload is destructive, and merge + unmerge in bf16 would not restore the base weights
exactly, which the reference policy relies on).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from spoofrl.config import invalid, option
from spoofrl.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Adapters are low-rank: a rank above this (in LoraOptions or a saved adapter_config.json) is refused.
MAX_RANK = 4096


@dataclass
class LoraOptions:
    """Low-rank adapters on the language model; the base weights stay frozen (and serve as the GRPO reference
    policy, with the adapters switched off)."""

    r: int = option(16, "rank of each adapter (the update of a weight W is B A, A: r x in, B: out x r)", ge=1,
                    le=MAX_RANK)
    alpha: float = option(32.0, "peft's lora_alpha: the update is scaled by alpha / r", gt=0)
    dropout: float = option(0.0, "peft's lora_dropout, on the adapter input in train mode; 0 keeps sampling and "
                                 "scoring the same distribution", ge=0.0, lt=1.0)
    target_modules: list[str] = option(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        doc="names (last path component) of the language model's linear layers that get adapters, e.g. add "
            "gate_proj, up_proj, down_proj for the MLPs; modules outside the language model never match")
    bias: Literal["none", "all", "lora_only"] = option(
        "none", "peft's bias: which biases train too ('all': every bias of the model, 'lora_only': those of "
                "the adapted layers)")
    freeze_audio_encoder: bool = option(
        True, "true: the audio encoder and projector stay frozen (and in eval mode); false: they train in full "
              "as peft modules_to_save (a trainable copy; the reference policy keeps the original)")

    def validate(self) -> None:
        if not self.target_modules:
            raise invalid("target_modules", "needs at least one module name")
        for i, name in enumerate(self.target_modules):
            if not _NAME.match(name):
                raise invalid(f"target_modules[{i}]", f"must be a plain module name like 'q_proj', got {name!r}")


def target_pattern(lm_path: str, names: list[str]) -> str:
    """peft target_modules as a regular expression (peft full-matches it against module paths): the named
    layers inside the module at `lm_path` only."""
    return rf"{re.escape(lm_path)}\..*\.({'|'.join(re.escape(n) for n in names)})"


def apply_lora(model: nn.Module, options: LoraOptions, *, lm_path: str, audio_paths: list[str]) -> nn.Module:
    """`model` wrapped by peft with adapters on the LM (`lm_path`), the audio modules (`audio_paths`) frozen or,
    with freeze_audio_encoder false, trained in full as modules_to_save."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=target_pattern(lm_path, list(options.target_modules)), bias=options.bias,
                        modules_to_save=None if options.freeze_audio_encoder else list(audio_paths))
    try:
        return get_peft_model(model, config)
    except ValueError as err:   # no module matched
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"lora.target_modules {list(options.target_modules)}: {first}") from None


def options_from_peft(config) -> LoraOptions:
    """The LoraOptions a loaded peft LoraConfig corresponds to (for display; names parsed back from the
    pattern written by `target_pattern` when possible)."""
    targets = config.target_modules
    if isinstance(targets, str):
        found = re.search(r"\(([^()]*)\)$", targets)
        names = [n.replace("\\", "") for n in found.group(1).split("|")] if found else [targets]
    else:
        names = sorted(targets)
    return LoraOptions(r=config.r, alpha=float(config.lora_alpha), dropout=float(config.lora_dropout),
                       target_modules=names, bias=config.bias, freeze_audio_encoder=not config.modules_to_save)


def merged_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """State dict of the base model with the active adapter folded in (W + scale B A), the trained copies of
    modules_to_save in place of the originals, and no peft-internal names; the live model is unchanged."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    core = peft_model.get_base_model()
    adapter = peft_model.active_adapter
    loras = {name: m for name, m in core.named_modules() if isinstance(m, LoraLayer)}
    copies = {name: m for name, m in core.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    out: dict[str, torch.Tensor] = {}
    for key, value in core.state_dict().items():
        owner = _owner(key, copies)
        if owner is not None:
            rest = key[len(owner) + 1:]
            prefix = f"modules_to_save.{adapter}."
            if rest.startswith(prefix):
                out[f"{owner}.{rest[len(prefix):]}"] = value
            continue                      # the original module and other adapters' copies
        owner = _owner(key, loras)
        if owner is None:
            out[key] = value
            continue
        rest = key[len(owner) + 1:]
        if not rest.startswith("base_layer."):
            continue                      # lora_A / lora_B / ... of the adapter itself
        name = rest[len("base_layer."):]
        layer = loras[owner]
        if name == "weight" and adapter in layer.lora_A and not layer.merged:
            delta = layer.get_delta_weight(adapter)
            value = (value.float() + delta.float()).to(value.dtype)
        out[f"{owner}.{name}"] = value
    return out


def _owner(key: str, modules: dict) -> str | None:
    """The longest module path in `modules` that `key` lies under."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:end])
        if path in modules:
            return path
    return None


def merge_embedded_adapters(model: nn.Module) -> bool:
    """Fold adapters that transformers loaded with the checkpoint itself into the base weights, leaving plain
    layers (Granite Speech ships a LoRA that it enables whenever audio is present, i.e. always here).
    Returns whether there were any."""
    if not getattr(model, "_hf_peft_config_loaded", False):
        return False
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    model._hf_peft_config_loaded = False
    if hasattr(model, "peft_config"):
        del model.peft_config
    return True


def check_adapter_folder(folder) -> dict[str, tuple[int, ...]] | None:
    """Before peft reads an adapter folder: adapter_config.json's ranks are at most MAX_RANK and the adapter
    weights are a readable safetensors file (their names and shapes, from its header, are returned; None for
    pickle weights). Problems are one-line ConfigErrors naming the file."""
    from pathlib import Path

    from spoofrl.models.io import tensor_shapes

    folder = Path(folder)
    path = folder / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: unreadable JSON ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    pattern = config.get("rank_pattern") or {}
    ranks = [config.get("r", 8), *(pattern.values() if isinstance(pattern, dict) else [pattern])]
    for rank in ranks:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
            raise ConfigError(f"{path}: adapter rank {rank!r} is not an integer in [1, {MAX_RANK}]")
    weights = folder / "adapter_model.safetensors"
    return tensor_shapes(weights) if weights.is_file() else None


def fold_adapter_folder(model: nn.Module, folder) -> nn.Module:
    """`model` with the peft adapter saved in `folder` merged into its weights (for checkpoints that ship an
    adapter beside the base weights, when transformers' own adapter loading is unavailable). Adapter keys may
    be peft's ("base_model.model." + module path) or transformers' (the module path alone)."""
    from peft import PeftConfig, get_peft_model
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    config = PeftConfig.from_pretrained(str(folder))
    wrapped = get_peft_model(model, config)
    prefix = "base_model.model."
    weights = {k if k.startswith(prefix) else prefix + k: v for k, v in load_peft_weights(str(folder)).items()}
    result = set_peft_model_state_dict(wrapped, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        odd = (list(result.unexpected_keys) or missing)[:3]
        raise ConfigError(f"{folder}: the adapter's weights do not match the model (e.g. {odd}); a newer peft lets "
                          f"transformers convert them")
    return wrapped.merge_and_unload()
