"""Self-supervised speech encoders through Hugging Face `transformers`: wav2vec 2.0 (also XLS-R and MMS,
which are wav2vec 2.0 checkpoints), WavLM and HuBERT.

Where the encoder comes from:
  - `path`: a local folder holding config.json + weights (what `save_pretrained` writes, or a downloaded
    checkpoint such as facebook/wav2vec2-xls-r-300m). Loaded with `local_files_only=True`: nothing downloads.
    `config` entries, if any, override the folder's config.json (e.g. `mask_time_prob: 0.0`).
  - no `path`: a randomly initialised encoder from `config` (transformers' defaults for `model_type` plus
    these entries), for tests and offline demos.
When a detector is saved, its config records the encoder's complete Hugging Face config (and `path` is
cleared), and model.safetensors holds every weight, so the saved folder loads without the original one.

Layers are numbered like Hugging Face's `hidden_states`: 0 is the input of the first transformer layer (CNN
features after projection and positional convolution), i = 1..N the output of transformer layer i; layer N
equals the encoder's `last_hidden_state` (for pre-norm "stable layer norm" models such as XLS-R it includes
the final layer norm). Transformer layers above the highest selected one are removed from the model, so
selecting layers 4-9 of a 24-layer encoder costs 9 layers, not 24 (and the saved file holds only those).

Fusion of the selected layers into one vector per frame (output [B, frames, D], 50 frames/s at 16 kHz):
  last          the selected layer (one layer; by default N)
  weighted_sum  softmax-weighted sum with learnable weights (SUPERB / s3prl style); default: all layers
  concat        concatenation along features, D = K x hidden (EnvSSLAM-FFN fuses layers 4-9 this way)
then an optional linear projection to `proj_dim`.

The encode/head split (see models/base.py): `encode` returns the selected hidden states [B, F, K, hidden]
(cacheable when frozen); `head` fuses and projects them (trainable).
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import torch
import torch.nn.functional as F
from torch import nn

from spoofrl.config import ConfigError, option, to_dict
from spoofrl.models.base import Frontend, frame_mask

log = logging.getLogger(__name__)

# model_type -> (config class, model class) in transformers.
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "hubert": ("HubertConfig", "HubertModel"),
}
# The architecture of XLS-R 300M (also MMS-300M): wav2vec 2.0 Large, pre-norm. `spoofrl models` sizes SSL presets
# that name no checkpoint folder with it (on the meta device: no weights are made).
REFERENCE_ENCODER = ("XLS-R 300M", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                                    "intermediate_size": 4096, "do_stable_layer_norm": True,
                                    "feat_extract_norm": "layer", "conv_bias": True})
# Hugging Face config keys that describe a file rather than the architecture; not saved, not validated.
_META_KEYS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures"}


class CheckpointNeeded(ConfigError):
    """An SSL front-end names neither a checkpoint folder (`path`) nor an architecture (`config`)."""


def parse_layers(spec: list[int] | str) -> list[int]:
    """[4, 5] / "4-9" / "3,5,7" / "6" -> sorted distinct layer numbers; [] or "" -> [] (the default set)."""
    if isinstance(spec, list):
        numbers = spec
    else:
        numbers = []
        for part in str(spec).replace(" ", "").split(","):
            if not part:
                continue
            first, dash, last = part.partition("-")
            try:
                lo, hi = int(first), int(last) if dash else int(first)
            except ValueError:
                raise ConfigError(f"layers: {spec!r} is not a list of ints or a range like '4-9'") from None
            if hi < lo:
                raise ConfigError(f"layers: empty range {part!r}")
            numbers.extend(range(lo, hi + 1))
    if any(n < 0 for n in numbers):
        raise ConfigError(f"layers: layer numbers start at 0, got {spec!r}")
    return sorted(set(numbers))


def _save_layer_output(module, args, output):
    """Forward hook: keep a transformer layer's output hidden states (first element if it returns a tuple)."""
    module._spoofrl_out = output[0] if isinstance(output, tuple) else output


def _save_layer_input(module, args, kwargs):
    """Forward pre-hook on the first layer: keep its input, i.e. hidden state 0."""
    module._spoofrl_in = args[0] if args else kwargs["hidden_states"]


