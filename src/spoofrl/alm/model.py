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

`pad`, `<audio>` and `<|im_start|>` can never be generated: their logits are -inf in generation and in
scoring alike, so the two define the same distribution. Forwards run in the module's current mode (dropout
is 0 by default); on CUDA they run under bf16 autocast (see AlmConfig.autocast), log-probabilities in float32.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from spoofrl.alm.batch import AlmBatch, Completions, completion_mask
from spoofrl.alm.config import AlmConfig, SamplingConfig
from spoofrl.alm.encoder import AudioEncoder, Projector
from spoofrl.alm.sampling import choose_tokens
from spoofrl.alm.tokenizer import AUDIO, IM_END, IM_START, PAD, check_tokenizer
from spoofrl.errors import ConfigError
from spoofrl.models.base import frame_mask

LM_CLASSES = {"qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM")}


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


def build_lm(cfg: AlmConfig, config) -> nn.Module:
    import transformers

    model_cls = getattr(transformers, LM_CLASSES[cfg.lm_class][1])
    config._attn_implementation = cfg.attn_implementation
    return model_cls(config)


def _cache_keyword(lm: nn.Module) -> str:
    """transformers 5 names the KV cache argument `cache` (past_key_values is deprecated); 4.x needs the old name."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _returned_cache(out):
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


@dataclass
class Prefix:
    """The left-padded prompt + audio part of a batch, ready for the LM."""

    embeds: torch.Tensor     # [B, P, H]
    attn: torch.Tensor       # [B, P] long, 1 on real positions
    pos: torch.Tensor        # [B, P] long position ids (real positions counted from 0)
    audio_frames: torch.Tensor   # [B] audio positions per item

    def repeat(self, num: int) -> "Prefix":
        """Each row `num` times in a row (the order of completions [B, N] flattened)."""
        if num == 1:
            return self
        return Prefix(*(t.repeat_interleave(num, 0) for t in (self.embeds, self.attn, self.pos, self.audio_frames)))


class SmallAlm(nn.Module):
    def __init__(self, cfg: AlmConfig, tokenizer, *, transformers_config=None):
        super().__init__()
        ids = check_tokenizer(tokenizer)
        vocab = cfg.vocab_size or len(tokenizer)
        if vocab < len(tokenizer):
            raise ConfigError(f"alm.vocab_size {vocab} is smaller than the tokenizer ({len(tokenizer)} tokens)")
        self.cfg = dataclasses.replace(cfg, vocab_size=vocab)
        self.tokenizer = tokenizer
        self.ids = ids
        self.encoder = AudioEncoder(self.cfg)
        self.projector = Projector(self.cfg.projector, self.encoder.out_dim, self.cfg.lm_width)
        config = transformers_config if transformers_config is not None else lm_config(self.cfg, ids.pad, ids.eos)
        if config.vocab_size != vocab or config.hidden_size != self.cfg.lm_width:
            raise ConfigError("the LM's transformers config does not match the alm config (vocab_size, lm_width)")
        self.lm = build_lm(self.cfg, config)
        self._cache_kw = _cache_keyword(self.lm)
        bias = torch.zeros(vocab)
        bias[ids.suppressed()] = float("-inf")
        bias[len(tokenizer):] = float("-inf")   # rows of a vocabulary rounded up past the tokenizer
        self.register_buffer("logit_bias", bias, persistent=False)
        self._prompt_cache: dict[tuple[str, str | None], list[int]] = {}

    # --- basics ---------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (unless AlmConfig.autocast is 'off'); nothing on CPU."""
        dev = self.device
        if dev.type == "cuda" and self.cfg.autocast != "off" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def eos_token_id(self) -> int:
        return self.ids.eos

    @property
    def pad_token_id(self) -> int:
        return self.ids.pad

    # --- prompt and audio -----------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, system: str | None = None) -> list[int]:
        """Token ids of the chat-templated prompt with one `<audio>` placeholder, up to the assistant turn."""
        key = (prompt, system)
        if key not in self._prompt_cache:
            for text, what in ((prompt, "prompt"), (system or "", "system prompt")):
                bad = [t for t in (PAD, IM_START, IM_END) if t in text]
                if bad:
                    raise ConfigError(f"{what} {text[:60]!r} contains the reserved tokens {bad}")
            if AUDIO in (system or ""):
                raise ConfigError(f"the audio placeholder {AUDIO} belongs in the user prompt, not the system one")
            count = prompt.count(AUDIO)
            if count > 1:
                raise ConfigError(f"prompt {prompt[:60]!r} has {count} {AUDIO} placeholders; one audio per item")
            content = prompt if count else f"{AUDIO}\n{prompt}"
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": content}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if ids.count(self.ids.audio) != 1:
                raise ConfigError(f"the chat template of prompt {prompt[:60]!r} did not keep one {AUDIO} token")
            self._prompt_cache[key] = ids
        return self._prompt_cache[key]

    def encode_audio(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, S] + lengths [B] -> audio embeddings [B, F, lm_width] + frame counts [B]."""
        with self.autocast():
            feats, frames = self.encoder(waves, lengths)
            return self.projector(feats), frames

    def prefix(self, batch: AlmBatch) -> Prefix:
        """Audio + prompt of each item as LM input embeddings, left-padded to a common length."""
        dev = self.device
        audio, frames = self.encode_audio(batch.waves.to(dev, torch.float32), batch.lengths.to(dev))
        counts = [int(n) for n in frames.tolist()]
        rows = []
        for i, prompt in enumerate(batch.prompts):
            ids = self.prompt_ids(prompt, batch.system[i] if batch.system else None)
            at = ids.index(self.ids.audio)
            rows.append(ids[:at] + [self.ids.audio] * counts[i] + ids[at + 1:])
        width = max(len(r) for r in rows)
        if width > self.cfg.max_positions:
            raise ConfigError(f"a prompt with its audio takes {width} positions, more than alm.max_positions "
                              f"({self.cfg.max_positions}); use shorter audio or a larger max_positions")
        ids = torch.full((len(rows), width), self.ids.pad, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            attn[i, width - len(r):] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        embeds = self.lm.get_input_embeddings()(ids)
        valid = audio[frame_mask(frames, audio.shape[1])]                 # [sum F_i, H], item by item
        embeds = embeds.masked_scatter((ids == self.ids.audio)[..., None], valid.to(embeds.dtype))
        pos = (attn.cumsum(-1) - 1).clamp_min(0)
        return Prefix(embeds, attn, pos, frames)

    # --- generation ----------------------------------------------------------------------------------------
    def _step_logits(self, out) -> torch.Tensor:
        return out.logits[:, -1].float() + self.logit_bias

    @torch.no_grad()
    def generate(self, batch: AlmBatch, num: int = 1, sampling: SamplingConfig | None = None, *,
                 generator: torch.Generator | None = None) -> Completions:
        """`num` completions per item, decoded token by token with the KV cache (the prompt and audio are
        encoded once per item, their cache copied to the `num` rows), stopping as soon as every row has
        produced EOS or after `max_completion_length` tokens. Randomness: `generator`, else a generator seeded
        with `sampling.seed`, else torch's global one."""
        s = sampling or SamplingConfig()
        if num < 1:
            raise ConfigError(f"num must be >= 1, got {num}")
        dev = self.device
        if generator is None and s.seed is not None and s.do_sample:
            generator = torch.Generator(device=dev).manual_seed(s.seed)
        pre = self.prefix(batch)
        if pre.embeds.shape[1] + s.max_completion_length > self.cfg.max_positions:
            raise ConfigError(f"prompt + audio ({pre.embeds.shape[1]} positions) + max_completion_length "
                              f"({s.max_completion_length}) exceed alm.max_positions ({self.cfg.max_positions})")
        b, rows = len(batch), len(batch) * num
        with self.autocast():
            out = self.lm(inputs_embeds=pre.embeds, attention_mask=pre.attn, position_ids=pre.pos, use_cache=True,
                          logits_to_keep=1)
        cache = _returned_cache(out)
        if num > 1:
            cache.batch_repeat_interleave(num)
        logits = self._step_logits(out).repeat_interleave(num, 0)
        attn = pre.attn.repeat_interleave(num, 0)
        pos = pre.pos[:, -1:].repeat_interleave(num, 0)
        done = torch.zeros(rows, dtype=torch.bool, device=dev)
        tokens, logps = [], []
        for step in range(s.max_completion_length):
            logp_all = F.log_softmax(logits / s.temperature, dim=-1)
            nxt = choose_tokens(logits, s, generator).masked_fill(done, self.ids.pad)
            logps.append(logp_all.gather(-1, nxt[:, None]).squeeze(-1).masked_fill(done, 0.0))
            tokens.append(nxt)
            done = done | (nxt == self.ids.eos)
            if bool(done.all()) or step == s.max_completion_length - 1:
                break
            attn = torch.cat([attn, attn.new_ones(rows, 1)], dim=1)
            pos = pos + 1
            with self.autocast():
                out = self.lm(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, use_cache=True,
                              **{self._cache_kw: cache})
            cache = _returned_cache(out)
            logits = self._step_logits(out)
        ids = torch.stack(tokens, dim=1).view(b, num, -1)
        mask = completion_mask(ids, self.ids.eos)
        logprobs = torch.stack(logps, dim=1).view(b, num, -1)
        return Completions(ids, mask, self.decode(ids, mask), (~done).view(b, num), logprobs, s.temperature)

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[str]]:
        """[B, N, T] ids -> B lists of N texts (tokens past the mask dropped, special tokens removed)."""
        mask = completion_mask(ids, self.ids.eos) if mask is None else mask
        flat_ids, flat_mask = ids.reshape(-1, ids.shape[-1]).cpu(), mask.reshape(-1, ids.shape[-1]).cpu()
        texts = self.tokenizer.batch_decode([r[m].tolist() for r, m in zip(flat_ids, flat_mask)],
                                            skip_special_tokens=True)
        n = ids.shape[1]
        return [texts[i * n:(i + 1) * n] for i in range(ids.shape[0])]

    # --- scoring -------------------------------------------------------------------------------------------
    def completions_from_text(self, texts: Sequence[str] | Sequence[Sequence[str]]) -> Completions:
        """Completions [B, N, T] from given texts (B strings, or B lists of N), each tokenised and ended with
        EOS: SFT targets, or reference answers scored as members of a group."""
        groups = [[t] if isinstance(t, str) else list(t) for t in texts]
        if not groups or len({len(g) for g in groups}) != 1:
            raise ConfigError("completions_from_text needs B texts, or B lists of the same number of texts")
        special = (PAD, IM_START, IM_END, AUDIO)
        seqs = []
        for group in groups:
            for text in group:
                bad = [t for t in special if t in text]
                if bad:
                    raise ConfigError(f"target {text[:60]!r} contains the reserved tokens {bad}")
                seqs.append(list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.ids.eos])
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), self.ids.pad, dtype=torch.long)
        for i, q in enumerate(seqs):
            ids[i, :len(q)] = torch.tensor(q, dtype=torch.long)
        b, n = len(groups), len(groups[0])
        ids = ids.view(b, n, width)
        mask = completion_mask(ids, self.ids.eos)
        return Completions(ids, mask, [list(g) for g in groups], torch.zeros(b, n, dtype=torch.bool))

    def token_logprobs(self, batch: AlmBatch, completions: Completions, *, grad: bool,
                       temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability [B, N, T] (float32, 0 where mask is False) of each completion token given the
        item's audio and prompt, under softmax(logits / temperature), and the mask [B, N, T].

        One teacher-forced forward over all B * N sequences: the audio encoder runs in it (once per item;
        gradients reach it when grad=True), its embeddings are inserted exactly as in generate(), and only
        the completion positions go through the output layer."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        dev = self.device
        ids, mask = completions.ids.to(dev), completions.mask.to(dev, torch.bool)
        b, n, t = ids.shape
        if b != len(batch):
            raise ConfigError(f"{b} groups of completions for a batch of {len(batch)}")
        flat, flat_mask = ids.reshape(b * n, t), mask.reshape(b * n, t)
        safe = flat.masked_fill(~flat_mask, self.ids.eos)   # positions past the end: any valid token
        with torch.set_grad_enabled(grad):
            pre = self.prefix(batch).repeat(n)
            width = pre.embeds.shape[1]
            embeds = torch.cat([pre.embeds, self.lm.get_input_embeddings()(safe).to(pre.embeds.dtype)], dim=1)
            attn = torch.cat([pre.attn, pre.attn.new_ones(b * n, t)], dim=1)
            pos = torch.cat([pre.pos, pre.pos[:, -1:] + 1 + torch.arange(t, device=dev)[None]], dim=1)
            with self.autocast():
                hidden = self.lm.model(inputs_embeds=embeds, attention_mask=attn, position_ids=pos,
                                       use_cache=False).last_hidden_state
                logits = self.lm.lm_head(hidden[:, width - 1:width + t - 1])
            logits = (logits.float() + self.logit_bias) / temperature
            logp = F.log_softmax(logits, dim=-1).gather(-1, safe[..., None]).squeeze(-1)
            logp = logp.masked_fill(~flat_mask, 0.0)
        return logp.view(b, n, t), mask

    def sft_loss(self, batch: AlmBatch, targets_text: Sequence[str] | None = None, *,
                 reduction: Literal["token", "sequence"] = "token") -> torch.Tensor:
        """Teacher-forced cross-entropy of the target completions (each followed by EOS) given audio and prompt;
        prompt, audio and padding positions carry no loss. `targets_text` defaults to batch.references.
        reduction 'token': mean over all target tokens of the batch (transformers' labels loss); 'sequence':
        mean over each target's tokens, then over the batch."""
        targets = targets_text if targets_text is not None else batch.references
        if targets is None or len(targets) != len(batch):
            raise ConfigError("sft_loss needs one target text per item (targets_text or batch.references)")
        logp, mask = self.token_logprobs(batch, self.completions_from_text(list(targets)), grad=True)
        if reduction == "sequence":
            return -(logp.sum(-1) / mask.sum(-1).clamp_min(1)).mean()
        return -logp.sum() / mask.sum().clamp_min(1)


def build_alm(cfg: AlmConfig, tokenizer, *, seed: int = 0, device: torch.device | str = "cpu") -> SmallAlm:
    """A randomly initialised SmallAlm (initialisation seeded by `seed`, without touching torch's global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallAlm(cfg, tokenizer)
    return model.to(device)
