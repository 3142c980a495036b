"""`load_hf_alm`: a Hugging Face audio LLM from a local folder (nothing is downloaded), as an HfAlm.

A folder is either a transformers model (config.json, weights, tokenizer files, the processor's
preprocessor_config.json / processor_config.json / chat template) or a peft adapter folder written by
`HfAlm.save(merge=False)` (adapter_config.json naming its base folder), which loads the base and puts the
adapters back on it, trainable.

A model folder is user input: before anything is allocated, config.json is read and checked (at most MAX_LAYERS
layers in any of its parts, at most MAX_PARAMETERS weights in the model it describes, counted on the meta device),
and the model may not have more weights than the safetensors files declare in their headers; after loading,
weights missing from the checkpoint or left over are an error (transformers only warns, and initialises missing
ones at random). Every problem is a one-line ConfigError naming the file.
"""
from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path

import torch

from spoofrl.alm.hf.base import HfAlm
from spoofrl.alm.hf.granite import GraniteSpeechAlm
from spoofrl.alm.hf.lora import LoraOptions, check_adapter_folder, fold_adapter_folder, merge_embedded_adapters
from spoofrl.alm.hf.qwen import Qwen2AudioAlm, Qwen25OmniThinkerAlm
from spoofrl.config import from_dict
from spoofrl.device import pick_device
from spoofrl.errors import ConfigError
from spoofrl.models.detector import check_model_size, parameter_count
from spoofrl.models.io import is_input_error, tensor_shapes

