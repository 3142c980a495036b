"""Device selection: CUDA when present, CPU otherwise."""
from __future__ import annotations

import torch

from spoofrl.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"invalid device '{name}' ({err})") from None
