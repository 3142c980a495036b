"""`HfAlm`: a Hugging Face audio LLM (audio encoder + projector + decoder LM, loaded with from_pretrained) behind
the `AudioLM` interface of spoofrl.alm, with optional LoRA adapters (peft) on its language model.

Every backend (alm.hf.qwen, alm.hf.granite) supplies only what differs between model families: the audio
front-end and encoder call (`encode_audio`: packed audio embeddings, item by item, and their counts) and the
audio placeholder of its chat template. The rest is shared and mirrors the built-in SmallAlm:

- the prompt: the item's user turn, `<audio>` replaced by the model's audio markup (tried first as a
  structured audio part of the message, as the models' processors render it, then as text), rendered by
  the model's own chat template up to the assistant turn; the placeholder token is repeated once per audio
  embedding, exactly the number the model's own code scatters into it;
- the input: prompt token embeddings with the audio embeddings scattered into the placeholder positions (as
  each model's forward does), left-padded, position ids counting real tokens only;
- generation with the KV cache, the prompt encoded once per item and its cache copied to the `num` rows;
  scoring as ONE teacher-forced forward over the B x N sequences with the audio features inside it (TRL's
  GRPOTrainer scores the placeholder embeddings without the audio); only completion positions go through
  the output layer, which is the model's own lm_head on the LM's hidden states;
- the audio placeholder tokens (and rows of the output layer past the tokenizer) can never be generated:
  their logits are -inf in generation and scoring alike.

Reference policy: `reference()` is a context manager under which the same weights compute with the adapters
switched off (peft's disable_adapter), and `reference_view()` an AudioLM that always does, so GRPO needs no
second copy of the model. `save(folder, merge=True)` writes a plain transformers folder with the adapters
folded in; merge=False writes peft's adapter format, which `load_hf_alm` reads back onto its base model.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from spoofrl.alm.batch import AlmBatch, Completions, completion_mask
from spoofrl.alm.config import SamplingConfig
from spoofrl.alm.hf.lora import LoraOptions, apply_lora, merged_state_dict, options_from_peft
from spoofrl.alm.sampling import choose_tokens
from spoofrl.alm.tokenizer import AUDIO
from spoofrl.errors import ConfigError

# processor files copied next to a saved model (the tokenizer writes its own)
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "chat_template.json",
                   "chat_template.jinja")


@dataclass
class Prefix:
    """The left-padded prompt + audio part of a batch, as LM input embeddings."""

    embeds: torch.Tensor     # [B, P, H]
    attn: torch.Tensor       # [B, P] long, 1 on real positions
    pos: torch.Tensor        # [B, P] long, real positions counted from 0

    def repeat(self, num: int) -> Prefix:
        """Each row `num` times in a row (completions [B, N] flattened item-major)."""
        if num == 1:
            return self
        return Prefix(*(t.repeat_interleave(num, 0) for t in (self.embeds, self.attn, self.pos)))


class HfAlm(nn.Module):
    """Shared implementation; subclasses set the class attributes and implement `setup_audio`,
    `audio_inputs`, `audio_token_counts` and `encode_audio`."""

    kind: ClassVar[str] = ""
    model_class: ClassVar[str] = ""                 # the transformers class loaded from the folder
    lm_path: ClassVar[str] = "model.language_model"  # module path of the decoder LM inside that class
    audio_paths: ClassVar[tuple[str, ...]] = ()     # audio encoder + projector module paths
    turn_end: ClassVar[str | None] = None           # the EOS token (end of the assistant turn); None: eos_token

    # set by setup_audio
    audio_token: str
    audio_token_id: int
    audio_markup: str                               # text that stands for one clip in a rendered prompt

    def __init__(self, model: nn.Module, tokenizer, *, folder: str | Path, chat_template: str | None = None,
                 feature_config: dict | None = None, lora: LoraOptions | None = None):
        super().__init__()
        mode = model.training
        self.model = model
        self.tokenizer = tokenizer
        self.folder = Path(folder)          # where the base weights and processor files came from
        self.feature_config = dict(feature_config or {})
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise ConfigError(f"{folder}: no chat template (tokenizer_config.json, chat_template.jinja or "
                              f"chat_template.json)")
        self.lora: LoraOptions | None = None
        self._peft = False
        self.setup_audio()
        self.eos_token_id = self._eos_id()
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(self.eos_token_id if pad is None else pad)
        self.register_buffer("logit_bias", self._logit_bias(), persistent=False)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        self._prompt_cache: dict[tuple[str, str | None], list[int]] = {}
        if lora is not None:
            self.model = apply_lora(self.model, lora, lm_path=self.lm_path, audio_paths=list(self.audio_paths))
            self.lora, self._peft = lora, True
        self.train(mode)

    # --- backend hooks --------------------------------------------------------------------------------------
    def setup_audio(self) -> None:
        """Read the audio settings (placeholder token, front-end options) from the configs."""
        raise NotImplementedError

    def audio_inputs(self, waves: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """The audio arguments of the transformers model's own forward for these clips (what its processor
        returns), e.g. for checks against that forward."""
        raise NotImplementedError

    def audio_token_counts(self, lengths: torch.Tensor) -> list[int]:
        """LM positions of each clip, as the model's processor expands its placeholder."""
        raise NotImplementedError

    def encode_audio(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """waves [B, S] + lengths [B] -> (audio embeddings [sum F_i, H] item-major, F_i per item); each item's
        embeddings depend on its own samples only."""
        raise NotImplementedError

    def suppressed_tokens(self) -> list[int]:
        """Token ids a completion never contains (the audio markup)."""
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in self.reserved_tokens()]
        return [i for i in ids if isinstance(i, int) and i >= 0 and i != self.tokenizer.unk_token_id]

    def reserved_tokens(self) -> list[str]:
        """Token strings that may not appear in prompts or targets (the audio markup)."""
        return [self.audio_token]

    # --- modules --------------------------------------------------------------------------------------------
    @property
    def core(self) -> nn.Module:
        """The transformers model (inside peft's wrapper when adapters are on; the adapters are in its layers)."""
        return self.model.get_base_model() if self._peft else self.model

    @property
    def lm(self) -> nn.Module:
        return self.core.get_submodule(self.lm_path)

    @property
    def lm_head(self) -> nn.Module:
        return self.core.lm_head

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    def audio_dtype(self) -> torch.dtype:
        return next(self.core.get_submodule(self.audio_paths[0]).parameters()).dtype

    @property
    def max_positions(self) -> int:
        return int(getattr(self.core.config.get_text_config(), "max_position_embeddings", 1 << 30))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that train (the adapters, plus the audio modules when they are not frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> HfAlm:
        """Train/eval mode of every module, except that the audio encoder's batch norms always use their
        running statistics (each clip is encoded alone, so batch statistics would be one clip's) and a frozen
        audio encoder always runs as at inference."""
        super().train(mode)
        for module in self._always_eval():
            module.eval()
        return self

    def _always_eval(self) -> Iterator[nn.Module]:
        frozen = self.lora is not None and self.lora.freeze_audio_encoder
        for path in self.audio_paths:
            audio = self.core.get_submodule(path)
            if frozen:
                yield audio
            yield from (m for m in audio.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))

    def _eos_id(self) -> int:
        token = self.turn_end or self.tokenizer.eos_token
        eos = self.tokenizer.convert_tokens_to_ids(token) if token else None
        if eos is None or eos == self.tokenizer.unk_token_id:
            raise ConfigError(f"{self.folder}: the tokenizer has no end-of-turn token {token!r}")
        return int(eos)

    def _logit_bias(self) -> torch.Tensor:
        vocab = self.lm_head.out_features
        bias = torch.zeros(vocab)
        bias[[i for i in self.suppressed_tokens() if i < vocab]] = float("-inf")
        bias[len(self.tokenizer):] = float("-inf")   # output rows past the tokenizer (a rounded-up vocabulary)
        return bias

    # --- adapters -------------------------------------------------------------------------------------------
    def attach_adapters(self, folder: str | Path) -> None:
        """Load peft adapters saved by `save(merge=False)` onto this (plain) model, trainable."""
        from peft import PeftModel

        if self._peft:
            raise ConfigError(f"{folder}: the model already has adapters")
        self.model = PeftModel.from_pretrained(self.model, str(folder), is_trainable=True)
        self.lora, self._peft = options_from_peft(self.model.peft_config[self.model.active_adapter]), True
        self.train(self.training)

    @contextlib.contextmanager
    def reference(self) -> Iterator[HfAlm]:
        """Compute with the adapters (and trained copies of the audio modules) switched off: the base model,
        i.e. the GRPO reference policy, from the same weights in memory."""
        if not self._peft:
            raise ConfigError("reference() needs LoRA adapters (load_hf_alm(..., lora=LoraOptions())): without "
                              "them the reference is a separate frozen copy of the model")
        with self.model.disable_adapter():
            yield self

    def reference_view(self) -> ReferenceAlm:
        """This model with its adapters off, as an AudioLM (e.g. AlmPolicy(model.reference_view(), grad=False))."""
        if not self._peft:
            raise ConfigError("reference_view() needs LoRA adapters")
        return ReferenceAlm(self)

    def save(self, folder: str | Path, *, merge: bool = True) -> Path:
        """merge=True: a plain transformers folder (adapters folded into the weights, the tokenizer and the
        processor files copied) that `load_hf_alm` loads as a model without adapters (in bf16 the folded
        weights are rounded to bf16). merge=False, with adapters: peft's adapter folder (adapter_config.json +
        adapter_model.safetensors) naming the base folder by its absolute path; without adapters merge has no
        effect."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._peft and not merge:
            self.model.save_pretrained(str(folder))
            _point_adapters_at(folder, self.folder.resolve())
            return folder
        state = merged_state_dict(self.model) if self._peft else None
        self.core.save_pretrained(str(folder), state_dict=state)
        self.tokenizer.save_pretrained(str(folder))
        for name in PROCESSOR_FILES:
            source, target = self.folder / name, folder / name
            if source.is_file() and not target.exists():
                shutil.copyfile(source, target)
        return folder

    # --- prompt and audio -----------------------------------------------------------------------------------
    def _check_text(self, text: str, what: str) -> None:
        bad = [t for t in (*self.reserved_tokens(), self.tokenizer.convert_ids_to_tokens(self.eos_token_id))
               if t and t in text]
        if bad:
            raise ConfigError(f"{what} {text[:60]!r} contains the reserved tokens {bad}")

    def render_prompt(self, prompt: str, system: str | None = None) -> str:
        """The chat-templated text of one item up to the assistant turn, with one audio placeholder."""
        self._check_text(prompt, "prompt")
        self._check_text(system or "", "system prompt")
        if AUDIO in (system or ""):
            raise ConfigError(f"the audio placeholder {AUDIO} belongs in the user prompt, not the system one")
        count = prompt.count(AUDIO)
        if count > 1:
            raise ConfigError(f"prompt {prompt[:60]!r} has {count} {AUDIO} placeholders; one audio per item")
        before, _, after = prompt.partition(AUDIO) if count else ("", "", prompt)
        parts = ([{"type": "text", "text": before}] if before else []) + [{"type": "audio"}] + \
            ([{"type": "text", "text": after}] if after else [])
        text = f"{before}{self.audio_markup}{after}" if count else f"{self.audio_markup}\n{prompt}"
        head = [{"role": "system", "content": system}] if system else []
        for content in (parts, text):      # the processors' structured form first, then plain text
            rendered = self._apply_template(head + [{"role": "user", "content": content}])
            if rendered is not None and rendered.count(self.audio_token) == 1:
                return rendered
        raise ConfigError(f"{self.folder}: the chat template did not render one {self.audio_token} for prompt "
                          f"{prompt[:60]!r}")

    def _apply_template(self, messages: list[dict]) -> str | None:
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                      add_generation_prompt=True)
        except (TemplateError, TypeError, KeyError, AttributeError, ValueError):
            return None   # e.g. a template for string contents meeting the structured form

    def prompt_ids(self, prompt: str, system: str | None = None) -> list[int]:
        """Token ids of the rendered prompt with one audio placeholder token."""
        key = (prompt, system)
        if key not in self._prompt_cache:
            ids = list(self.tokenizer(self.render_prompt(prompt, system), add_special_tokens=False)["input_ids"])
            if ids.count(self.audio_token_id) != 1:
                raise ConfigError(f"{self.folder}: the tokenizer did not keep {self.audio_token} as one token "
                                  f"(id {self.audio_token_id}) in prompt {prompt[:60]!r}")
            self._prompt_cache[key] = ids
        return self._prompt_cache[key]

    def prompt_rows(self, batch: AlmBatch, counts: Sequence[int]) -> list[list[int]]:
        """Each item's prompt ids with the placeholder repeated counts[i] times (the model's input ids)."""
        rows = []
        for i, prompt in enumerate(batch.prompts):
            ids = self.prompt_ids(prompt, batch.system[i] if batch.system else None)
            at = ids.index(self.audio_token_id)
            rows.append(ids[:at] + [self.audio_token_id] * int(counts[i]) + ids[at + 1:])
        return rows

    def prefix(self, batch: AlmBatch) -> Prefix:
        """Audio + prompt of each item as LM input embeddings, left-padded to a common length."""
        dev = self.device
        audio, counts = self.encode_audio(batch.waves.to(dev), batch.lengths.to(dev))
        rows = self.prompt_rows(batch, counts)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        is_audio = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, row in enumerate(rows):
            start = width - len(row)
            ids[i, start:] = torch.tensor(row, dtype=torch.long)
            attn[i, start:] = 1
            is_audio[i, start:] = ids[i, start:] == self.audio_token_id
        ids, attn, is_audio = ids.to(dev), attn.to(dev), is_audio.to(dev)
        # the placeholder id is embedded as pad (some vocabularies have no row for it), then overwritten
        embeds = self.lm.get_input_embeddings()(ids.masked_fill(is_audio, self.pad_token_id))
        embeds = embeds.masked_scatter(is_audio[..., None], audio.to(embeds.dtype))
        return Prefix(embeds, attn, (attn.cumsum(-1) - 1).clamp_min(0))

    # --- generation -----------------------------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float() + self.logit_bias

    @torch.no_grad()
    def generate(self, batch: AlmBatch, num: int = 1, sampling: SamplingConfig | None = None, *,
                 generator: torch.Generator | None = None) -> Completions:
        """`num` completions per item with the KV cache, stopping once every row has produced EOS or after
        `max_completion_length` tokens (see spoofrl.alm.base.AudioLM)."""
        s = sampling or SamplingConfig()
        if num < 1:
            raise ConfigError(f"num must be >= 1, got {num}")
        dev = self.device
        if generator is None and s.seed is not None and s.do_sample:
            generator = torch.Generator(device=dev).manual_seed(s.seed)
        pre = self.prefix(batch)
        self._check_length(pre.embeds.shape[1] + s.max_completion_length)
        b, rows = len(batch), len(batch) * num
        out = self.lm(inputs_embeds=pre.embeds, attention_mask=pre.attn, position_ids=pre.pos, use_cache=True)
        cache = _returned_cache(out)
        if num > 1:
            cache.batch_repeat_interleave(num)
        logits = self._logits(out.last_hidden_state[:, -1]).repeat_interleave(num, 0)
        attn = pre.attn.repeat_interleave(num, 0)
        pos = pre.pos[:, -1:].repeat_interleave(num, 0)
        done = torch.zeros(rows, dtype=torch.bool, device=dev)
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
            out = self.lm(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, use_cache=True,
                          **{self._cache_kw: cache})
            cache = _returned_cache(out)
            logits = self._logits(out.last_hidden_state[:, -1])
        ids = torch.stack(tokens, dim=1).view(b, num, -1)
        mask = completion_mask(ids, self.eos_token_id)
        logprobs = torch.stack(logps, dim=1).view(b, num, -1)
        return Completions(ids, mask, self.decode(ids, mask), (~done).view(b, num), logprobs, s.temperature)

    def _check_length(self, positions: int) -> None:
        if positions > self.max_positions:
            raise ConfigError(f"prompt + audio + completion take {positions} positions, more than the model's "
                              f"max_position_embeddings ({self.max_positions})")

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
        """Completions [B, N, T] of given texts (B strings, or B lists of N), each tokenised and ended by EOS."""
        groups = [[t] if isinstance(t, str) else list(t) for t in texts]
        if not groups or len({len(g) for g in groups}) != 1:
            raise ConfigError("completions_from_text needs B texts, or B lists of the same number of texts")
        seqs = []
        for group in groups:
            for text in group:
                self._check_text(text, "target")
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
        """(log-prob [B, N, T] float32 of each completion token under softmax(logits / temperature), 0 where
        masked; mask [B, N, T]) from one teacher-forced forward with the audio encoder inside it."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        dev = self.device
        ids, mask = completions.ids.to(dev), completions.mask.to(dev, torch.bool)
        b, n, t = ids.shape
        if b != len(batch):
            raise ConfigError(f"{b} groups of completions for a batch of {len(batch)}")
        flat, flat_mask = ids.reshape(b * n, t), mask.reshape(b * n, t)
        safe = flat.masked_fill(~flat_mask, self.eos_token_id)   # past the end: any valid token
        with torch.set_grad_enabled(grad):
            pre = self.prefix(batch).repeat(n)
            width = pre.embeds.shape[1]
            self._check_length(width + t)
            embeds = torch.cat([pre.embeds, self.lm.get_input_embeddings()(safe).to(pre.embeds.dtype)], dim=1)
            attn = torch.cat([pre.attn, pre.attn.new_ones(b * n, t)], dim=1)
            pos = torch.cat([pre.pos, pre.pos[:, -1:] + 1 + torch.arange(t, device=dev)[None]], dim=1)
            hidden = self.lm(inputs_embeds=embeds, attention_mask=attn, position_ids=pos,
                             use_cache=False).last_hidden_state
            logits = self._logits(hidden[:, width - 1:width + t - 1]) / temperature
            logp = F.log_softmax(logits, dim=-1).gather(-1, safe[..., None]).squeeze(-1)
            logp = logp.masked_fill(~flat_mask, 0.0)
        return logp.view(b, n, t), mask

    def sft_loss(self, batch: AlmBatch, targets_text: Sequence[str] | None = None, *,
                 reduction: Literal["token", "sequence"] = "token") -> torch.Tensor:
        """Teacher-forced cross-entropy of the targets (each + EOS; default batch.references); prompt, audio and
        padding carry no loss. 'token': mean over all target tokens; 'sequence': per target, then over B."""
        targets = targets_text if targets_text is not None else batch.references
        if targets is None or len(targets) != len(batch):
            raise ConfigError("sft_loss needs one target text per item (targets_text or batch.references)")
        logp, mask = self.token_logprobs(batch, self.completions_from_text(list(targets)), grad=True)
        if reduction == "sequence":
            return -(logp.sum(-1) / mask.sum(-1).clamp_min(1)).mean()
        return -logp.sum() / mask.sum().clamp_min(1)


class ReferenceAlm:
    """An HfAlm with its adapters switched off for every call: the GRPO reference policy without a copy."""

    def __init__(self, model: HfAlm):
        self.base = model

    @property
    def eos_token_id(self) -> int:
        return self.base.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.base.pad_token_id

    @property
    def device(self) -> torch.device:
        return self.base.device

    def generate(self, batch, num=1, sampling=None, *, generator=None) -> Completions:
        with self.base.reference():
            return self.base.generate(batch, num, sampling, generator=generator)

    def token_logprobs(self, batch, completions, *, grad, temperature=1.0):
        with self.base.reference():
            return self.base.token_logprobs(batch, completions, grad=grad, temperature=temperature)

    def sft_loss(self, batch, targets_text=None, *, reduction="token"):
        with self.base.reference():
            return self.base.sft_loss(batch, targets_text, reduction=reduction)

    def completions_from_text(self, texts) -> Completions:
        return self.base.completions_from_text(texts)

    def decode(self, ids, mask=None) -> list[list[str]]:
        return self.base.decode(ids, mask)


def _returned_cache(out):
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def _point_adapters_at(folder: Path, base: Path) -> None:
    """Make the saved adapter config name the base folder by its absolute path (loading never downloads)."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(base)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