class SSLEncoder(Frontend):
    """Hugging Face wav2vec 2.0 / XLS-R / MMS / WavLM / HuBERT encoder with layer selection and fusion."""

    cache_recommended = True

    @dataclass
    class Config:
        path: str = option("", "local folder with config.json + weights (Hugging Face layout); nothing is "
                               "downloaded. Empty: random weights from `config`")
        config: dict[str, Any] = option(factory=dict, doc="Hugging Face config entries: overrides of the "
                                        "folder's config.json, or (without path) the whole architecture "
                                        "on top of transformers' defaults, e.g. {hidden_size: 64, "
                                        "num_hidden_layers: 4}")
        model_type: Literal["auto", "wav2vec2", "wavlm", "hubert"] = option(
            "auto", "encoder family; 'auto' reads model_type from config.json / `config` (default wav2vec2; "
                    "XLS-R and MMS are wav2vec2)")
        frozen: bool = option(True, "keep the encoder fixed (eval mode, no gradients); its outputs can then "
                                    "be cached (features/cache.py). false fine-tunes it")
        freeze_feature_encoder: bool = option(True, "when fine-tuning, still keep the CNN waveform encoder "
                                                    "fixed (usual practice for wav2vec 2.0 fine-tuning)")
        layers: Union[list[int], str] = option(factory=list, doc="hidden layers to use: a list [4, 5, 6], a "
                                               "range '4-9' (inclusive) or '3,5,7'; 0 = transformer input, "
                                               "N = last layer. Empty: N for 'last', all 0..N otherwise")
        fusion: Literal["last", "weighted_sum", "concat"] = option(
            "last", "how selected layers become one vector per frame: 'last' (exactly one layer), "
                    "'weighted_sum' (learnable softmax weights), 'concat' (feature concatenation)")
        normalize_layers: bool = option(False, "layer-normalise each selected hidden state (no affine) "
                                               "before fusing, so no layer dominates by scale")
        proj_dim: int = option(0, "linear projection of the fused features to this size; 0 = none")
        normalize_waveform: bool = option(True, "zero-mean, unit-variance waveform per utterance (over its "
                                                "true length), as the wav2vec 2.0 / XLS-R feature extractors do")
        attention_mask: Literal["auto", "always", "never"] = option(
            "auto", "pass a padding mask to the encoder: 'auto' = only for models with layer-norm CNN "
                    "features (feat_extract_norm: layer, e.g. XLS-R, large models), per Hugging Face's advice "
                    "that group-norm models (wav2vec2-base) were trained without one")
        gradient_checkpointing: bool = option(False, "recompute transformer activations in the backward pass "
                                                     "(less memory when fine-tuning large encoders)")
        pretrained_from: str = option("", "informational: the folder the weights were first loaded from "
                                          "(filled in when a detector is saved)")

        def validate(self):
            if self.fusion == "last" and len(parse_layers(self.layers)) > 1:
                raise ConfigError(f"fusion 'last' uses one layer, but layers = {self.layers!r}; use "
                                  f"'weighted_sum' or 'concat' to fuse several")
            if self.proj_dim < 0:
                raise ConfigError(f"proj_dim must be >= 0, got {self.proj_dim}")

    def __init__(self, cfg: "SSLEncoder.Config"):
        super().__init__()
        self.cfg = cfg
        self.family, hf_config, self.ssl = build_encoder(cfg)
        self.hf_config = hf_config
        n_layers = hf_config.num_hidden_layers
        self.layer_ids = parse_layers(cfg.layers) or ([n_layers] if cfg.fusion == "last"
                                                      else list(range(n_layers + 1)))
        if self.layer_ids[-1] > n_layers:
            raise ConfigError(f"model.frontend(ssl).layers: layer {self.layer_ids[-1]} does not exist; this "
                              f"encoder has layers 0..{n_layers}")
        self._drop_unused_layers(max(self.layer_ids[-1], 1))
        self._install_taps()
        self._setup_training_mode()
        hidden = hf_config.hidden_size
        if cfg.fusion == "weighted_sum":
            self.layer_weights = nn.Parameter(torch.zeros(len(self.layer_ids)))
        fused = hidden * len(self.layer_ids) if cfg.fusion == "concat" else hidden
        self.proj = nn.Linear(fused, cfg.proj_dim) if cfg.proj_dim else None
        self.out_dim = cfg.proj_dim or fused
        self.use_attention_mask = (cfg.attention_mask == "always" or
                                   (cfg.attention_mask == "auto" and hf_config.feat_extract_norm == "layer"))

    # --- construction helpers ------------------------------------------------------------------------
    def _drop_unused_layers(self, keep: int) -> None:
        """Remove transformer layers above `keep`: their outputs are never used."""
        encoder = self.ssl.encoder
        encoder.layers = encoder.layers[:keep]
        self.keeps_all_layers = keep == self.hf_config.num_hidden_layers

    def _install_taps(self) -> None:
        """Hooks that keep the selected layers' hidden states during the encoder's forward pass."""
        layers = self.ssl.encoder.layers
        if 0 in self.layer_ids:
            layers[0].register_forward_pre_hook(_save_layer_input, with_kwargs=True)
        for i in self.layer_ids:
            if i > 0:
                layers[i - 1].register_forward_hook(_save_layer_output)

    def _setup_training_mode(self) -> None:
        cfg = self.cfg
        if cfg.frozen:
            self.ssl.requires_grad_(False)
        elif cfg.freeze_feature_encoder:
            self.ssl.feature_extractor.requires_grad_(False)
        if cfg.gradient_checkpointing and not cfg.frozen:
            # transformers 5 renamed the method; the old name still works there, with a deprecation warning
            enable = getattr(self.ssl, "activation_checkpointing_enable", None) or \
                self.ssl.gradient_checkpointing_enable
            enable()

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout, no masking), so its outputs are deterministic."""
        super().train(mode)
        if self.cfg.frozen:
            self.ssl.eval()
        return self

    # --- Frontend interface --------------------------------------------------------------------------
    def encoder_parameters(self):
        return self.ssl.parameters()

    def encoder_state(self):
        return self.ssl.state_dict()

    def encode(self, wave, lengths):
        if self.cfg.normalize_waveform:
            wave = normalize_waveform(wave, lengths)
        mask = frame_mask(lengths, wave.shape[1]).long() if self.use_attention_mask else None
        self.ssl(wave, attention_mask=mask)
        states = torch.stack([self._take_layer(i) for i in self.layer_ids], dim=2)  # [B, F, K, hidden]
        frame_lengths = self.ssl._get_feat_extract_output_lengths(lengths).long()
        frame_lengths = torch.minimum(frame_lengths, torch.as_tensor(states.shape[1], device=lengths.device))
        return states, frame_lengths

    def head(self, raw, frame_lengths):
        if self.cfg.normalize_layers:
            raw = F.layer_norm(raw, (self.hf_config.hidden_size,))  # a constant shape keeps ONNX export happy
        if self.cfg.fusion == "weighted_sum":
            weights = torch.softmax(self.layer_weights, dim=0)
            fused = (raw * weights[:, None]).sum(dim=2)
        elif self.cfg.fusion == "concat":
            fused = raw.flatten(2)
        else:
            fused = raw[:, :, 0]
        return self.proj(fused) if self.proj is not None else fused

    def _take_layer(self, i: int) -> torch.Tensor:
        layers = self.ssl.encoder.layers
        if i == 0:
            state, layers[0]._spoofrl_in = layers[0]._spoofrl_in, None
            return state
        state, layers[i - 1]._spoofrl_out = layers[i - 1]._spoofrl_out, None
        if i == self.hf_config.num_hidden_layers and getattr(self.hf_config, "do_stable_layer_norm", False):
            state = self.ssl.encoder.layer_norm(state)  # pre-norm encoders normalise the last output
        return state

    def resolved_options(self) -> dict[str, Any]:
        opts = to_dict(self.cfg)
        opts.update(path="", model_type=self.family, config=hf_config_dict(self.hf_config),
                    pretrained_from=self.cfg.pretrained_from or self.cfg.path)
        return opts

    def encode_signature(self) -> dict[str, Any]:
        return {"model_type": self.family, "config": hf_config_dict(self.hf_config), "layers": self.layer_ids,
                "normalize_waveform": self.cfg.normalize_waveform, "attention_mask": self.use_attention_mask}

    def layer_weights_softmax(self) -> torch.Tensor | None:
        """The weighted-sum fusion's current layer weights (sum to 1), in `layer_ids` order; None otherwise."""
        return torch.softmax(self.layer_weights.detach(), 0) if self.cfg.fusion == "weighted_sum" else None


