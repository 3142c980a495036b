"""The built-in small audio LLM: audio encoder + projector + a decoder-only transformers LM (Qwen2 or Llama,
built from its config, randomly initialised: trainable from scratch, nothing downloaded).

Input layout (identical in generation, log-probability scoring and SFT, so all three see the same thing):

    <|im_start|>system\\n{system}<|im_end|>\\n            (only when the item has a system prompt)
    <|im_start|>user\\n{text before <audio>}<a_1>...<a_F>{text after}<|im_end|>\\n
    <|im_start|>assistant\\n{completion}<|im_end|>

The single `<audio>` placeholder of the rendered chat template is expanded to one position per audio frame,
whose input embeddings are the projected audio encodings (inputs_embeds). Prompts are left-padded to a common
length P, so every completion starts at position P; position ids count only real tokens.

The interface the GRPO core and generative SFT use:
    generate(batch, num, sampling)                    -> Completions  (KV cache; stops when all rows hit EOS)
    token_logprobs(batch, completions, grad=...)      -> (logp [B, N, T], mask [B, N, T])  one teacher-forced
                                                         forward, audio encoder included
    sft_loss(batch, targets_text)                     -> mean cross-entropy over target tokens (+ EOS) only

All three are spoofrl.alm.decoding.PrefixLM's, the same code as the Hugging Face backends' (alm.hf); this module
holds what is SmallAlm's own: the LM config, the prompt rendering, the audio encoder and the prefix.

`pad`, `<audio>` and `<|im_start|>` can never be generated: their logits are -inf in generation and in
scoring alike, so the two define the same distribution. Forwards run in the module's current mode (dropout
is 0 by default); on CUDA they run under bf16 autocast (see AlmConfig.autocast), log-probabilities in float32.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Any

import torch
from torch import nn

from spoofrl.alm.batch import AlmBatch
from spoofrl.alm.config import MAX_PARAMETERS, AlmConfig
from spoofrl.alm.decoding import Prefix, PrefixLM, check_reserved, left_padded, positions
from spoofrl.alm.encoder import AudioEncoder, Projector
from spoofrl.alm.spectrogram import SpectrogramEncoder
from spoofrl.alm.template import ChatTemplate, template_variables
from spoofrl.alm.tokenizer import AUDIO, IM_END, IM_START, PAD, check_tokenizer
from spoofrl.config import from_dict, to_dict
from spoofrl.errors import ConfigError
from spoofrl.models.base import frame_mask
from spoofrl.models.detector import check_model_size

LM_CLASSES = {"qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM")}
# the transformers config entries that set the LM's sizes: a given config must agree with the AlmConfig on them
SIZE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings")


def lm_config(cfg: AlmConfig, pad_id: int, eos_id: int):
    """The transformers config of the LM described by `cfg` (vocab_size must be resolved)."""
    import transformers

    config_cls = getattr(transformers, LM_CLASSES[cfg.lm_class][0])
    kwargs: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.lm_width, intermediate_size=cfg.lm_ffn,
        num_hidden_layers=cfg.lm_layers, num_attention_heads=cfg.lm_heads, num_key_value_heads=cfg.lm_kv_heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
        attention_dropout=cfg.lm_dropout, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None)
    if "rope_parameters" in inspect.signature(config_cls.__init__).parameters:
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    else:  # transformers 4.x
        kwargs["rope_theta"] = cfg.rope_theta
    return config_cls(**kwargs)


def check_lm_config(cfg: AlmConfig, config, pad_id: int, eos_id: int) -> None:
    """A ConfigError naming the first size entry where a given transformers config (e.g. alm.json's lm_config)
    differs from the one `cfg` describes: the AlmConfig's bounds and size cap hold for the LM that is built."""
    wanted = lm_config(cfg, pad_id, eos_id)
    for key in SIZE_KEYS:
        have, want = getattr(config, key, None), getattr(wanted, key, None)
        if have != want:
            raise ConfigError(f"the LM's transformers config has {key} {have!r}, the alm config gives {want!r}")


def build_lm(cfg: AlmConfig, config) -> nn.Module:
    import transformers

    model_cls = getattr(transformers, LM_CLASSES[cfg.lm_class][1])
    config._attn_implementation = cfg.attn_implementation
    return model_cls(config)


class SmallAlm(PrefixLM, nn.Module):
    def __init__(self, cfg: AlmConfig, tokenizer, *, transformers_config=None,
                 chat_template: ChatTemplate | None = None):
        """`chat_template`: the tokenizer's chat template compiled with the file it came from (load_alm), named in
        its errors; by default compiled here."""
        super().__init__()
        ids = check_tokenizer(tokenizer)
        vocab = cfg.vocab_size or len(tokenizer)
        if vocab < len(tokenizer):
            raise ConfigError(f"alm.vocab_size {vocab} is smaller than the tokenizer ({len(tokenizer)} tokens)")
        self.cfg = dataclasses.replace(cfg, vocab_size=vocab)
        self.tokenizer = tokenizer
        self.ids = ids
        self.eos_token_id, self.pad_token_id, self.audio_token_id = ids.eos, ids.pad, ids.audio
        hears_audio = self.cfg.inputs != "spectrogram"
        self.encoder = AudioEncoder(self.cfg) if hears_audio else None
        self.projector = Projector(self.cfg.projector, self.encoder.out_dim, self.cfg.lm_width) if hears_audio \
            else None
        self.template = chat_template or ChatTemplate(tokenizer.chat_template, "the tokenizer's chat template")
        config = transformers_config if transformers_config is not None else lm_config(self.cfg, ids.pad, ids.eos)
        check_lm_config(self.cfg, config, ids.pad, ids.eos)
        self.lm = build_lm(self.cfg, config)
        # made after the LM, so that an audio-only model initialises exactly as before the option existed
        self.spectrogram = SpectrogramEncoder(self.cfg) if self.cfg.inputs != "audio" else None
        bias = torch.zeros(vocab)
        bias[ids.suppressed()] = float("-inf")
        bias[len(tokenizer):] = float("-inf")   # rows of a vocabulary rounded up past the tokenizer
        self.register_buffer("logit_bias", bias, persistent=False)
        self._prompt_cache: dict[tuple[str, str | None], list[int]] = {}

    # --- basics ---------------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (unless AlmConfig.autocast is 'off'); nothing on CPU."""
        dev = self.device
        if dev.type == "cuda" and self.cfg.autocast != "off" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def decoder(self) -> nn.Module:
        return self.lm.model

    @property
    def lm_head(self) -> nn.Module:
        return self.lm.lm_head

    def check_target(self, text: str) -> None:
        check_reserved(text, (PAD, IM_START, IM_END, AUDIO), "target")

    def check_positions(self, prefix: int, completion: int, *, generating: bool) -> None:
        # only generation is bounded, as it always was: RoPE positions past max_positions still compute
        if generating and prefix + completion > self.cfg.max_positions:
            raise ConfigError(f"prompt + audio ({prefix} positions) + max_completion_length ({completion}) exceed "
                              f"alm.max_positions ({self.cfg.max_positions})")

    # --- prompt and audio -----------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, system: str | None = None) -> list[int]:
        """Token ids of the chat-templated prompt with one `<audio>` placeholder, up to the assistant turn."""
        key = (prompt, system)
        if key not in self._prompt_cache:
            for text, what in ((prompt, "prompt"), (system or "", "system prompt")):
                check_reserved(text, (PAD, IM_START, IM_END), what)
            if AUDIO in (system or ""):
                raise ConfigError(f"the audio placeholder {AUDIO} belongs in the user prompt, not the system one")
            count = prompt.count(AUDIO)
            if count > 1:
                raise ConfigError(f"prompt {prompt[:60]!r} has {count} {AUDIO} placeholders; one audio per item")
            content = prompt if count else f"{AUDIO}\n{prompt}"
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": content}]
            text = self.template.render(messages, add_generation_prompt=True, **template_variables(self.tokenizer))
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if ids.count(self.ids.audio) != 1:
                raise ConfigError(f"the chat template of prompt {prompt[:60]!r} did not keep one {AUDIO} token")
            self._prompt_cache[key] = ids
        return self._prompt_cache[key]

    def encode_audio(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, S] + lengths [B] -> audio embeddings [B, F, lm_width] + frame counts [B]: the audio
        encoder's tokens, the spectrogram stream's, or (inputs: both) each item's audio tokens then its
        spectrogram tokens."""
        streams = []
        if self.encoder is not None:
            with self.autocast():
                feats, frames = self.encoder(waves, lengths)
                streams.append((self.projector(feats), frames))
        if self.spectrogram is not None:
            streams.append(self.spectrogram(waves, lengths))
        return streams[0] if len(streams) == 1 else concat_streams(streams)

    def prefix(self, batch: AlmBatch) -> Prefix:
        """Audio + prompt of each item as LM input embeddings, left-padded to a common length."""
        dev = self.device
        audio, frames = self.encode_audio(batch.waves.to(dev, torch.float32), batch.lengths.to(dev))
        ids, attn = left_padded(self.prompt_rows(batch, frames.tolist()), self.ids.pad, dev)
        if ids.shape[1] > self.cfg.max_positions:
            raise ConfigError(f"a prompt with its audio takes {ids.shape[1]} positions, more than alm.max_positions "
                              f"({self.cfg.max_positions}); use shorter audio or a larger max_positions")
        embeds = self.lm.get_input_embeddings()(ids)
        valid = audio[frame_mask(frames, audio.shape[1])]                 # [sum F_i, H], item by item
        embeds = embeds.masked_scatter((ids == self.ids.audio)[..., None], valid.to(embeds.dtype))
        return Prefix(embeds, attn, positions(attn), frames)


def concat_streams(streams: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item, the valid frames of each stream one after the other, zero-padded: [B, sum F, H] + counts."""
    counts = sum(frames for _, frames in streams)
    dtype = torch.promote_types(*[x.dtype for x, _ in streams]) if len(streams) > 1 else streams[0][0].dtype
    first = streams[0][0]
    out = first.new_zeros((first.shape[0], int(counts.max()), first.shape[2]), dtype=dtype)
    for i in range(first.shape[0]):
        pieces = [x[i, :int(frames[i])].to(dtype) for x, frames in streams]
        out[i, :int(counts[i])] = torch.cat(pieces)
    return out, counts


def alm_skeleton(cfg: AlmConfig, tokenizer, *, transformers_config=None, **kwargs) -> SmallAlm:
    """The SmallAlm `cfg` describes, on the meta device (shapes, no memory), once its options are within their
    bounds (also for a config made in Python, which from_dict has not checked) and its size within MAX_PARAMETERS:
    what build_alm and load_alm check before building the model itself."""
    from_dict(AlmConfig, to_dict(cfg), prefix="alm")
    with torch.device("meta"):
        skeleton = SmallAlm(cfg, tokenizer, transformers_config=transformers_config, **kwargs)
    check_model_size(skeleton, MAX_PARAMETERS, "alm")
    return skeleton


def build_alm(cfg: AlmConfig, tokenizer, *, seed: int = 0, device: torch.device | str = "cpu") -> SmallAlm:
    """A randomly initialised SmallAlm (initialisation seeded by `seed`, without touching torch's global RNG);
    one past its options' bounds or MAX_PARAMETERS is refused before anything is allocated."""
    alm_skeleton(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallAlm(cfg, tokenizer)
    return model.to(device)
