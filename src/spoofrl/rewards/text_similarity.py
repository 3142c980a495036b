"""`bleu` and `chrf`: sentence-level similarity of the completion to reference text(s), through sacrebleu.

The scores are sacrebleu's own (`BLEU(effective_order=True).sentence_score`, `CHRF.sentence_score`) divided
by 100, so 0..1. A BLEU reward for speech-to-text GRPO: arXiv 2509.16990. The references of a sample are
`columns[reference_column]`: one string or a list of strings; a sample with none (None, "", []) gets None.
sacrebleu is imported when such a reward is configured (it is in the `alm` extra).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from spoofrl.config import invalid, option
from spoofrl.errors import ConfigError
from spoofrl.rewards.base import Reward, batch_column


def _sacrebleu_metrics():
    try:
        import sacrebleu.metrics
    except ImportError:
        raise ConfigError("the bleu and chrf rewards need sacrebleu: pip install 'spoofrl[alm]' "
                          "(or 'sacrebleu>=2.4')") from None
    return sacrebleu.metrics


@dataclass
class BleuOptions:
    reference_column: str = option("reference", "the dataset column holding the reference text(s)")
    tokenize: str = option("13a", "sacrebleu's tokenizer: 13a, intl, char, none, zh, ja-mecab, ko-mecab, ... "
                                  "(the spm/flores ones download a model on first use)")
    smooth_method: Literal["exp", "floor", "add-k", "none"] = option("exp", "sacrebleu's smoothing of zero "
                                                                           "n-gram counts")
    smooth_value: float | None = option(None, "the value of `floor` / `add-k` smoothing (null: sacrebleu's "
                                              "default, 0.1 / 1)", ge=0)
    lowercase: bool = option(False, "compare case-insensitively")

    def validate(self) -> None:
        tokenizers = list(_sacrebleu_metrics().BLEU.TOKENIZERS)
        if self.tokenize not in tokenizers:
            raise invalid("tokenize", f"unknown tokenizer {self.tokenize!r}; sacrebleu's: {', '.join(tokenizers)}")


@dataclass
class ChrfOptions:
    reference_column: str = option("reference", "the dataset column holding the reference text(s)")
    char_order: int = option(6, "character n-gram order", ge=1)
    word_order: int = option(0, "word n-gram order (2: chrF++)", ge=0)
    beta: int = option(2, "weight of recall relative to precision", ge=0)
    lowercase: bool = option(False, "compare case-insensitively")
    whitespace: bool = option(False, "keep whitespace in character n-grams")
    eps_smoothing: bool = option(False, "epsilon smoothing of chrF++.py / NLTK / Moses (false: sacrebleu's "
                                        "effective-order default)")


def references_of(value: Any) -> list[str]:
    """The non-empty references of one sample: a string, a list of strings, or nothing (None, "", [])."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) or v is None for v in value):
        return [v for v in value if v is not None and v.strip()]
    raise ConfigError(f"a reference must be a string or a list of strings, got {value!r}")


class _SentenceMetricReward(Reward):
    """Shared by bleu and chrf: score each completion against its sample's references with `self._metric`."""

    _metric: Any

    def __call__(self, *, completions, completion_ids, prompts, columns, context) -> list[float | None]:
        references = batch_column(columns, self.options.reference_column)
        return [self._score(completion, references_of(refs)) for completion, refs in zip(completions, references)]

    def _score(self, completion: str, references: list[str]) -> float | None:
        if not references:
            return None
        return self._metric.sentence_score(completion, references).score / 100.0


class BleuReward(_SentenceMetricReward):
    """Sentence BLEU (effective order, so a short completion is not zeroed by a missing 4-gram), 0..1."""

    Options = BleuOptions

    def __init__(self, options: BleuOptions | None = None):
        super().__init__(options)
        o = self.options
        try:
            self._metric = _sacrebleu_metrics().BLEU(tokenize=o.tokenize, smooth_method=o.smooth_method,
                                                     smooth_value=o.smooth_value, lowercase=o.lowercase,
                                                     effective_order=True)
        except (ImportError, OSError, RuntimeError) as err:  # ja-mecab without its dictionary, spm offline
            raise invalid("tokenize", f"sacrebleu cannot build tokenizer {o.tokenize!r} "
                                      f"({type(err).__name__}: {err})") from None


class ChrfReward(_SentenceMetricReward):
    """Sentence chrF (chrF++ with word_order 2), 0..1."""

    Options = ChrfOptions

    def __init__(self, options: ChrfOptions | None = None):
        super().__init__(options)
        o = self.options
        self._metric = _sacrebleu_metrics().CHRF(char_order=o.char_order, word_order=o.word_order, beta=o.beta,
                                                 lowercase=o.lowercase, whitespace=o.whitespace,
                                                 eps_smoothing=o.eps_smoothing)
