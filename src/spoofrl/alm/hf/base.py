"""`HfAlm`: a Hugging Face audio LLM (audio encoder + projector + decoder LM, loaded with from_pretrained) behind
the `AudioLM` interface of spoofrl.alm, with optional LoRA adapters (peft) on its language model.

Every backend (alm.hf.qwen, alm.hf.granite) supplies only what differs between model families: the audio
front-end and encoder call (`encode_audio`: packed audio embeddings, item by item, and their counts) and the
audio placeholder of its chat template. The rest is shared, generation and scoring with the built-in SmallAlm
too (spoofrl.alm.decoding.PrefixLM, whose hooks this class implements):

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
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from spoofrl.alm.batch import AlmBatch, Completions
from spoofrl.alm.decoding import Prefix, PrefixLM, check_reserved, left_padded, positions
from spoofrl.alm.hf.lora import LoraOptions, apply_lora, check_adapter_folder, merged_state_dict, options_from_peft
from spoofrl.alm.template import ChatTemplate, TemplateRenderError, template_variables
from spoofrl.alm.tokenizer import AUDIO
from spoofrl.errors import ConfigError
from spoofrl.models.io import weights_mismatch

# processor files copied next to a saved model (the tokenizer writes its own)
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "chat_template.json",
                   "chat_template.jinja")
# what the feature extractor's integer settings may be (beyond them a folder's preprocessor config is refused)
FEATURE_BOUNDS = {"sampling_rate": (1000, 384000), "n_fft": (16, 65536), "win_length": (1, 65536),
                  "hop_length": (1, 65536), "n_mels": (1, 1024), "feature_size": (1, 1024), "chunk_length": (1, 3600)}


class HfAlm(PrefixLM, nn.Module):
    """Shared implementation; subclasses set the class attributes, extend `setup_audio` and implement
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
                 feature_config: dict | None = None, lora: LoraOptions | None = None,
                 chat_template_file: str | Path | None = None, feature_file: str | Path | None = None):
        """`chat_template_file` and `feature_file`: the files the chat template and the feature settings came
        from, named in their errors."""
        super().__init__()
        mode = model.training
        self.model = model
        self.tokenizer = tokenizer
        self.folder = Path(folder)          # where the base weights and processor files came from
        self.feature_config = dict(feature_config or {})
        self.feature_file = Path(feature_file) if feature_file else self.folder / "preprocessor_config.json"
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise ConfigError(f"{folder}: no chat template (tokenizer_config.json, chat_template.jinja or "
                              f"chat_template.json)")
        self.template = ChatTemplate(self.chat_template, chat_template_file or self.folder / "chat_template.jinja")
        self.lora: LoraOptions | None = None
        self._peft = False
        self.setup_audio()
        self.eos_token_id = self._eos_id()
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(self.eos_token_id if pad is None else pad)
        self.register_buffer("logit_bias", self._logit_bias(), persistent=False)
        self._prompt_cache: dict[tuple[str, str | None], list[int]] = {}
        if lora is not None:
            self.model = apply_lora(self.model, lora, lm_path=self.lm_path, audio_paths=list(self.audio_paths))
            self.lora, self._peft = lora, True
        self.train(mode)

    # --- backend hooks --------------------------------------------------------------------------------------
    def setup_audio(self) -> None:
        """Read the audio settings from the configs: here the placeholder token (the model config's
        audio_token_id), standing alone for a clip; backends extend it with their front-end options."""
        self.audio_token_id = int(self.core.config.audio_token_id)
        self.audio_token = self.tokenizer.convert_ids_to_tokens(self.audio_token_id)
        if not self.audio_token:
            raise ConfigError(f"{self.folder}: the tokenizer has no token for audio_token_id "
                              f"{self.audio_token_id}")
        self.audio_markup = self.audio_token

    def feature_int(self, key: str, default: int) -> int:
        """An integer setting of the feature extractor (`default` when the folder does not set it), within
        FEATURE_BOUNDS; anything else is a ConfigError naming the file."""
        value = self.feature_config.get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        low, high = FEATURE_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{self.feature_file}: {key} must be an integer in [{low}, {high}], got {value!r}")
        return value

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
        """Load peft adapters saved by `save(merge=False)` onto this (plain) model, trainable. The adapter file
        must hold exactly the adapters its config describes (peft would start missing ones from scratch)."""
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict

        if self._peft:
            raise ConfigError(f"{folder}: the model already has adapters")
        found = check_adapter_folder(folder)
        try:
            self.model = PeftModel.from_pretrained(self.model, str(folder), is_trainable=True)
        except (ValueError, KeyError, TypeError, RuntimeError, OSError) as err:   # e.g. no matching module
            detail = " ".join(str(err).split())[:300]
            raise ConfigError(f"{folder}: cannot put these adapters on the model ({type(err).__name__}: "
                              f"{detail})") from None
        self.lora, self._peft = options_from_peft(self.model.peft_config[self.model.active_adapter]), True
        if found is not None:
            expected = [((name,), tuple(t.shape)) for name, t in get_peft_model_state_dict(self.model).items()]
            reason = weights_mismatch(found, expected)
            if reason:
                raise ConfigError(f"{Path(folder) / 'adapter_model.safetensors'}: adapters do not match "
                                  f"adapter_config.json: {reason}")
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

    def adapter_state_names(self, adapters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors of an adapter file (adapter_model.safetensors of save(merge=False)) under this module's
        state-dict names, to load with the rest of the weights left alone (load_state_dict(strict=False), also
        on a sharded model: spoofrl.training.fsdp.load_full_state_dict)."""
        from peft.utils import get_peft_model_state_dict
        if not self._peft:
            raise ConfigError("adapter_state_names() needs LoRA adapters")
        names = list(self.model.state_dict())
        # peft's own renaming (adapter name removed, saved modules' names) applied to the names' positions
        probe = {name: torch.tensor(i) for i, name in enumerate(names)}
        saved_as = {k: names[int(v)] for k, v in get_peft_model_state_dict(self.model, state_dict=probe).items()}
        unknown = sorted(set(adapters) - set(saved_as))
        if unknown:
            raise ConfigError(f"the adapter weights have tensors this model's adapters lack (e.g. {unknown[0]})")
        return {f"model.{saved_as[k]}": v for k, v in adapters.items()}

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
        eos = self.tokenizer.convert_ids_to_tokens(self.eos_token_id)
        check_reserved(text, (*self.reserved_tokens(), eos), what)

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
        failure = ""
        for content in (parts, text):      # the processors' structured form first, then plain text
            try:
                rendered = self.template.render(head + [{"role": "user", "content": content}],
                                                add_generation_prompt=True, **template_variables(self.tokenizer))
            except TemplateRenderError as err:   # e.g. a template for string contents meeting the structured form
                failure = f" ({str(err).removeprefix(self.template.origin + ': ')})"
                continue
            if rendered.count(self.audio_token) == 1:
                return rendered
        raise ConfigError(f"{self.template.origin}: the chat template did not render one {self.audio_token} for "
                          f"prompt {prompt[:60]!r}{failure}")

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

    def prefix(self, batch: AlmBatch) -> Prefix:
        """Audio + prompt of each item as LM input embeddings, left-padded to a common length."""
        dev = self.device
        audio, counts = self.encode_audio(batch.waves.to(dev), batch.lengths.to(dev))
        ids, attn = left_padded(self.prompt_rows(batch, counts), self.pad_token_id, dev)
        is_audio = (ids == self.audio_token_id) & attn.bool()
        # the placeholder id is embedded as pad (some vocabularies have no row for it), then overwritten
        embeds = self.lm.get_input_embeddings()(ids.masked_fill(is_audio, self.pad_token_id))
        embeds = embeds.masked_scatter(is_audio[..., None], audio.to(embeds.dtype))
        return Prefix(embeds, attn, positions(attn))

    # --- PrefixLM hooks (generation and scoring are spoofrl.alm.decoding's) ------------------------------------
    @property
    def decoder(self) -> nn.Module:
        return self.lm

    def check_target(self, text: str) -> None:
        self._check_text(text, "target")

    def check_positions(self, prefix: int, completion: int, *, generating: bool) -> None:
        total = prefix + completion
        if total > self.max_positions:
            raise ConfigError(f"prompt + audio + completion take {total} positions, more than the model's "
                              f"max_position_embeddings ({self.max_positions})")


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


def _point_adapters_at(folder: Path, base: Path) -> None:
    """Make the saved adapter config name the base folder by its absolute path (loading never downloads)."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(base)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
