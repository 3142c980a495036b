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
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from spoofrl.config import load_yaml, save_yaml, to_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.models.detector import Detector, ModelConfig, check_model_size, meta_model, model_config_from_dict
from spoofrl.runfiles import CALIBRATION, CONFIG, WEIGHTS

# --- safetensors files: the one place they are written and opened -----------------------------------------------


def is_input_error(err: BaseException) -> bool:
    """Whether `err`, raised by a third-party reader of a user's file (safetensors, tokenizers, transformers'
    configs), is to be reported as a problem of that file: any Exception (these libraries raise many types on
    malformed or hostile files) and Rust panics (pyo3's PanicException derives from BaseException, so it is
    recognised by name); never an interrupt or an exit."""
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return False
    return isinstance(err, Exception) or type(err).__name__ == "PanicException"


def _unreadable(path: str | Path, err: BaseException) -> ConfigError:
    detail = " ".join(str(err).split())[:300] or type(err).__name__
    return ConfigError(f"{path}: not a readable safetensors file ({detail})")


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, from its header alone (no tensor is read). The header
    is checked against the file's size, so a file declaring tensors it does not hold, an absurd header length or
    a file of another format is a one-line ConfigError naming it."""
    try:
        with safe_open(str(path), "pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except BaseException as err:
        if not is_input_error(err):
            raise
        raise _unreadable(path, err) from None


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` atomically (temporary file, then rename), with the permissions of any file the user writes.
    The bytes depend on the tensors and metadata only: safetensors writes metadata in hash order, which changes
    from process to process, so the header is rewritten with the metadata keys sorted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(_with_sorted_metadata(safetensors_bytes(tensors), metadata))
    use_umask_permissions(tmp)
    tmp.replace(path)


def _with_sorted_metadata(blob: bytes, metadata: dict[str, str] | None) -> bytes:
    """A safetensors file's bytes (written without metadata) with `metadata` put first in its header, sorted by key;
    the tensor data is unchanged (its offsets count from the end of the header)."""
    if not metadata:
        return blob
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    header = {"__metadata__": {str(k): str(metadata[k]) for k in sorted(metadata)}, **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)      # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + blob[8 + length:]


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU; a missing, truncated or corrupt file is a one-line
    ConfigError naming it."""
    tensor_shapes(path)   # the header first: its checks come before anything is read
    try:
        return load_file(str(path), device="cpu")
    except BaseException as err:
        if not is_input_error(err):
            raise
        raise _unreadable(path, err) from None


_read_weights = read_weights


def expected_tensors(module: torch.nn.Module) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(names, shape) of each tensor of `module`'s state dict, tied names together (a weight shared by two modules
    is one tensor, stored under either name). Works on a model built on the meta device."""
    groups: dict[int, tuple[list[str], tuple[int, ...]]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), ([], tuple(tensor.shape)))[0].append(name)
    return [(tuple(names), shape) for names, shape in groups.values()]


def weights_mismatch(found: dict[str, tuple[int, ...]], expected: list[tuple[tuple[str, ...], tuple[int, ...]]],
                     shown: int = 5) -> str | None:
    """Why the tensors `found` in a file (name -> shape) are not the `expected` ones (expected_tensors), or None:
    missing and unexpected names (the first few, sorted) and shapes that differ."""
    known = {name for names, _ in expected for name in names}
    missing = sorted(names[0] for names, _ in expected if not any(n in found for n in names))
    unexpected = sorted(set(found) - known)
    wrong = sorted(f"{n} {list(found[n])} instead of {list(shape)}" for names, shape in expected
                   for n in names if n in found and tuple(found[n]) != tuple(shape))
    parts = [f"{what} {len(items)} tensor{'s' if len(items) > 1 else ''} ({', '.join(items[:shown])}"
             f"{', ...' if len(items) > shown else ''})"
             for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape for", wrong))
             if items]
    return "; ".join(parts) or None


def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; tied/shared tensors are cloned so safetensors accepts them."""
    model = getattr(model, "module", model)  # unwrap DDP
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Write the state dict atomically (temporary file, then rename), so a crash never leaves half a file."""
    save_tensors(state_for_saving(model), path)


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
    if not isinstance(data, dict):
        raise ConfigError(f"{folder / CONFIG}: expected a mapping with a `model` section")
    model_section = data.get("model", data)
    try:
        return model_config_from_dict(model_section)
    except ConfigError as err:
        raise ConfigError(f"{folder / CONFIG}: {err}") from None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Rebuild a saved detector on `device` ('cpu', 'cuda', 'cuda:1', 'auto' = CUDA when present, a
    torch.device), in eval mode.

    No pickle is involved: the architecture comes from config.yaml, the tensors from model.safetensors
    (read on the CPU, then moved, so a GPU-trained folder loads on a CPU-only machine and vice versa). Before
    anything is allocated, the model config.yaml describes is checked against the size cap and against the
    tensors the file's header declares, so a small config file cannot make spoofrl build a huge model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpoofrlError(f"{folder}: model folder not found")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise SpoofrlError(f"{folder}: no {WEIGHTS} in the model folder")
    target = _checked_device(device)
    config = folder / CONFIG
    cfg = read_model_config(folder)
    found = tensor_shapes(weights)
    try:
        skeleton, frontend = meta_model(cfg)
        check_model_size(skeleton)
    except ConfigError as err:
        raise ConfigError(f"{config}: {err}") from None
    if skeleton.backend is not None:
        check_weights_match(found, skeleton, weights, config)
    try:
        model = Detector(cfg, frontend=frontend)
    except ConfigError as err:
        raise ConfigError(f"{config}: {err}") from None
    check_weights_match(found, model, weights, config)
    model.load_state_dict(read_weights(weights), strict=False)   # tied names: either one is in the file
    return model.to(target).eval()


def check_weights_match(found: dict[str, tuple[int, ...]], model: torch.nn.Module, weights: Path,
                        config: Path) -> None:
    """A ConfigError naming both files when the tensors a file declares (`found`, from tensor_shapes) are not
    those of `model` (possibly built on the meta device): missing and unexpected names, wrong shapes."""
    reason = weights_mismatch(found, expected_tensors(model))
    if reason:
        raise ConfigError(f"{weights}: weights do not match {config}: {reason}")


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
