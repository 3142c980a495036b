"""Saving and loading a SmallAlm as a folder, without pickle:

    alm.json            {"format", "kind", "alm": resolved AlmConfig, "lm_class", "lm_config": the LM's
                         transformers config, "encoder": the resolved front-end options and widths}
    model.safetensors   every parameter (tied embeddings stored once)
    tokenizer.json, tokenizer_config.json, chat_template.jinja   the tokenizer (see alm.tokenizer)

`load_alm` rebuilds the LM from the stored transformers config (not from defaults of the installed
transformers), so a folder keeps meaning the same model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from spoofrl.alm.config import AlmConfig
from spoofrl.alm.model import LM_CLASSES, SmallAlm, alm_skeleton
from spoofrl.alm.template import ChatTemplate
from spoofrl.alm.tokenizer import chat_template_file, load_tokenizer, save_tokenizer
from spoofrl.config import from_dict, to_dict
from spoofrl.device import pick_device
from spoofrl.errors import ConfigError
from spoofrl.models.io import check_weights_match, is_input_error, read_weights, save_tensors, tensor_shapes

ALM_FORMAT = 1
CONFIG_FILE = "alm.json"
WEIGHTS_FILE = "model.safetensors"


def save_alm(model: SmallAlm, folder: str | Path) -> Path:
    """Write `model` to `folder` (created if needed; files replaced atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": ALM_FORMAT,
        "kind": "spoofrl-alm",
        "alm": to_dict(model.cfg),
        "lm_class": LM_CLASSES[model.cfg.lm_class][1],
        "lm_config": model.lm.config.to_dict(),
        "encoder": _encoder_facts(model),
    }
    tensors, aliases = untied_state(model)
    save_tensors(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt", **aliases})
    save_tokenizer(model.tokenizer, folder)
    tmp = folder / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, folder / CONFIG_FILE)
    return folder


def untied_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each tied tensor once, under the first of its names in sorted order (as safetensors'
    save_model keeps it), and {dropped name: kept name}, which save_model records as metadata."""
    groups: dict[int, list[str]] = {}
    state = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        groups.setdefault(id(tensor), []).append(name)
    tensors, aliases = {}, {}
    for names in groups.values():
        kept, *dropped = sorted(names)
        tensors[kept] = state[kept].detach().to("cpu").contiguous()
        aliases.update({name: kept for name in dropped})
    return tensors, aliases


def _encoder_facts(model: SmallAlm) -> dict | None:
    """What the audio encoder resolved to (None for a spectrogram-only model), for readers of alm.json."""
    if model.encoder is None:
        return None
    frontend = model.encoder.frontend
    return {"frontend": {"name": model.cfg.frontend["name"], **frontend.resolved_options()},
            "frontend_dim": frontend.out_dim, "width": model.encoder.out_dim, "frames_per_token": model.cfg.downsample}


def read_alm_config(folder: str | Path) -> tuple[AlmConfig, dict]:
    """(AlmConfig, the whole alm.json) of a saved model; a malformed alm.json is a ConfigError naming it."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{folder}: not a saved ALM (no {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"{path}: invalid JSON ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "spoofrl-alm" or meta.get("format") != ALM_FORMAT:
        raise ConfigError(f"{path}: not a format-{ALM_FORMAT} spoofrl ALM")
    for key in ("alm", "lm_config"):
        if not isinstance(meta.get(key), dict):
            raise ConfigError(f"{path}: `{key}` must be a JSON object")
    try:
        return from_dict(AlmConfig, meta["alm"], prefix="alm"), meta
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def stored_lm_config(cfg: AlmConfig, meta: dict, path: Path):
    """The LM's transformers config stored in alm.json; one transformers refuses is a ConfigError naming the file."""
    import transformers

    config_cls = getattr(transformers, LM_CLASSES[cfg.lm_class][0])
    try:
        return config_cls.from_dict(meta["lm_config"])
    except BaseException as err:   # transformers validates its configs with many exception types
        if not is_input_error(err):
            raise
        raise ConfigError(f"{path}: lm_config is not a valid {config_cls.__name__} "
                          f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None


def load_alm(folder: str | Path, device: torch.device | str = "auto") -> SmallAlm:
    """The model saved in `folder`, on `device` ("auto": CUDA when present), in eval mode.

    Before anything is allocated, the model alm.json describes is checked against the bounds and size cap of
    AlmConfig and against the tensors model.safetensors declares in its header, so a small alm.json cannot make
    spoofrl build a huge model; every file's problem is a ConfigError naming it."""
    folder = Path(folder)
    cfg, meta = read_alm_config(folder)
    config, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{folder}: no {WEIGHTS_FILE}")
    found = tensor_shapes(weights)
    tokenizer = load_tokenizer(folder)
    lm_cfg = stored_lm_config(cfg, meta, config)
    template = ChatTemplate(tokenizer.chat_template, chat_template_file(folder))   # its errors name its file
    try:
        skeleton = alm_skeleton(cfg, tokenizer, transformers_config=lm_cfg, chat_template=template)
    except ConfigError as err:
        raise ConfigError(f"{config}: {err}") from None
    check_weights_match(found, skeleton, weights, config)
    model = SmallAlm(cfg, tokenizer, transformers_config=lm_cfg, chat_template=template)
    model.load_state_dict(read_weights(weights), strict=False)   # a tied tensor is stored under one of its names
    dev = pick_device(device) if isinstance(device, str) else device
    return model.to(dev).eval()
