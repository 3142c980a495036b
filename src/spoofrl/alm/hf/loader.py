"""`load_hf_alm`: a Hugging Face audio LLM from a local folder (nothing is downloaded), as an HfAlm.

A folder is either a transformers model (config.json, weights, tokenizer files, the processor's
preprocessor_config.json / processor_config.json / chat template) or a peft adapter folder written by
`HfAlm.save(merge=False)` (adapter_config.json naming its base folder), which loads the base and puts the
adapters back on it, trainable.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import torch

from spoofrl.alm.hf.base import HfAlm
from spoofrl.alm.hf.granite import GraniteSpeechAlm
from spoofrl.alm.hf.lora import LoraOptions, fold_adapter_folder, merge_embedded_adapters
from spoofrl.alm.hf.qwen import Qwen2AudioAlm, Qwen25OmniThinkerAlm
from spoofrl.config import from_dict
from spoofrl.device import pick_device
from spoofrl.errors import ConfigError

BACKENDS: dict[str, type[HfAlm]] = {cls.kind: cls for cls in (Qwen2AudioAlm, Qwen25OmniThinkerAlm, GraniteSpeechAlm)}
# config.json model_type -> backend kind ("qwen2_5_omni": the full Omni model, of which the thinker is loaded)
MODEL_TYPES = {"qwen2_audio": "qwen2_audio", "qwen2_5_omni_thinker": "qwen2_5_omni_thinker",
               "qwen2_5_omni": "qwen2_5_omni_thinker", "granite_speech": "granite_speech"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
ADAPTER_WEIGHTS = "adapter_model.safetensors"   # the adapters of a LoRA run folder (peft save_pretrained)
ADAPTER_FILES = ("adapter_config.json", ADAPTER_WEIGHTS, "adapter_model.bin")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: unreadable JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def detect_kind(folder: str | Path) -> str:
    """The backend kind of a model folder, from config.json's model_type."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: not a Hugging Face model folder (no config.json)")
    model_type = read_json(path).get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{folder}: config.json model_type {model_type!r} is not a supported audio LLM "
                          f"(supported: {', '.join(sorted(MODEL_TYPES))})")
    return MODEL_TYPES[model_type]


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on a CUDA device that supports it, float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def read_feature_config(folder: Path) -> dict:
    """The audio feature extractor's settings: preprocessor_config.json, else the feature_extractor /
    audio_processor entry of processor_config.json; {} when there is none (the backends' defaults)."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        return read_json(path)
    path = folder / "processor_config.json"
    if path.is_file():
        data = read_json(path)
        return dict(data.get("feature_extractor") or data.get("audio_processor") or {})
    return {}


def read_chat_template(folder: Path, tokenizer) -> str | None:
    """The processor's chat template (chat_template.json / processor_config.json) when there is one, as the
    models' processors render audio with it; else the tokenizer's (tokenizer_config.json, chat_template.jinja)."""
    for name in ("chat_template.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            template = read_json(path).get("chat_template")
            if isinstance(template, str) and template:
                return template
    return getattr(tokenizer, "chat_template", None)


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{folder}: cannot load the tokenizer ({_first_line(err)})") from None


def _load_model(cls: type[HfAlm], folder: Path, dtype: torch.dtype):
    """The transformers model in `folder`, an adapter shipped beside its weights merged in."""
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"{folder}: no weights (none of {', '.join(WEIGHT_FILES)})")
    if (folder / "adapter_config.json").is_file() and not _transformers_loads_adapters():
        with _without_adapter_files(folder) as plain:
            model = _from_pretrained(cls, folder, plain, dtype)
        return fold_adapter_folder(model, folder)
    model = _from_pretrained(cls, folder, folder, dtype)
    merge_embedded_adapters(model)
    return model


def _from_pretrained(cls: type[HfAlm], folder: Path, source: Path, dtype: torch.dtype):
    import transformers

    model_cls = getattr(transformers, cls.model_class, None)
    if model_cls is None:
        raise ConfigError(f"{folder}: transformers {transformers.__version__} has no {cls.model_class}; "
                          f"install a newer transformers")
    kwargs = {}
    if read_json(folder / "config.json").get("model_type") == "qwen2_5_omni":
        # the full Omni checkpoint: its thinker's config; the class drops the "thinker." weight prefix
        kwargs["config"] = transformers.Qwen2_5OmniConfig.from_pretrained(str(folder)).thinker_config
    try:
        return model_cls.from_pretrained(str(source), dtype=dtype, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"{folder}: cannot load {cls.model_class} ({_first_line(err)})") from None


def _transformers_loads_adapters() -> bool:
    """Whether transformers' own adapter loading works with the installed peft (it has a minimum version)."""
    try:
        from transformers.integrations.peft import MIN_PEFT_VERSION
        from transformers.utils.peft_utils import check_peft_version

        check_peft_version(min_version=MIN_PEFT_VERSION)
    except (ImportError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _without_adapter_files(folder: Path):
    """A temporary view of `folder` (symbolic links) without its adapter files, so from_pretrained loads the
    base weights alone."""
    with tempfile.TemporaryDirectory(prefix="spoofrl-hf-") as tmp:
        for entry in folder.iterdir():
            if entry.name not in ADAPTER_FILES:
                (Path(tmp) / entry.name).symlink_to(entry.resolve())
        yield Path(tmp)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_hf_alm(folder: str | Path, *, kind: str = "auto", lora: LoraOptions | dict | None = None,
                device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> HfAlm:
    """The audio LLM in `folder` on `device` ("auto": CUDA when present) in `dtype` ("auto": bf16 on CUDA,
    float32 on CPU), in eval mode, with LoRA adapters on its language model when `lora` is given.

    kind: "auto" (from config.json's model_type) or one of BACKENDS; a folder of another kind is an error.
    lora: LoraOptions, or its dict as read from YAML. An adapter folder (adapter_config.json, no config.json)
    loads its base folder and the adapters."""
    if isinstance(lora, dict):
        lora = from_dict(LoraOptions, lora, prefix="lora")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such model folder")
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        return _load_with_adapters(folder, kind, lora, device, dtype)
    found = detect_kind(folder)
    if kind != "auto" and kind != found:
        if kind not in BACKENDS:
            raise ConfigError(f"kind must be 'auto' or one of {sorted(BACKENDS)}, got {kind!r}")
        raise ConfigError(f"{folder}: holds a {found} model, not {kind}")
    cls = BACKENDS[found]
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    model = _load_model(cls, folder, resolve_dtype(dtype, dev))
    merge_embedded_adapters(model)
    tokenizer = _load_tokenizer(folder)
    model = model.to(dev)          # before the adapters, so peft creates them on the device
    alm = cls(model, tokenizer, folder=folder, chat_template=read_chat_template(folder, tokenizer),
              feature_config=read_feature_config(folder), lora=lora)
    return alm.to(dev).eval()


def _load_with_adapters(folder: Path, kind: str, lora: LoraOptions | None, device, dtype) -> HfAlm:
    if lora is not None:
        raise ConfigError(f"{folder}: holds LoRA adapters already; load it without lora=")
    base = read_json(folder / "adapter_config.json").get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise ConfigError(f"{folder}: adapter_config.json's base_model_name_or_path {base!r} is not a local "
                          f"model folder")
    alm = load_hf_alm(base, kind=kind, device=device, dtype=dtype)
    alm.attach_adapters(folder)
    return alm.to(alm.device).eval()
