"""Typed options of the built-in small audio LLM (`AlmConfig`) and of its decoding (`SamplingConfig`).

Both are plain dataclasses of documented `option(...)` fields, so they load from YAML with
`spoofrl.config.from_dict` (unknown keys and out-of-range values fail with the key named) and are saved
resolved (every default filled in) beside the weights by `save_alm`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from spoofrl.config import invalid, option

# A SmallAlm is trained from scratch: one of more weights than this (8 GB in float32) is refused before it is built.
MAX_PARAMETERS = 2_000_000_000


@dataclass
class AlmConfig:
    """Audio encoder (front-end -> conv stack -> optional transformer) -> projector -> decoder-only LM.

    Frame rates: a 10 ms-hop front-end gives 100 frames/s; each conv layer halves it, so 2 layers give 25
    audio tokens per second and 3 layers 12.5. Each audio frame becomes one LM position, inserted where the
    prompt's `<audio>` placeholder was.

    Sizes: every size option has an upper bound (those of the largest open LMs: 128 layers, width 16384), and a
    model of more than MAX_PARAMETERS (2 billion: 8 GB of float32 weights) is refused before anything is built
    (spoofrl.alm.model.check_alm_size), so a config or a saved alm.json cannot make spoofrl allocate more than a
    SmallAlm is for."""

    sample_rate: int = option(16000, "sample rate of the waveforms the model takes (Hz); the front-end's "
                                     "`sample_rate` option is filled in from it", ge=1000, le=384000)
    frontend: dict[str, Any] = option(factory=lambda: {"name": "logmel", "n_mels": 64},
                                      doc="front-end registry key (spoofrl.models.registry.FRONTENDS) under "
                                          "'name', plus its options (`spoofrl models --describe KEY`)")
    feature_norm: Literal["layernorm", "none"] = option(
        "layernorm", "normalisation of each front-end frame before the conv stack: 'layernorm' (over the "
                     "feature axis, learnable; keeps the spectral shape, removes the level) or 'none'")
    conv_layers: int = option(2, "stride-2 Conv1d + GELU layers; the frame rate is divided by 2**conv_layers",
                              ge=0, le=6)
    conv_channels: int = option(128, "channels of the conv stack (= the audio encoder's width)", ge=1,
                               le=8192)
    conv_kernel: int = option(3, "kernel size of the conv layers (odd)", ge=1, le=63)
    encoder_layers: int = option(1, "pre-norm transformer layers after the conv stack (0: none); sinusoidal "
                                    "positions are added before them", ge=0, le=64)
    encoder_heads: int = option(4, "attention heads of the encoder's transformer layers", ge=1, le=256)
    encoder_ffn: int = option(256, "feed-forward width of the encoder's transformer layers", ge=1, le=65536)
    encoder_dropout: float = option(0.0, "dropout in the audio encoder (conv outputs and transformer layers)",
                                    ge=0.0, lt=1.0)
    inputs: Literal["audio", "spectrogram", "both"] = option(
        "audio", "what the LM hears at <audio>: 'audio' = the encoder of the raw audio (front-end, conv stack, "
                 "transformer); 'spectrogram' = a structured band x time grid of log energies, patch-embedded "
                 "(spoofrl.alm.spectrogram; SDD-APALLM, arXiv 2601.23066); 'both' = the audio tokens, then the "
                 "spectrogram tokens")
    spectrogram_bands: int = option(16, "inputs spectrogram / both: equal-width bands from 0 Hz to Nyquist",
                                    ge=2, le=512)
    spectrogram_hop_ms: float = option(20.0, "inputs spectrogram / both: frame hop (window: 2 hops)", gt=1,
                                       le=500)
    spectrogram_patch: int = option(4, "inputs spectrogram / both: frames per token (4 x 20 ms: 12.5 tokens/s)",
                                    ge=1, le=64)
    projector: Literal["mlp", "linear"] = option(
        "mlp", "audio -> LM width projector: 'mlp' (Linear, GELU, Linear) or 'linear'")
    lm_class: Literal["qwen2", "llama"] = option(
        "qwen2", "decoder-only LM class built from its transformers config: Qwen2ForCausalLM (q/k/v biases) "
                 "or LlamaForCausalLM")
    lm_layers: int = option(2, "decoder layers of the LM", ge=1, le=128)
    lm_width: int = option(128, "hidden size of the LM (audio embeddings are projected to it)", ge=8,
                          le=16384)
    lm_heads: int = option(4, "attention heads of the LM; lm_width / lm_heads must be an even integer (RoPE)",
                           ge=1, le=512)
    lm_kv_heads: int = option(2, "key/value heads (grouped-query attention); must divide lm_heads", ge=1,
                              le=512)
    lm_ffn: int = option(256, "intermediate (SwiGLU) width of the LM's MLPs", ge=1, le=65536)
    lm_dropout: float = option(0.0, "attention dropout of the LM", ge=0.0, lt=1.0)
    rope_theta: float = option(10000.0, "RoPE base of the LM", gt=0)
    max_positions: int = option(4096, "longest sequence (audio + prompt + completion) the LM is configured for",
                                ge=16, le=1 << 20)
    tie_embeddings: bool = option(True, "share the LM's input embedding and output projection")
    attn_implementation: Literal["sdpa", "eager"] = option(
        "sdpa", "attention kernel of the LM (transformers' attn_implementation)")
    vocab_size: int = option(0, "LM vocabulary; 0 = the tokenizer's size (len(tokenizer)), filled in when the "
                                "model is built, so a saved config holds the real value", ge=0,
                                le=1 << 20)
    autocast: Literal["auto", "bf16", "off"] = option(
        "auto", "mixed precision of forwards: 'auto' = bf16 autocast on CUDA devices that support it and none "
                "on CPU; 'bf16' = bf16 autocast on CUDA (never on CPU); 'off' = float32 everywhere. "
                "Log-probabilities are always computed in float32")

    def validate(self):
        if "name" not in self.frontend:
            raise invalid("frontend", "needs a 'name' (front-end registry key) and its options")
        if self.conv_kernel % 2 == 0:
            raise invalid("conv_kernel", f"must be odd, got {self.conv_kernel}")
        if self.lm_width % self.lm_heads or (self.lm_width // self.lm_heads) % 2:
            raise invalid("lm_heads", f"lm_width ({self.lm_width}) / lm_heads ({self.lm_heads}) must be an even "
                                      f"integer (the head size, rotated in pairs by RoPE)")
        if self.lm_heads % self.lm_kv_heads:
            raise invalid("lm_kv_heads", f"must divide lm_heads ({self.lm_heads}), got {self.lm_kv_heads}")
        if self.encoder_layers and self.conv_channels % self.encoder_heads:
            raise invalid("encoder_heads", f"must divide conv_channels ({self.conv_channels}), "
                                           f"got {self.encoder_heads}")

    @property
    def downsample(self) -> int:
        """Front-end frames per audio token."""
        return 2 ** self.conv_layers


@dataclass
class SamplingConfig:
    """How completions are drawn. Names and meanings follow TRL's GRPOConfig (temperature, top_p, top_k, min_p,
    max_completion_length) and transformers' GenerationConfig (do_sample). Warpers apply in transformers'
    order: temperature, then top-k, then top-p, then min-p."""

    temperature: float = option(1.0, "logits are divided by it before sampling; the log-probabilities that "
                                     "generate() returns are those of softmax(logits / temperature), unfiltered "
                                     "(as TRL's GRPO loss computes them)", gt=0)
    top_p: float = option(1.0, "nucleus sampling: keep the most probable tokens whose cumulative probability "
                               "reaches top_p; 1.0 keeps all", gt=0, le=1)
    top_k: int | None = option(None, "keep only the k most probable tokens; None or 0 disables", ge=0)
    min_p: float | None = option(None, "drop tokens less probable than min_p times the most probable one; "
                                       "None disables", ge=0, le=1)
    max_completion_length: int = option(256, "most tokens generated per completion (EOS included); a completion "
                                             "that reaches it without EOS is flagged truncated", ge=1)
    do_sample: bool = option(True, "sample (True) or decode greedily (False: argmax, warpers ignored)")
    seed: int | None = option(None, "seed of a generator made for each generate() call, so a call is "
                                    "reproducible; None = torch's global generator (or the one passed in)")
