"""Official ASVspoof countermeasure metrics, vectorised with numpy.

Conventions (those of the ASVspoof 2019 / 2021 / 5 evaluation tools):
- higher score = more bona fide;
- EER: all scores sorted ascending with a *stable* sort, bona fide before spoof on ties; candidate
  thresholds are (lowest score - 0.001) and every sorted score; at a candidate t, FRR = share of
  bona fide scores at or below t in the sorted order and FAR = share of spoof scores above it; the
  EER is (FRR + FAR) / 2 at the *first* argmin of |FRR - FAR|. No ROC convex hull, no interpolation,
  so ties are resolved exactly as the official scripts do;
- minDCF (ASVspoof 5 Track 1): min over the same candidate thresholds of
  Cmiss*(1-Pspoof)*FRR + Cfa*Pspoof*FAR, normalised by min(Cmiss*(1-Pspoof), Cfa*Pspoof), computed with
  the tool's own floating-point expression so value and threshold are bit-identical (`_min_dcf_terms`);
- actDCF: the same cost at the Bayes threshold -ln(Cmiss*(1-Pspoof) / (Cfa*Pspoof)), reading the
  scores as natural-log likelihood ratios (a bona fide score below it is a miss, a spoof score at or
  above it a false alarm);
- CLLR: 0.5 * [mean log(1 + e^-s) over bona fide + mean log(1 + e^s) over spoof] / ln 2, in bits.
actDCF and CLLR measure calibration; they are only meaningful on LLR-like scores.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spoofrl.errors import SpoofrlError

# ASVspoof 5 Track 1 cost parameters (overridable everywhere).
P_SPOOF = 0.05
C_MISS = 1.0
C_FA = 10.0
# The official tools put one extra candidate threshold this far below the lowest score.
THRESHOLD_MARGIN = 0.001

ArrayLike = Sequence[float] | np.ndarray


def _as_scores(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise SpoofrlError(f"no {name} scores: metrics need at least one bona fide and one spoof score")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SpoofrlError(f"{int(bad.sum())} {name} score(s) are NaN or infinite (first at index {first}: {arr[first]})")
    return arr


def _check_costs(p_spoof: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_spoof < 1.0:
        raise SpoofrlError(f"p_spoof must be strictly between 0 and 1, got {p_spoof}")
    if c_miss <= 0 or c_fa <= 0:
        raise SpoofrlError(f"c_miss and c_fa must be positive, got c_miss={c_miss}, c_fa={c_fa}")


def _sorted_labels(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores sorted ascending (stable, bona fide first on ties) and the matching is-bona-fide flags."""
    scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(bona.size, dtype=bool), np.zeros(spoof.size, dtype=bool)])
    # Bona fide come first in the concatenation, so a stable sort keeps them first among equal scores.
    order = np.argsort(scores, kind="stable")
    return scores[order], is_bona[order]


def _rates_from_sorted(is_bona_sorted: np.ndarray, n_bona: int, n_spoof: int) -> tuple[np.ndarray, np.ndarray]:
    """FRR and FAR at every candidate threshold (the first one below all scores, then each sorted score)."""
    bona_at_or_below = np.cumsum(is_bona_sorted, dtype=np.int64)
    spoof_at_or_below = np.arange(1, is_bona_sorted.size + 1, dtype=np.int64) - bona_at_or_below
    frr = np.concatenate([[0.0], bona_at_or_below / n_bona])
    far = np.concatenate([[1.0], (n_spoof - spoof_at_or_below) / n_spoof])
    return frr, far


