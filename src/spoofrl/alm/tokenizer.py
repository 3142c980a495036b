"""A small tokenizer trained locally with the `tokenizers` library, wrapped as transformers'
PreTrainedTokenizerFast with a chat template.

- Byte-level BPE: any text encodes (no unknown token) and decodes back exactly.
- Special tokens: `<pad>` (padding), `<|im_start|>` (turn start), `<|im_end|>` (turn end = EOS, what a
  completion ends with) and `<audio>` (the placeholder the model replaces with the audio embeddings). They are
  removed when decoding with skip_special_tokens.
- `extra_tokens` (e.g. "<think>", "</think>", "<answer>", "</answer>") become single tokens that are kept in
  decoded text (not special), so rewards can parse them.
- The chat template (ChatML, as Qwen's) renders [{"role", "content"}, ...] messages; `add_generation_prompt`
  opens the assistant turn. Saved by save_pretrained as tokenizer.json + tokenizer_config.json +
  chat_template.jinja; `load_tokenizer` (or PreTrainedTokenizerFast.from_pretrained) reads it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from spoofrl.errors import ConfigError

PAD = "<pad>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
AUDIO = "<audio>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, AUDIO)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    eos: int
    audio: int
    im_start: int

    def suppressed(self) -> list[int]:
        """Tokens a completion never contains (their probability is set to 0 in generation and scoring)."""
        return [self.pad, self.audio, self.im_start]


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 512, min_frequency: int = 1,
                    extra_tokens: Sequence[str] = ()):
    """A byte-level BPE tokenizer trained on `texts` (prompts, completions, system prompts of the task) plus the
    chat markers, with at most `vocab_size` entries (the 256 bytes and the special tokens included; a small
    corpus may give fewer). Takes milliseconds. Returns a transformers PreTrainedTokenizerFast."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    extra = [t for t in extra_tokens if t]
    clash = [t for t in extra if t in SPECIAL_TOKENS]
    if clash:
        raise ConfigError(f"extra tokens {clash} are reserved special tokens")
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ConfigError(f"tokenizer vocab_size must be at least {minimum} (bytes + special tokens), "
                          f"got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [t for t in texts if t] + list(ROLES) * max(1, min_frequency)
    tok.train_from_iterator(corpus, trainer)
    if extra:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD,
                                      extra_special_tokens=[AUDIO, IM_START])
    wrapped.chat_template = CHAT_TEMPLATE
    check_tokenizer(wrapped)
    return wrapped


def check_tokenizer(tok) -> SpecialIds:
    """The ids of the special tokens; ConfigError if the tokenizer lacks one or has no chat template."""
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:
        raise ConfigError(f"tokenizer lacks the special tokens {missing}")
    if not tok.chat_template:
        raise ConfigError("tokenizer has no chat template")
    if tok.eos_token != IM_END or tok.pad_token != PAD:
        raise ConfigError(f"tokenizer must have eos {IM_END!r} and pad {PAD!r}, has {tok.eos_token!r} and "
                          f"{tok.pad_token!r}")
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return SpecialIds(pad=ids[PAD], eos=ids[IM_END], audio=ids[AUDIO], im_start=ids[IM_START])


def save_tokenizer(tok, folder: str | Path) -> None:
    """tokenizer.json, tokenizer_config.json and chat_template.jinja in `folder`."""
    tok.save_pretrained(str(folder))


def load_tokenizer(folder: str | Path):
    """A tokenizer saved by `save_tokenizer` (local files only; nothing is downloaded). Files the tokenizers
    library cannot use (malformed, missing entries, hostile) are a one-line ConfigError naming them."""
    from transformers import PreTrainedTokenizerFast

    from spoofrl.models.io import is_input_error

    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no tokenizer.json")
    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except BaseException as err:
        if not is_input_error(err):
            raise
        detail = " ".join(str(err).split())[:300]
        raise ConfigError(f"{path}: cannot load the tokenizer ({type(err).__name__}: {detail})") from None
    try:
        check_tokenizer(tok)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return tok


def chat_template_file(folder: str | Path) -> Path:
    """The file a saved tokenizer's chat template came from (named in the template's errors)."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    return jinja if jinja.is_file() else folder / "tokenizer_config.json"