def normalize_waveform(wave: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-utterance zero mean, unit variance over the true length; padding stays 0."""
    mask = frame_mask(lengths, wave.shape[1]).to(wave.dtype)
    count = mask.sum(1, keepdim=True).clamp_min(1.0)
    mean = (wave * mask).sum(1, keepdim=True) / count
    var = (((wave - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wave - mean) / torch.sqrt(var + eps) * mask


def hf_config_dict(hf_config) -> dict[str, Any]:
    """The architecture part of a Hugging Face config, as plain YAML-friendly data."""
    return {k: v for k, v in to_dict(hf_config.to_dict()).items() if k not in _META_KEYS}


def _family_classes(family: str):
    try:
        import transformers
    except ImportError:
        raise ConfigError("the 'ssl' front-end needs Hugging Face transformers: pip install 'spoofrl[ssl]'") from None
    config_name, model_name = FAMILIES[family]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def _resolve_family(cfg: "SSLEncoder.Config", folder_type: str | None, where: str) -> str:
    family = cfg.model_type
    if family == "auto":
        family = folder_type or cfg.config.get("model_type") or "wav2vec2"
    if family not in FAMILIES:
        raise ConfigError(f"{where}: model_type {family!r} is not supported; use one of "
                          f"{', '.join(FAMILIES)} (XLS-R and MMS are wav2vec2)")
    return family


def _make_hf_config(config_cls, base: dict[str, Any], overrides: dict[str, Any], where: str):
    """A Hugging Face config from `base` (a folder's config.json, or {}) plus validated `overrides`.

    Built in one go (not by setting attributes afterwards) so derived values such as the number of CNN
    layers follow overridden lists like conv_dim."""
    known = config_cls()
    for key in overrides:
        if key not in _META_KEYS and key != "model_type" and not hasattr(known, key):
            raise ConfigError(f"{where}: unknown Hugging Face {config_cls.__name__} option {key!r}")
    merged = {k: v for k, v in {**base, **overrides}.items() if k not in _META_KEYS and k != "model_type"}
    # Layer drop skips whole layers at random while training, which would leave a selected layer's hidden
    # state missing; layer selection and fusion need every layer, every step.
    merged["layerdrop"] = 0.0
    try:
        return config_cls(**merged)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: invalid Hugging Face config ({err})") from None


def _read_folder_config(folder: Path) -> dict[str, Any]:
    config_file = folder / "config.json"
    try:
        data = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{config_file}: cannot read the Hugging Face config ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}: expected a JSON object")
    return data


def build_encoder(cfg: "SSLEncoder.Config"):
    """(family, Hugging Face config, model) from a local folder or from a config with random weights."""
    where = "model.frontend(ssl)"
    if not cfg.path:
        if not cfg.config:
            raise CheckpointNeeded(f"{where}: set model.frontend.path to a local checkpoint folder (config.json + "
                                   f"weights), or give model.frontend.config for a randomly initialised encoder")
        family = _resolve_family(cfg, None, where)
        config_cls, model_cls = _family_classes(family)
        hf_config = _make_hf_config(config_cls, {}, cfg.config, f"{where}.config")
        try:
            return family, hf_config, model_cls(hf_config)
        except (ValueError, RuntimeError, TypeError) as err:  # e.g. hidden_size not divisible by the heads
            raise ConfigError(f"{where}.config: cannot build a {family} encoder from it "
                              f"({' '.join(str(err).split())[:200]})") from None
    folder = Path(cfg.path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: not a Hugging Face model folder (no config.json); set "
                          f"model.frontend.path to a local checkpoint folder")
    folder_config = _read_folder_config(folder)
    family = _resolve_family(cfg, folder_config.get("model_type"), str(folder / "config.json"))
    config_cls, model_cls = _family_classes(family)
    hf_config = _make_hf_config(config_cls, folder_config, cfg.config, f"{where}.config")
    try:
        with _quiet_transformers():
            model, info = model_cls.from_pretrained(str(folder), config=hf_config, local_files_only=True,
                                                    output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - the folder is user input; loaders raise many types on bad files
        raise ConfigError(f"{folder}: cannot load a {family} encoder ({_loading_problem(err)})") from None
    _check_loading(folder, model, info)
    # Computation and saved weights are float32 whatever the checkpoint holds (half-precision checkpoints
    # convert exactly); casting here works with every transformers version, whatever its default dtype.
    return family, hf_config, model.float()


def _loading_problem(err: Exception) -> str:
    """One line about why from_pretrained failed (its size-mismatch error points to a report silenced here)."""
    text = " ".join(str(err).split())
    if "mismatched_sizes" in text or "size mismatch" in text:
        return ("tensor shapes in the checkpoint differ from its config; check the `config` overrides of "
                "architecture options such as hidden_size")
    return f"{type(err).__name__}: {text[:300]}"


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' loading report and progress bar; `_check_loading` reports in one line instead.
    (Its report lists every checkpoint tensor the bare encoder does not use, e.g. a pre-training quantizer or
    a CTC head, which is expected here.)"""
    from transformers.utils import logging as hf_logging
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _check_loading(folder: Path, model: nn.Module, info: dict) -> None:
    """Refuse a folder whose weights mostly do not fit the model (wrong family); warn about a few misses."""
    missing = list(info.get("missing_keys") or [])
    total = len(model.state_dict())
    if total and len(missing) > total // 2:
        raise ConfigError(f"{folder}: the weights do not fit a {type(model).__name__} ({len(missing)} of {total} "
                          f"tensors missing, e.g. {missing[:2]}); check model_type")
    if missing:
        log.warning("%s: %d tensors not in the checkpoint, left randomly initialised: %s", folder,
                    len(missing), ", ".join(missing[:5]))
    unused = list(info.get("unexpected_keys") or [])
    log.info("%s: loaded a %s with %d tensors%s", folder, type(model).__name__, total - len(missing),
             f"; {len(unused)} checkpoint tensors outside the encoder ignored (e.g. {', '.join(sorted(unused)[:3])})"
             if unused else "")
