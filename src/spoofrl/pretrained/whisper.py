"""A CTranslate2 `WhisperSpec` model (model.bin + its config.json + tokenizer.json) turned into a transformers
`WhisperForConditionalGeneration` folder: model.safetensors, config.json, generation_config.json, tokenizer and
feature-extractor files. Every CTranslate2 variable maps onto exactly one transformers weight (fused ones are
split); a variable left over or missing is an error, so a spec revision that changes the layout cannot be
converted half-way.

Weights are stored in the dtype the model.bin holds (float16 for faster-whisper-base): the conversion is then
exact, the folder is half the size of float32, and `load_whisper` upcasts to float32 on load, exactly.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spoofrl.errors import SpoofrlError
from spoofrl.pretrained.ct2 import Ct2Model, read_ct2

SPEC = "WhisperSpec"
GELU = 3                    # CTranslate2's Activation enum: RELU 0, GELUTanh 1, SWISH 2, GELU 3
TASKS = ("translate", "transcribe")
# Openai's decoding option max_initial_timestamp = 1.0 s, in 0.02-s timestamp steps.
MAX_INITIAL_TIMESTAMP_INDEX = 50
SPECIAL = {"eos": "<|endoftext|>", "start": "<|startoftranscript|>", "prev": "<|startofprev|>",
           "lm": "<|startoflm|>", "nocaptions": "<|nocaptions|>", "notimestamps": "<|notimestamps|>"}


class WhisperConversionError(SpoofrlError):
    """The model files are readable but do not describe a Whisper model this converter can map."""


@dataclass
class WhisperSources:
    """The files of a CTranslate2 Whisper model folder."""
    model_bin: Path
    config: Path                  # CTranslate2's config.json: suppress ids, language ids, alignment heads
    tokenizer: Path               # tokenizer.json (tokenizers library)
    vocabulary: Path | None = None  # vocabulary.txt (one a line) or .json (a list): all tokens, timestamps included

    @classmethod
    def in_folder(cls, folder: Path) -> "WhisperSources":
        folder = Path(folder)
        for name in ("model.bin", "config.json", "tokenizer.json"):
            if not (folder / name).is_file():
                raise WhisperConversionError(f"{folder / name}: missing (a CTranslate2 Whisper folder holds "
                                             f"model.bin, config.json and tokenizer.json)")
        vocab = [folder / n for n in ("vocabulary.txt", "vocabulary.json") if (folder / n).is_file()]
        return cls(folder / "model.bin", folder / "config.json", folder / "tokenizer.json", (vocab or [None])[0])


# --------------------------------------------------------------------------------------------- weights

class _Taker:
    """Hands out the model's variables by name, remembering which were used, so leftovers can be reported."""

    def __init__(self, model: Ct2Model):
        self.model, self.used = model, set()

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.model.tensors:
            raise WhisperConversionError(f"{self.model.path}: {SPEC} variable {name!r} is missing")
        self.used.add(name)
        return self.model.tensors[name]

    def leftovers(self) -> list[str]:
        return sorted(set(self.model.tensors) - self.used)


def _torch(array: np.ndarray, ct2_dtype: str):
    import torch
    tensor = torch.from_numpy(array.copy())        # own the memory: the reader's arrays view the file bytes
    return tensor.view(torch.bfloat16) if ct2_dtype == "bfloat16" else tensor


def _linear(take: _Taker, ct2: str, hf: str, out: dict) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = take(f"{ct2}/weight"), take(f"{ct2}/bias")


def _norm(take: _Taker, ct2: str, hf: str, out: dict) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = take(f"{ct2}/gamma"), take(f"{ct2}/beta")


def _split_rows(array: np.ndarray, parts: int, name: str, path: Path) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise WhisperConversionError(f"{path}: {name} has {array.shape[0]} rows, not a multiple of {parts}")
    return np.split(array, parts, axis=0)