BACKENDS: dict[str, type[HfAlm]] = {cls.kind: cls for cls in (Qwen2AudioAlm, Qwen25OmniThinkerAlm, GraniteSpeechAlm)}
# config.json model_type -> backend kind ("qwen2_5_omni": the full Omni model, of which the thinker is loaded)
MODEL_TYPES = {"qwen2_audio": "qwen2_audio", "qwen2_5_omni_thinker": "qwen2_5_omni_thinker",
               "qwen2_5_omni": "qwen2_5_omni_thinker", "granite_speech": "granite_speech"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
ADAPTER_WEIGHTS = "adapter_model.safetensors"   # the adapters of a LoRA run folder (peft save_pretrained)
ADAPTER_FILES = ("adapter_config.json", ADAPTER_WEIGHTS, "adapter_model.bin")
# The supported families have 2-9 billion weights; a config.json describing more is refused before anything is built.
MAX_PARAMETERS = 20_000_000_000
# Layer counts are checked first: the meta-device model that counts the weights has one Python object per layer.
MAX_LAYERS = 1024
LAYER_KEYS = ("num_hidden_layers", "num_layers", "encoder_layers", "decoder_layers", "depth")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
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


def read_feature_config(folder: Path) -> tuple[dict, Path | None]:
    """The audio feature extractor's settings and their file: preprocessor_config.json, else the
    feature_extractor / audio_processor entry of processor_config.json; ({}, None) when there is none (the
    backends' defaults)."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        return read_json(path), path
    path = folder / "processor_config.json"
    if path.is_file():
        entry = read_json(path).get("feature_extractor") or read_json(path).get("audio_processor") or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: feature_extractor must be a JSON object")
        return dict(entry), path
    return {}, None


def read_chat_template(folder: Path, tokenizer) -> tuple[str | None, Path]:
    """The processor's chat template (chat_template.json / processor_config.json) when there is one, as the
    models' processors render audio with it; else the tokenizer's (chat_template.jinja, tokenizer_config.json);
    with the file it came from."""
    for name in ("chat_template.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            template = read_json(path).get("chat_template")
            if isinstance(template, str) and template:
                return template, path
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):   # named templates (older tokenizers): the default one
        template = template.get("default")
    jinja = folder / "chat_template.jinja"
    return template, jinja if jinja.is_file() else folder / "tokenizer_config.json"


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except BaseException as err:   # the tokenizers library raises many types (KeyError, plain Exception, ...)
        if not is_input_error(err):
            raise
        named = next((folder / n for n in TOKENIZER_FILES if (folder / n).is_file()), folder)
        raise ConfigError(f"{named}: cannot load the tokenizer ({_described(err)})") from None


def _model_class(cls: type[HfAlm], folder: Path):
    import transformers

    model_cls = getattr(transformers, cls.model_class, None)
    if model_cls is None:
        raise ConfigError(f"{folder}: transformers {transformers.__version__} has no {cls.model_class}; "
                          f"install a newer transformers")
    return model_cls


def read_model_config(cls: type[HfAlm], folder: Path):
    """The transformers config of the model to load (for a full Omni checkpoint, its thinker's), once its layer
    counts are within MAX_LAYERS; one transformers refuses (a string where a number belongs, ...) is a
    ConfigError naming config.json."""
    import transformers

    path = folder / "config.json"
    _check_layer_counts(read_json(path), path)
    try:
        if read_json(path).get("model_type") == "qwen2_5_omni":
            # the full Omni checkpoint: its thinker's config; the class drops the "thinker." weight prefix
            return transformers.Qwen2_5OmniConfig.from_pretrained(str(folder)).thinker_config
        return _model_class(cls, folder).config_class.from_pretrained(str(folder), local_files_only=True)
    except BaseException as err:   # transformers validates configs with many exception types
        if not is_input_error(err):
            raise
        raise ConfigError(f"{path}: not a valid {cls.model_class} config ({_described(err)})") from None


def _check_layer_counts(data, path: Path, prefix: str = "") -> None:
    """Every layer count of a config (its sub-configs included) at most MAX_LAYERS."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        name = f"{prefix}{key}" if isinstance(key, str) else f"{prefix.rstrip('.')}[{key}]"
        if key in LAYER_KEYS and isinstance(value, int) and value > MAX_LAYERS:
            raise ConfigError(f"{path}: {name} is {value}; spoofrl loads models of at most {MAX_LAYERS} layers")
        if isinstance(value, (dict, list)):
            _check_layer_counts(value, path, f"{name}.")


def check_model_fits(cls: type[HfAlm], folder: Path, config) -> None:
    """Before anything is allocated: the model `config` describes, built on the meta device, has at most
    MAX_PARAMETERS weights, and no more than the folder's safetensors files hold (a small config.json cannot make
    spoofrl allocate a model its checkpoint does not have)."""
    path = folder / "config.json"
    try:
        with torch.device("meta"):
            skeleton = _model_class(cls, folder)(config)
    except ConfigError:
        raise
    except BaseException as err:
        if not is_input_error(err):
            raise
        raise ConfigError(f"{path}: cannot build {cls.model_class} from it ({_described(err)})") from None
    check_model_size(skeleton, MAX_PARAMETERS, str(path))
    stored = checkpoint_shapes(folder)
    if stored is None or getattr(config, "quantization_config", None):
        return        # pickle weights (their tensors are only known once loaded), or packed quantized ones
    needed, held = parameter_count(skeleton), sum(math.prod(shape) for shape in stored.values())
    if needed > held:
        raise ConfigError(f"{weights_file(folder)}: holds {held:,} weights, fewer than the {needed:,} of the model "
                          f"{path} describes")


def weights_file(folder: Path) -> Path:
    """The file naming the folder's weights (the first of WEIGHT_FILES present)."""
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), folder / WEIGHT_FILES[0])


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of every tensor of the folder's safetensors weights (model.safetensors, or the shards its
    index names), from the headers alone; None for pickle weights (pytorch_model.bin)."""
    single = folder / "model.safetensors"
    if single.is_file():
        return tensor_shapes(single)
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return None
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConfigError(f"{index}: weight_map must map tensor names to shard file names")
    shapes: dict[str, tuple[int, ...]] = {}
    for name in sorted(set(weight_map.values())):
        if Path(name).name != name or name in (".", "..") or not (folder / name).is_file():
            raise ConfigError(f"{index}: shard {name!r} is not a file of {folder}")
        shapes.update(tensor_shapes(folder / name))
    return shapes


def _load_model(cls: type[HfAlm], folder: Path, dtype: torch.dtype):
    """The transformers model in `folder`, an adapter shipped beside its weights merged in."""
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"{folder}: no weights (none of {', '.join(WEIGHT_FILES)})")
    config = read_model_config(cls, folder)
    check_model_fits(cls, folder, config)
    if (folder / "adapter_config.json").is_file():
        check_adapter_folder(folder)
        if not _transformers_loads_adapters():
            with _without_adapter_files(folder) as plain:
                model = _from_pretrained(cls, folder, plain, dtype, config)
            return fold_adapter_folder(model, folder)
    model = _from_pretrained(cls, folder, folder, dtype, config)
    merge_embedded_adapters(model)
    return model


def _from_pretrained(cls: type[HfAlm], folder: Path, source: Path, dtype: torch.dtype, config):
    """from_pretrained, with weights missing from the checkpoint (which transformers would initialise at random)
    or left over an error naming the weights file."""
    try:
        with _quiet_loading():
            model, info = _model_class(cls, folder).from_pretrained(str(source), config=config, dtype=dtype,
                                                                    local_files_only=True, output_loading_info=True)
    except ConfigError:
        raise
    except BaseException as err:   # a damaged checkpoint: safetensors, torch and transformers errors
        if not is_input_error(err):
            raise
        raise ConfigError(f"{folder}: cannot load {cls.model_class} ({_described(err)})") from None
    problems = [f"{what} {len(names)} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                for what, names in (("missing", _key_names(info.get("missing_keys"))),
                                    ("unexpected", _key_names(info.get("unexpected_keys"))),
                                    ("wrong shape", _key_names(info.get("mismatched_keys")))) if names]
    if problems:
        raise ConfigError(f"{weights_file(folder)}: weights do not match {folder / 'config.json'}: "
                          f"{'; '.join(problems)}")
    return model


@contextlib.contextmanager
def _quiet_loading():
    """Without transformers' loading report (many lines about missing or unexpected weights): the one-line error
    after from_pretrained says what matters."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _key_names(keys) -> list[str]:
    """Sorted names of a loading-info entry (mismatched keys come as (name, shape, shape) tuples)."""
    return sorted(str(k[0] if isinstance(k, (tuple, list)) else k) for k in keys or ())


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


def _described(err: BaseException) -> str:
    """The error's type and message on one line (a KeyError's message alone is just the key)."""
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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
    template, template_file = read_chat_template(folder, tokenizer)
    features, feature_file = read_feature_config(folder)
    alm = cls(model, tokenizer, folder=folder, chat_template=template, chat_template_file=template_file,
              feature_config=features, feature_file=feature_file, lora=lora)
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
