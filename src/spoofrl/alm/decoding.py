"""Decoding and scoring shared by every prefix-embedding audio LLM (SmallAlm, the Hugging Face backends).

A backend turns a batch into a `Prefix` (prompt + audio as left-padded LM input embeddings) and names its
decoder LM and output layer; `PrefixLM` does the rest of the `AudioLM` interface the same way for all:

- `generate`: the prefix encoded once per item, its KV cache copied to the `num` rows, then token by token
  (spoofrl.alm.sampling.choose_tokens) until every row has produced EOS or `max_completion_length` tokens;
  the sampling-time log-probabilities are those of softmax(logits / temperature);
- `token_logprobs`: ONE teacher-forced forward over the B x N sequences with the audio inside the prefix;
  only the completion positions go through the output layer;
- `sft_loss`, `completions_from_text`, `decode`.

Logits are always float32 output-layer logits plus the backend's `logit_bias` (-inf on tokens that can never
be generated), in generation and scoring alike, so the two define the same distribution.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from spoofrl.alm.batch import AlmBatch, Completions, completion_mask
from spoofrl.alm.config import SamplingConfig
from spoofrl.alm.sampling import choose_tokens
from spoofrl.errors import ConfigError


def cache_keyword(lm: nn.Module) -> str:
    """transformers 5 names the KV cache argument `cache` (past_key_values is deprecated); 4.x needs the old name."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def returned_cache(out):
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def check_reserved(text: str, tokens: Iterable[str | None], what: str) -> None:
    bad = [t for t in tokens if t and t in text]
    if bad:
        raise ConfigError(f"{what} {text[:60]!r} contains the reserved tokens {bad}")