def _fused(take: _Taker, ct2: str, hf: str, projections: tuple[str, ...], out: dict) -> None:
    """A fused CTranslate2 linear (Q,K,V or K,V) split into transformers' separate projections. transformers'
    k_proj has no bias: CTranslate2 stores zeros there, and a key bias would not change attention anyway
    (q.b_k is the same for every key of a query, and softmax ignores a constant)."""
    path = take.model.path
    weights = _split_rows(take(f"{ct2}/weight"), len(projections), f"{ct2}/weight", path)
    biases = _split_rows(take(f"{ct2}/bias"), len(projections), f"{ct2}/bias", path)
    for proj, weight, bias in zip(projections, weights, biases):
        out[f"{hf}.{proj}.weight"] = weight
        if proj != "k_proj":
            out[f"{hf}.{proj}.bias"] = bias


def _attention(take: _Taker, ct2: str, hf: str, out: dict, cross: bool) -> None:
    if cross:
        _linear(take, f"{ct2}/linear_0", f"{hf}.q_proj", out)
        _fused(take, f"{ct2}/linear_1", hf, ("k_proj", "v_proj"), out)
        _linear(take, f"{ct2}/linear_2", f"{hf}.out_proj", out)
    else:
        _fused(take, f"{ct2}/linear_0", hf, ("q_proj", "k_proj", "v_proj"), out)
        _linear(take, f"{ct2}/linear_1", f"{hf}.out_proj", out)


def _ffn(take: _Taker, ct2: str, hf: str, out: dict) -> None:
    _norm(take, f"{ct2}/layer_norm", f"{hf}.final_layer_norm", out)
    _linear(take, f"{ct2}/linear_0", f"{hf}.fc1", out)
    _linear(take, f"{ct2}/linear_1", f"{hf}.fc2", out)


def _layer_count(model: Ct2Model, side: str) -> int:
    indices = {int(m.group(1)) for name in model.tensors
               if (m := re.match(rf"^{side}/layer_(\d+)/", name))}
    if not indices or indices != set(range(len(indices))):
        raise WhisperConversionError(f"{model.path}: {side} layers {sorted(indices)} are not 0..N-1")
    return len(indices)


