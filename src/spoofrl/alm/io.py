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
from spoofrl.alm.model import LM_CLASSES, SmallAlm
from spoofrl.alm.tokenizer import load_tokenizer, save_tokenizer
from spoofrl.config import from_dict, to_dict
from spoofrl.device import pick_device
from spoofrl.errors import ConfigError

ALM_FORMAT = 1
CONFIG_FILE = "alm.json"
WEIGHTS_FILE = "model.safetensors"


def save_alm(model: SmallAlm, folder: str | Path) -> Path:
    """Write `model` to `folder` (created if needed; files replaced atomically)."""
    from safetensors.torch import save_model

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
    tmp = folder / f".{WEIGHTS_FILE}.{os.getpid()}.tmp"
    save_model(model, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS_FILE)
    save_tokenizer(model.tokenizer, folder)
    tmp = folder / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, folder / CONFIG_FILE)
    return folder


def _encoder_facts(model: SmallAlm) -> dict | None:
    """What the audio encoder resolved to (None for a spectrogram-only model), for readers of alm.json."""
    if model.encoder is None:
        return None
    frontend = model.encoder.frontend
    return {"frontend": {"name": model.cfg.frontend["name"], **frontend.resolved_options()},
            "frontend_dim": frontend.out_dim, "width": model.encoder.out_dim, "frames_per_token": model.cfg.downsample}


def read_alm_config(folder: str | Path) -> tuple[AlmConfig, dict]:
    """(AlmConfig, the whole alm.json) of a saved model."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{folder}: not a saved ALM (no {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON ({err})") from None
    if meta.get("kind") != "spoofrl-alm" or meta.get("format") != ALM_FORMAT:
        raise ConfigError(f"{path}: not a format-{ALM_FORMAT} spoofrl ALM")
    return from_dict(AlmConfig, meta["alm"], prefix="alm"), meta


def load_alm(folder: str | Path, device: torch.device | str = "auto") -> SmallAlm:
    """The model saved in `folder`, on `device` ("auto": CUDA when present), in eval mode."""
    import transformers
    from safetensors.torch import load_model

    folder = Path(folder)
    cfg, meta = read_alm_config(folder)
    tokenizer = load_tokenizer(folder)
    config_cls = getattr(transformers, LM_CLASSES[cfg.lm_class][0])
    lm_cfg = config_cls.from_dict(meta["lm_config"])
    model = SmallAlm(cfg, tokenizer, transformers_config=lm_cfg)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{folder}: no {WEIGHTS_FILE}")
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{weights}: weights do not match the config (missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]})")
    dev = pick_device(device) if isinstance(device, str) else device
    return model.to(dev).eval()