def left_padded(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> (ids [B, P] left-padded with `pad`, attention mask [B, P] long), on `device`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        attn[i, width - len(row):] = 1
    return ids.to(device), attn.to(device)


def positions(attn: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (left padding gets 0)."""
    return (attn.cumsum(-1) - 1).clamp_min(0)


@dataclass
class Prefix:
    """The left-padded prompt + audio part of a batch, as LM input embeddings."""

    embeds: torch.Tensor     # [B, P, H]
    attn: torch.Tensor       # [B, P] long, 1 on real positions
    pos: torch.Tensor        # [B, P] long position ids (real positions counted from 0)
    audio_frames: torch.Tensor | None = None   # [B] audio positions per item (SmallAlm; None for alm.hf)

    def repeat(self, num: int) -> Prefix:
        """Each row `num` times in a row (completions [B, N] flattened item-major)."""
        if num == 1:
            return self
        parts = (self.embeds, self.attn, self.pos, self.audio_frames)
        return Prefix(*(None if t is None else t.repeat_interleave(num, 0) for t in parts))


class PrefixLM:
    """The AudioLM methods of a model whose input is a Prefix followed by completion tokens.

    Mixed into an nn.Module; the subclass supplies `prefix`, `decoder` (the transformers base model: input
    embeddings, layers, KV cache; returns last_hidden_state), `lm_head`, `check_target`, `check_positions`,
    `prompt_ids`, the `logit_bias` buffer [V], `eos_token_id`, `pad_token_id`, `audio_token_id`, `tokenizer`,
    and optionally `autocast`."""

    tokenizer: Any
    logit_bias: torch.Tensor
    eos_token_id: int
    pad_token_id: int
    audio_token_id: int

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- hooks ----------------------------------------------------------------------------------------------
    def prefix(self, batch: AlmBatch) -> Prefix:
        """Audio + prompt of each item as LM input embeddings, left-padded to a common length."""
        raise NotImplementedError

    @property
    def decoder(self) -> nn.Module:
        raise NotImplementedError

    @property
    def lm_head(self) -> nn.Module:
        raise NotImplementedError

    def prompt_ids(self, prompt: str, system: str | None = None) -> list[int]:
        """Token ids of the rendered prompt with one audio placeholder token (audio_token_id)."""
        raise NotImplementedError

    def check_target(self, text: str) -> None:
        """Raise ConfigError when a target text contains tokens a completion cannot."""
        raise NotImplementedError

    def check_positions(self, prefix: int, completion: int, *, generating: bool) -> None:
        """Raise ConfigError when `prefix` positions followed by `completion` tokens do not fit the model."""
        raise NotImplementedError

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the LM forwards run in (none by default: the weights' own dtype)."""
        return contextlib.nullcontext()

    # --- shared helpers -------------------------------------------------------------------------------------
    def prompt_rows(self, batch: AlmBatch, counts: Sequence[int]) -> list[list[int]]:
        """Each item's prompt ids with the placeholder repeated counts[i] times (the model's input ids)."""
        rows = []
        for i, prompt in enumerate(batch.prompts):
            ids = self.prompt_ids(prompt, batch.system[i] if batch.system else None)
            at = ids.index(self.audio_token_id)
            rows.append(ids[:at] + [self.audio_token_id] * int(counts[i]) + ids[at + 1:])
        return rows

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # float32 and biased in generation and scoring alike: both define the same distribution
        return self.lm_head(hidden).float() + self.logit_bias

    def _cached_forward(self, **inputs) -> tuple[torch.Tensor, Any]:
        """One decoder forward with the KV cache -> (logits of the last position [rows, V], the cache)."""
        with self.autocast():      # the output layer too, as a transformers CausalLM forward runs it
            out = self.decoder(use_cache=True, **inputs)
            logits = self._logits(out.last_hidden_state[:, -1])
        return logits, returned_cache(out)

    # --- generation -----------------------------------------------------------------------------------------
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
        if generator is None and s.seed is not None and s.do_sample:
            generator = torch.Generator(device=self.device).manual_seed(s.seed)
        pre = self.prefix(batch)
        self.check_positions(pre.embeds.shape[1], s.max_completion_length, generating=True)
        logits, cache = self._cached_forward(inputs_embeds=pre.embeds, attention_mask=pre.attn,
                                             position_ids=pre.pos)
        if num > 1:
            cache.batch_repeat_interleave(num)
        rows = (logits, pre.attn, pre.pos[:, -1:])      # item-major, like the cache
        tokens, logps, done = self._sample(*(x.repeat_interleave(num, 0) for x in rows), cache, s, generator)
        b = len(batch)
        ids = torch.stack(tokens, dim=1).view(b, num, -1)
        mask = completion_mask(ids, self.eos_token_id)
        logprobs = torch.stack(logps, dim=1).view(b, num, -1)
        return Completions(ids, mask, self.decode(ids, mask), (~done).view(b, num), logprobs, s.temperature)

    def _sample(self, logits: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, cache, s: SamplingConfig,
                generator: torch.Generator | None) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """The token loop from the prefix's next-token logits [rows, V], attention mask and last position:
        (tokens, their logprobs, done [rows]); rows that are done get pad and logprob 0."""
        rows = logits.shape[0]
        keyword = cache_keyword(self.decoder)
        done = torch.zeros(rows, dtype=torch.bool, device=logits.device)
        tokens, logps = [], []
        for step in range(s.max_completion_length):
            logp_all = F.log_softmax(logits / s.temperature, dim=-1)
            nxt = choose_tokens(logits, s, generator).masked_fill(done, self.pad_token_id)
            logps.append(logp_all.gather(-1, nxt[:, None]).squeeze(-1).masked_fill(done, 0.0))
            tokens.append(nxt)
            done = done | (nxt == self.eos_token_id)
            if bool(done.all()) or step == s.max_completion_length - 1:
                break
            attn = torch.cat([attn, attn.new_ones(rows, 1)], dim=1)
            pos = pos + 1
            logits, cache = self._cached_forward(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos,
                                                 **{keyword: cache})
        return tokens, logps, done

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[str]]:
        """[B, N, T] ids -> B lists of N texts (tokens past the mask dropped, special tokens removed)."""
        mask = completion_mask(ids, self.eos_token_id) if mask is None else mask
        flat_ids, flat_mask = ids.reshape(-1, ids.shape[-1]).cpu(), mask.reshape(-1, ids.shape[-1]).cpu()
        texts = self.tokenizer.batch_decode([r[m].tolist() for r, m in zip(flat_ids, flat_mask)],
                                            skip_special_tokens=True)
        n = ids.shape[1]
        return [texts[i * n:(i + 1) * n] for i in range(ids.shape[0])]

    # --- scoring --------------------------------------------------------------------------------------------
    def completions_from_text(self, texts: Sequence[str] | Sequence[Sequence[str]]) -> Completions:
        """Completions [B, N, T] from given texts (B strings, or B lists of N), each tokenised and ended with
        EOS: SFT targets, or reference answers scored as members of a group."""
        groups = [[t] if isinstance(t, str) else list(t) for t in texts]
        if not groups or len({len(g) for g in groups}) != 1:
            raise ConfigError("completions_from_text needs B texts, or B lists of the same number of texts")
        seqs = []
        for group in groups:
            for text in group:
                self.check_target(text)
                seqs.append(list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.eos_token_id])
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        for i, q in enumerate(seqs):
            ids[i, :len(q)] = torch.tensor(q, dtype=torch.long)
        b, n = len(groups), len(groups[0])
        ids = ids.view(b, n, width)
        return Completions(ids, completion_mask(ids, self.eos_token_id), [list(g) for g in groups],
                           torch.zeros(b, n, dtype=torch.bool))

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
        safe = flat.masked_fill(~flat_mask, self.eos_token_id)   # positions past the end: any valid token
        with torch.set_grad_enabled(grad):
            pre = self.prefix(batch).repeat(n)
            width = pre.embeds.shape[1]
            self.check_positions(width, t, generating=False)
            inputs = self._teacher_forced(pre, safe)
            with self.autocast():
                hidden = self.decoder(**inputs, use_cache=False).last_hidden_state
                logits = self._logits(hidden[:, width - 1:width + t - 1])
            logp = F.log_softmax(logits / temperature, dim=-1).gather(-1, safe[..., None]).view(b, n, t)
            # the last op is not a view: FSDP hooks the backward onto the returned tensor
            logp = logp.masked_fill(~mask, 0.0)
        return logp, mask

    def _teacher_forced(self, pre: Prefix, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder inputs of the prefix followed by `tokens` [rows, T]."""
        rows, t = tokens.shape
        embeds = torch.cat([pre.embeds, self.decoder.get_input_embeddings()(tokens).to(pre.embeds.dtype)], dim=1)
        attn = torch.cat([pre.attn, pre.attn.new_ones(rows, t)], dim=1)
        pos = torch.cat([pre.pos, pre.pos[:, -1:] + 1 + torch.arange(t, device=tokens.device)[None]], dim=1)
        return {"inputs_embeds": embeds, "attention_mask": attn, "position_ids": pos}

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