def whisper_weights(model: Ct2Model) -> dict[str, np.ndarray]:
    """transformers state-dict names -> arrays (proj_out.weight is left out: it is tied to the embeddings)."""
    take, out = _Taker(model), {}
    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        out[f"{hf}.embed_positions.weight"] = take(f"{side}/position_encodings/encodings")
        _norm(take, f"{side}/layer_norm", f"{hf}.layer_norm", out)
        for i in range(_layer_count(model, side)):
            ct2, layer = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _norm(take, f"{ct2}/self_attention/layer_norm", f"{layer}.self_attn_layer_norm", out)
            _attention(take, f"{ct2}/self_attention", f"{layer}.self_attn", out, cross=False)
            if side == "decoder":
                _norm(take, f"{ct2}/attention/layer_norm", f"{layer}.encoder_attn_layer_norm", out)
                _attention(take, f"{ct2}/attention", f"{layer}.encoder_attn", out, cross=True)
            _ffn(take, f"{ct2}/ffn", layer, out)
    for conv in ("conv1", "conv2"):
        _linear(take, f"encoder/{conv}", f"model.encoder.{conv}", out)
    out["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    _check_tied_projection(model, take)
    if take.leftovers():
        raise WhisperConversionError(f"{model.path}: {len(take.leftovers())} {SPEC} variables have no transformers "
                                     f"counterpart (first: {take.leftovers()[0]!r}): another spec revision?")
    return out


def _check_tied_projection(model: Ct2Model, take: _Taker) -> None:
    """The output projection must be the embeddings (an alias), as transformers ties proj_out to them."""
    name, target = "decoder/projection/weight", "decoder/embeddings/weight"
    if model.aliases.get(name) == target:
        return
    if name in model.tensors and np.array_equal(model.tensors[name], model.tensors[target]):
        take(name)                       # stored twice, but equal: still tied
        return
    raise WhisperConversionError(f"{model.path}: {name} is not tied to {target}; transformers' Whisper ties them")


# --------------------------------------------------------------------------------------------- config

def _scalar(model: Ct2Model, name: str) -> int:
    if name not in model.scalars:
        raise WhisperConversionError(f"{model.path}: {SPEC} scalar {name!r} is missing")
    return int(model.scalars[name])


def _check_architecture(model: Ct2Model) -> None:
    """The decoder options transformers' Whisper hard-codes: pre-norm, GELU, unscaled embeddings, no ALiBi."""
    expected = {"decoder/pre_norm": 1, "decoder/activation": GELU, "decoder/scale_embeddings": 0,
                "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}
    for name, value in expected.items():
        if name in model.scalars and _scalar(model, name) != value:
            raise WhisperConversionError(f"{model.path}: {name} = {_scalar(model, name)}, transformers' Whisper "
                                         f"needs {value}")
    for dtype in {model.dtypes[n] for n in model.tensors}:
        if dtype not in ("float32", "float16", "bfloat16"):
            raise WhisperConversionError(f"{model.path}: {dtype} weights (a quantized model): convert it with "
                                         f"--quantization float16 or float32")


@dataclass
class TokenIds:
    """Whisper's special tokens as found in the tokenizer."""
    ids: dict[str, int]            # key of SPECIAL -> id
    translate: int
    transcribe: int
    languages: dict[str, int]      # '<|en|>' -> id

    @classmethod
    def from_tokenizer(cls, path: Path, language_ids: list[int]) -> "TokenIds":
        try:
            added = {t["content"]: t["id"] for t in json.loads(path.read_text(encoding="utf-8"))["added_tokens"]}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise WhisperConversionError(f"{path}: not a tokenizers tokenizer.json ({err})") from None
        wanted = {**SPECIAL, "translate": "<|translate|>", "transcribe": "<|transcribe|>"}
        missing = [tok for tok in wanted.values() if tok not in added]
        if missing:
            raise WhisperConversionError(f"{path}: Whisper special tokens missing: {', '.join(missing)}")
        by_id = {i: tok for tok, i in added.items()}
        languages = {by_id[i]: i for i in language_ids if i in by_id}
        if len(languages) != len(language_ids):
            raise WhisperConversionError(f"{path}: the model's language ids are not all tokens of the tokenizer")
        return cls({k: added[v] for k, v in SPECIAL.items()}, added["<|translate|>"], added["<|transcribe|>"],
                   languages)


def _read_ct2_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WhisperConversionError(f"{path}: not a JSON object ({err})") from None
    if not isinstance(config, dict):
        raise WhisperConversionError(f"{path}: not a JSON object")
    return config


def whisper_config(model: Ct2Model, weights: dict[str, np.ndarray], tokens: TokenIds, ct2_config: dict):
    """The transformers WhisperConfig that `weights` load into."""
    from transformers import WhisperConfig
    embed = weights["model.decoder.embed_tokens.weight"]
    conv1 = weights["model.encoder.conv1.weight"]
    return WhisperConfig(
        vocab_size=embed.shape[0], num_mel_bins=conv1.shape[1], d_model=embed.shape[1],
        encoder_layers=_layer_count(model, "encoder"), decoder_layers=_layer_count(model, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=weights["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=weights["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=weights["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=weights["model.decoder.embed_positions.weight"].shape[0],
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        pad_token_id=tokens.ids["eos"], bos_token_id=tokens.ids["eos"], eos_token_id=tokens.ids["eos"],
        decoder_start_token_id=tokens.ids["start"],
        # suppressed tokens live in the generation config only: generate() warns when the model config has them too
        suppress_tokens=None, begin_suppress_tokens=None,
        architectures=["WhisperForConditionalGeneration"], dtype=_weights_dtype(model))


def _weights_dtype(model: Ct2Model) -> str:
    return model.dtypes["decoder/embeddings/weight"]


def whisper_generation_config(config, tokens: TokenIds, ct2_config: dict):
    """What the hub's generation_config.json holds, built from the tokenizer and CTranslate2's config: the
    start, end and task tokens, the language table, suppressed tokens and alignment heads."""
    from transformers import GenerationConfig
    heads = [list(map(int, h)) for h in ct2_config.get("alignment_heads") or []]
    return GenerationConfig(
        decoder_start_token_id=tokens.ids["start"], bos_token_id=tokens.ids["eos"],
        eos_token_id=tokens.ids["eos"], pad_token_id=tokens.ids["eos"],
        max_length=config.max_target_positions,
        begin_suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids_begin") or []],
        suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids") or []],
        no_timestamps_token_id=tokens.ids["notimestamps"],
        prev_sot_token_id=tokens.ids["prev"], is_multilingual=bool(tokens.languages),
        lang_to_id=dict(tokens.languages), task_to_id={"translate": tokens.translate, "transcribe": tokens.transcribe},
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, alignment_heads=heads, return_timestamps=False)


# --------------------------------------------------------------------------------------------- folder

def _write_tokenizer(sources: WhisperSources, vocab_size: int, out: Path) -> None:
    """tokenizer.json (with the timestamp tokens of vocabulary.txt the tokenizer lacks, at their ids) and a
    tokenizer_config.json naming transformers' WhisperTokenizer."""
    from tokenizers import AddedToken, Tokenizer
    tokenizer = Tokenizer.from_file(str(sources.tokenizer))
    if sources.vocabulary is not None:
        words = _vocabulary(sources.vocabulary)
        extra = words[tokenizer.get_vocab_size(with_added_tokens=True):vocab_size]
        tokenizer.add_tokens([AddedToken(w, normalized=False, special=False) for w in extra])
        if extra and tokenizer.token_to_id(extra[-1]) != len(words[:vocab_size]) - 1:
            raise WhisperConversionError(f"{sources.vocabulary}: its tokens do not follow tokenizer.json's ids")
    tokenizer.save(str(out / "tokenizer.json"))
    eos = SPECIAL["eos"]
    settings = {"tokenizer_class": "WhisperTokenizer", "unk_token": eos, "bos_token": eos, "eos_token": eos,
                "pad_token": eos, "add_prefix_space": False, "model_max_length": 1024}
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _vocabulary(path: Path) -> list[str]:
    """CTranslate2 writes vocabulary.json (a list) since 3.x; older conversions such as faster-whisper's wrote
    vocabulary.txt, one token a line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return text.splitlines()
    try:
        words = json.loads(text)
    except ValueError as err:
        raise WhisperConversionError(f"{path}: not JSON ({err})") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise WhisperConversionError(f"{path}: not a JSON list of tokens")
    return words


def _write_feature_extractor(num_mel_bins: int, out: Path) -> None:
    from transformers import WhisperFeatureExtractor
    WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(str(out))


def convert_whisper(sources: WhisperSources, out: Path) -> Path:
    """Write a transformers Whisper folder `out` (created; files overwritten) from CTranslate2 files."""
    from safetensors.torch import save_file
    model = read_ct2(sources.model_bin, spec=SPEC)
    _check_architecture(model)
    ct2_config = _read_ct2_config(sources.config)
    tokens = TokenIds.from_tokenizer(sources.tokenizer, list(ct2_config.get("lang_ids") or []))
    weights = whisper_weights(model)
    config = whisper_config(model, weights, tokens, ct2_config)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: _torch(array, _weights_dtype(model)) for name, array in weights.items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del state
    config.save_pretrained(str(out))
    whisper_generation_config(config, tokens, ct2_config).save_pretrained(str(out))
    _write_tokenizer(sources, config.vocab_size, out)
    _write_feature_extractor(config.num_mel_bins, out)
    return out


def load_whisper(folder: str | Path, dtype=None):
    """WhisperForConditionalGeneration from a converted folder, in float32 unless `dtype` says otherwise
    (float16 matmuls are slow or missing on CPUs); a missing or unexpected weight is an error."""
    import torch
    from transformers import WhisperForConditionalGeneration
    folder = Path(folder)
    model, info = WhisperForConditionalGeneration.from_pretrained(
        str(folder), dtype=dtype or torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise WhisperConversionError(f"{folder}: weights do not match the config: {problems}")
    return model.eval()
