"""Explaining clips with a trained audio LLM: greedy rationale, verdict, a score, and every claim checked.

For each clip the model writes its completion greedily (its own rationale and answer). Then:

- **answer**: the last `<answer>...</answer>` of it (None without one);
- **score**: log p(`<answer>bonafide</answer>`) - log p(`<answer>spoof</answer>`), each scored teacher-forced
  *after the model's own greedy rationale* (the text before its last `<answer>`; nothing for an answer-only
  model), EOS included. Higher = more bona fide; a log-likelihood ratio of the two verdicts (a logit when the
  model puts its mass on them). EER and DCF are computed from it;
- **claims**: the rationale's claims (`parse_claims` of its sections) checked against the clip's measured
  evidence (`spoofrl.evidence` with the model's reference profile): true / false / unverifiable;
- **well_formed**: FT-GRPO's structure (`parse_rationale(...).well_formed`).

`summarise` turns a list of them into the study's per-set numbers: accuracy, format rate, grounding precision
(true / all claims), hallucination rate (false / all claims), unverifiable rate, claims per clip and rationale
length in tokens.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from spoofrl.alm.batch import AlmBatch
from spoofrl.alm.config import SamplingConfig
from spoofrl.explain.claims import check_claims, parse_claims
from spoofrl.explain.rationale import parse_rationale

VERDICTS = ("bonafide", "spoof")


@dataclass
class Explained:
    """One clip explained by a model (see the module doc)."""

    completion: str
    answer: str | None
    score: float
    well_formed: bool
    tokens: int                 # completion length in tokens, EOS included
    truncated: bool
    n_claims: int = 0
    n_true: int = 0
    n_false: int = 0
    n_unverifiable: int = 0
    claims: list[dict] = field(default_factory=list)   # ClaimVerdict.to_dict() of each claim
    checked: bool = False       # claims checked (evidence was measured)

    def to_dict(self) -> dict:
        return asdict(self)


def rationale_prefix(completion: str) -> str:
    """The completion before its last `<answer>` (the whole of it when it has none)."""
    at = completion.rfind("<answer>")
    return completion if at < 0 else completion[:at]


def verdict_scores(model, batch: AlmBatch, completions: Sequence[str]) -> np.ndarray:
    """[B] log p(bonafide answer) - log p(spoof answer), each after the item's rationale prefix."""
    prefixes = [rationale_prefix(c) for c in completions]
    texts = [[f"{p}<answer>{v}</answer>" for v in VERDICTS] for p in prefixes]
    targets = model.completions_from_text(texts)
    logp, _ = model.token_logprobs(batch, targets, grad=False)
    total = logp.sum(-1).double().cpu().numpy()      # [B, 2]: the shared prefix cancels in the difference
    return total[:, 0] - total[:, 1]


def explain_batch(model, batch: AlmBatch, *, max_completion_length: int, evidence: Sequence | None = None
                  ) -> list[Explained]:
    """Greedy completions, verdict scores and (when `evidence` gives each clip's items) checked claims."""
    comps = model.generate(batch, 1, SamplingConfig(do_sample=False, max_completion_length=max_completion_length))
    texts = [group[0] for group in comps.text]
    scores = verdict_scores(model, batch, texts)
    lengths = comps.lengths[:, 0].tolist()
    out = []
    for i, text in enumerate(texts):
        parsed = parse_rationale(text)
        item = Explained(text, parsed.answer, float(scores[i]), parsed.well_formed, int(lengths[i]),
                         bool(comps.truncated[i, 0]))
        if evidence is not None and evidence[i] is not None:
            check = check_claims(parse_claims(parsed.sections_text), evidence[i])
            item.n_claims, item.n_true, item.n_false = check.n_claims, check.n_true, check.n_false
            item.n_unverifiable, item.checked = check.n_unverifiable, True
            item.claims = [v.to_dict() for v in check.per_claim]
        out.append(item)
    return out


def summarise(items: Sequence[Explained], labels: Sequence[str] | None = None) -> dict[str, float | None]:
    """The study's numbers over a set of explained clips (labels: the truth, for accuracy and EER)."""
    n = len(items)
    claims = sum(x.n_claims for x in items if x.checked)

    def share(count: float, total: float) -> float | None:
        return None if total == 0 else float(count) / total

    out: dict[str, float | None] = {
        "clips": n,
        "format_rate": share(sum(x.well_formed for x in items), n),
        "answer_rate": share(sum(x.answer in VERDICTS for x in items), n),
        "claims_per_clip": share(claims, sum(x.checked for x in items)),
        "grounding_precision": share(sum(x.n_true for x in items if x.checked), claims),
        "hallucination_rate": share(sum(x.n_false for x in items if x.checked), claims),
        "unverifiable_rate": share(sum(x.n_unverifiable for x in items if x.checked), claims),
        "rationale_tokens": share(sum(x.tokens for x in items), n),
        "truncated_rate": share(sum(x.truncated for x in items), n),
    }
    if labels is not None:
        from spoofrl.metrics import compute_eer
        labels = list(labels)
        out["accuracy"] = share(sum(x.answer == y for x, y in zip(items, labels)), n)
        scores = np.array([x.score for x in items])
        truth = np.array(labels)
        if {"bonafide", "spoof"} <= set(labels):
            out["eer"] = float(compute_eer(scores[truth == "bonafide"], scores[truth == "spoof"])[0])
        else:
            out["eer"] = None
    return out


def explain_waves(model, waves: Sequence[np.ndarray], prompt: str | Sequence[str], *, max_completion_length: int,
                  evidence: Sequence | None = None, batch_size: int = 8, system: str | None = None
                  ) -> list[Explained]:
    """`explain_batch` over 1-D waveforms (at the model's rate) in batches of `batch_size`, without gradient;
    `prompt`: one for every clip, or one per clip."""
    out: list[Explained] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(waves), batch_size):
                chunk = list(waves[start:start + batch_size])
                prompts = prompt if isinstance(prompt, str) else list(prompt[start:start + batch_size])
                batch = AlmBatch.from_waves(chunk, prompts, system=system).to(model.device)
                ev = None if evidence is None else list(evidence[start:start + batch_size])
                out.extend(explain_batch(model, batch, max_completion_length=max_completion_length, evidence=ev))
    finally:
        model.train(was_training)
    return out


__all__ = ["Explained", "VERDICTS", "explain_batch", "explain_waves", "rationale_prefix", "summarise",
           "verdict_scores"]
