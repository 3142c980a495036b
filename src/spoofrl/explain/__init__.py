"""Explainable detection: rationales written from measured evidence, and a check of what a rationale claims.

    from spoofrl.explain import write_rationale, parse_rationale, parse_claims, check_claims
    rationale = write_rationale(items, "spoof", np.random.default_rng(0))   # items: spoofrl.evidence items
    rationale.completion       # '<think>\\n<Frequency Domain> ...\\n<Time Domain> ...\\n</think>\\n<answer>spoof</answer>'
    parsed = parse_rationale(model_output)
    check = check_claims(parse_claims(parsed.sections_text), items)   # n_true / n_false / n_unverifiable

The format is FT-GRPO's (arXiv 2601.02983) with spoofrl's label names; the rewards `ft_presence` (its
ft_reward: section tags present) and `ft_grounded` (the claims checked against the evidence) are in
spoofrl.rewards. `annotate_manifest` writes SFT data (`spoofrl data rationales`). See docs/explain.md.
"""
from spoofrl.explain.claims import (
    DIRECTIONS,
    ClaimCheck,
    ClaimVerdict,
    ParsedClaim,
    check_claims,
    parse_claims,
)
from spoofrl.explain.rationale import (
    FREQUENCY_TAG,
    TIME_TAG,
    Claim,
    ParsedRationale,
    Rationale,
    RationaleBug,
    format_completion,
    format_rationale,
    parse_rationale,
    write_rationale,
)

__all__ = [
    "DIRECTIONS", "FREQUENCY_TAG", "TIME_TAG", "Claim", "ClaimCheck", "ClaimVerdict", "ParsedClaim",
    "ParsedRationale", "Rationale", "RationaleBug", "check_claims", "format_completion", "format_rationale",
    "parse_claims", "parse_rationale", "write_rationale",
]