def error_rates(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frr, far, thresholds) over the official candidate thresholds, thresholds ascending."""
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    sorted_scores, is_bona = _sorted_labels(bona, spoof)
    frr, far = _rates_from_sorted(is_bona, bona.size, spoof.size)
    thresholds = np.concatenate([[sorted_scores[0] - THRESHOLD_MARGIN], sorted_scores])
    return frr, far, thresholds


def _eer_index(frr: np.ndarray, far: np.ndarray) -> int:
    return int(np.argmin(np.abs(frr - far)))  # argmin returns the first minimum, as the official tools do


def compute_eer(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> tuple[float, float]:
    """(EER as a fraction, threshold) exactly as the ASVspoof tools compute it."""
    frr, far, thresholds = error_rates(bonafide_scores, spoof_scores)
    i = _eer_index(frr, far)
    return float((frr[i] + far[i]) / 2.0), float(thresholds[i])


def det_curve(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """DET points (frr, far) at every candidate threshold, FRR rising and FAR falling.

    Plot them on normal-deviate axes (`scipy.stats.norm.ppf`) for the usual DET figure.
    """
    frr, far, _ = error_rates(bonafide_scores, spoof_scores)
    return frr, far


def _dcf_normaliser(p_spoof: float, c_miss: float, c_fa: float) -> float:
    # The cost of the better of the two trivial systems (accept all / reject all), as actDCF's tool writes it.
    return min(c_fa * p_spoof, c_miss * (1.0 - p_spoof))


def _min_dcf_terms(p_spoof: float, c_miss: float, c_fa: float) -> tuple[float, float, float]:
    """(P(bona fide), P(spoof), normaliser) written as the ASVspoof 5 tool's compute_mindcf writes them: it
    goes through p_target = 1 - Pspoof and uses 1 - p_target for P(spoof), which differs from Pspoof in the
    last bit (1 - (1 - 0.05) = 0.050000000000000044). Tied costs can then pick another threshold, so the
    same expression is kept here to give bit-identical minDCFs and thresholds."""
    p_target = 1.0 - p_spoof
    return p_target, 1.0 - p_target, min(c_miss * p_target, c_fa * (1.0 - p_target))


def _dcf_curve(frr: np.ndarray, far: np.ndarray, p_spoof: float, c_miss: float, c_fa: float) -> np.ndarray:
    """Unnormalised detection cost at every candidate threshold (the official minDCF expression, term order
    included: floating-point sums depend on it)."""
    p_target, p_non, _ = _min_dcf_terms(p_spoof, c_miss, c_fa)
    return c_miss * frr * p_target + c_fa * far * p_non


def _normalised_min_dcf(frr: np.ndarray, far: np.ndarray, p_spoof: float, c_miss: float, c_fa: float) -> float:
    return float(_dcf_curve(frr, far, p_spoof, c_miss, c_fa).min() / _min_dcf_terms(p_spoof, c_miss, c_fa)[2])


def min_dcf(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA) -> tuple[float, float]:
    """(normalised minimum DCF, threshold where it is reached) over the official candidate thresholds."""
    _check_costs(p_spoof, c_miss, c_fa)
    frr, far, thresholds = error_rates(bonafide_scores, spoof_scores)
    cost = _dcf_curve(frr, far, p_spoof, c_miss, c_fa)
    i = int(np.argmin(cost))  # the first minimum, as the tool's strict `<` scan keeps
    return float(cost[i] / _min_dcf_terms(p_spoof, c_miss, c_fa)[2]), float(thresholds[i])


def bayes_threshold(p_spoof: float = P_SPOOF, c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """The bona fide LLR threshold that minimises the expected cost: -ln(Cmiss*(1-Pspoof) / (Cfa*Pspoof)).

    Accept as bona fide when llr >= this. `p_spoof` is the prior of spoof (the ASVspoof 5 convention, used
    everywhere in spoofrl's metrics); c_miss the cost of rejecting bona fide, c_fa of accepting a spoof.
    ASVspoof 5 (0.05, 1, 10) gives -ln 1.9. This is spoofrl's one definition (calibration uses it too)."""
    _check_costs(p_spoof, c_miss, c_fa)
    return -math.log(c_miss * (1.0 - p_spoof) / (c_fa * p_spoof))


def act_dcf(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """Normalised actual DCF: scores read as LLRs and thresholded at the Bayes threshold."""
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    threshold = bayes_threshold(p_spoof, c_miss, c_fa)
    miss_rate = np.count_nonzero(bona < threshold) / bona.size
    fa_rate = np.count_nonzero(spoof >= threshold) / spoof.size
    cost = c_miss * (1.0 - p_spoof) * miss_rate + c_fa * p_spoof * fa_rate
    return float(cost / _dcf_normaliser(p_spoof, c_miss, c_fa))


def cllr(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits (scores read as natural-log LLRs); 1.0 = uninformative."""
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    # logaddexp(0, x) = log(1 + e^x) without overflow for large |x|.
    bona_cost = np.mean(np.logaddexp(0.0, -bona))
    spoof_cost = np.mean(np.logaddexp(0.0, spoof))
    return float(0.5 * (bona_cost + spoof_cost) / math.log(2.0))


def evaluate(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, p_spoof: float = P_SPOOF,
             c_miss: float = C_MISS, c_fa: float = C_FA) -> dict:
    """Every official metric at once: eer (fraction), threshold, min_dcf, act_dcf, cllr, n_bonafide, n_spoof."""
    _check_costs(p_spoof, c_miss, c_fa)
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    sorted_scores, is_bona = _sorted_labels(bona, spoof)
    frr, far = _rates_from_sorted(is_bona, bona.size, spoof.size)
    thresholds = np.concatenate([[sorted_scores[0] - THRESHOLD_MARGIN], sorted_scores])
    i = _eer_index(frr, far)
    return {
        "eer": float((frr[i] + far[i]) / 2.0),
        "threshold": float(thresholds[i]),
        "min_dcf": _normalised_min_dcf(frr, far, p_spoof, c_miss, c_fa),
        "act_dcf": act_dcf(bona, spoof, p_spoof=p_spoof, c_miss=c_miss, c_fa=c_fa),
        "cllr": cllr(bona, spoof),
        "n_bonafide": int(bona.size),
        "n_spoof": int(spoof.size),
    }


def bootstrap_replicates(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, n: int = 1000, seed: int = 0,
                         progress_desc: str | None = None, min_dcf_costs: dict | None = None
                         ) -> dict[str, np.ndarray]:
    """EERs (key 'eer') of `n` bootstrap replicates (bona fide and spoof resampled with replacement,
    separately), and with `min_dcf_costs` ({p_spoof, c_miss, c_fa}) their normalised minDCFs ('min_dcf').

    Each replicate equals `compute_eer(bona[ib], spoof[is_])` (and `min_dcf` of the same) for the index draws
    `ib = rng.integers(0, n_bona, n_bona)` then `is_ = rng.integers(0, n_spoof, n_spoof)` of
    `rng = numpy.random.default_rng(seed)`, but costs O(N) instead of a sort: the scores are
    sorted once, and a replicate just repeats each sorted position as often as it was drawn.
    """
    if n < 1:
        raise SpoofrlError(f"the number of bootstrap replicates must be at least 1, got {n}")
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    if min_dcf_costs is not None:
        _check_costs(**min_dcf_costs)
    scores = np.concatenate([bona, spoof])
    order = np.argsort(scores, kind="stable")
    is_bona_sorted = np.concatenate([np.ones(bona.size, bool), np.zeros(spoof.size, bool)])[order]
    rng = np.random.default_rng(seed)
    replicates = range(n)
    if progress_desc:
        from spoofrl.log import progress
        replicates = progress(replicates, desc=progress_desc, total=n, unit="rep")
    out = {"eer": np.empty(n, dtype=np.float64)}
    if min_dcf_costs is not None:
        out["min_dcf"] = np.empty(n, dtype=np.float64)
    for r in replicates:
        bona_counts = np.bincount(rng.integers(0, bona.size, bona.size), minlength=bona.size)
        spoof_counts = np.bincount(rng.integers(0, spoof.size, spoof.size), minlength=spoof.size)
        counts = np.concatenate([bona_counts, spoof_counts])[order]
        frr, far = _rates_from_sorted(np.repeat(is_bona_sorted, counts), bona.size, spoof.size)
        i = _eer_index(frr, far)
        out["eer"][r] = (frr[i] + far[i]) / 2.0
        if min_dcf_costs is not None:
            out["min_dcf"][r] = _normalised_min_dcf(frr, far, **min_dcf_costs)
    return out


def bootstrap_eers(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, n: int = 1000, seed: int = 0,
                   progress_desc: str | None = None) -> np.ndarray:
    """EERs of `n` bootstrap replicates (see `bootstrap_replicates`)."""
    return bootstrap_replicates(bonafide_scores, spoof_scores, n, seed, progress_desc)["eer"]


def bootstrap_cis(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, n: int = 1000, alpha: float = 0.05,
                  seed: int = 0, min_dcf_costs: dict | None = None) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) confidence intervals (lo, hi) of the EER ('eer', a fraction) and,
    with `min_dcf_costs`, of the normalised minDCF ('min_dcf'), both from the same replicates."""
    if not 0.0 < alpha < 1.0:
        raise SpoofrlError(f"alpha must be strictly between 0 and 1, got {alpha}")
    large = n * (np.size(bonafide_scores) + np.size(spoof_scores)) > 5e7
    values = bootstrap_replicates(bonafide_scores, spoof_scores, n=n, seed=seed,
                                  progress_desc=("bootstrap EER" + (" and minDCF" if min_dcf_costs else ""))
                                  if large else None, min_dcf_costs=min_dcf_costs)
    cis = {}
    for name, replicate_values in values.items():
        lo, hi = np.quantile(replicate_values, [alpha / 2.0, 1.0 - alpha / 2.0])
        cis[name] = (float(lo), float(hi))
    return cis


def bootstrap_eer_ci(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, n: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the EER, as fractions (lo, hi)."""
    return bootstrap_cis(bonafide_scores, spoof_scores, n, alpha, seed)["eer"]
