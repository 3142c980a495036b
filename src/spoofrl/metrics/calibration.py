"""Score calibration: raw detector scores -> log-likelihood ratios (LLRs) of bona fide.

A raw score is the model's log-odds of bona fide; it is shifted by the training class balance and is often
over- or under-confident. Calibration maps it affinely, `llr = a * score + b` (natural log), with `a`, `b`
fitted by *prior-weighted logistic regression* on a labelled dev set (Brümmer's linear calibration, the
objective behind CLLR): with target prior pi = P(bona fide) and z = a*s + b + logit(pi),

    loss(a, b) = pi * mean_bona softplus(-z) + (1 - pi) * mean_spoof softplus(z)

Each class is averaged separately, so the fit does not depend on how many trials of each class the dev set
has, only on `pi`. At the minimum, `a*s + b` is an LLR: the posterior log-odds at prior pi minus logit(pi).

Why a target prior matters: an affine map cannot be perfect everywhere; pi chooses the operating region
where the fit is best (0.5 = balanced, what CLLR weighs; ASVspoof 5's costs give an effective prior of
bona fide of 0.655). The LLR itself is then used with any prior: P(spoof | x) = sigmoid(-(llr + logit(P_bona))).

Separable dev sets (common on easy synthetic data) would drive `a` to infinity; as in Platt scaling the
targets are smoothed to (N+1)/(N+2) and 1/(N+2), which bounds the slope and has no effect for large N.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from spoofrl.errors import SpoofrlError
from spoofrl.runfiles import CALIBRATION

DEFAULT_PRIOR = 0.5
FORMAT_VERSION = 1


@dataclass
class Calibration:
    """score -> LLR map `a * score + b`; `prior` = P(bona fide) the fit was weighted for."""
    a: float
    b: float
    prior: float = DEFAULT_PRIOR
    n_bonafide: int = 0
    n_spoof: int = 0
    extra: dict = field(default_factory=dict)  # metrics before/after, source of the dev scores, ...

    def llr(self, scores) -> np.ndarray:
        return self.a * np.asarray(scores, dtype=np.float64) + self.b

    def to_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        return {"format": FORMAT_VERSION, "kind": "linear-logistic", "a": self.a, "b": self.b,
                "prior": self.prior, "prior_meaning": "P(bona fide) used to weight the fit",
                "maps": "llr = a * raw_score + b (natural log; higher = more bona fide)",
                "n": self.n_bonafide + self.n_spoof, **{k: v for k, v in data.items() if k not in ("a", "b", "prior")},
                **extra}

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration") -> "Calibration":
        try:
            a, b, prior = float(data["a"]), float(data["b"]), float(data.get("prior", DEFAULT_PRIOR))
        except (KeyError, TypeError, ValueError) as err:
            raise SpoofrlError(f"{source}: not a spoofrl calibration (needs numbers 'a', 'b', 'prior'; {err})") from None
        if not (math.isfinite(a) and math.isfinite(b)) or not 0.0 < prior < 1.0:
            raise SpoofrlError(f"{source}: invalid calibration values a={a}, b={b}, prior={prior}")
        if a <= 0:  # a zero or negative slope would flatten or invert every verdict
            raise SpoofrlError(f"{source}: calibration slope a={a} must be positive (higher raw score = more "
                               f"bona fide); refit it with `spoofrl calibrate`")
        return cls(a=a, b=b, prior=prior, n_bonafide=int(data.get("n_bonafide", 0)),
                   n_spoof=int(data.get("n_spoof", 0)))


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def p_spoof_from_llr(llr, prior_bonafide: float = DEFAULT_PRIOR) -> np.ndarray:
    """Posterior probability of spoof given a bona-fide LLR and the prior P(bona fide)."""
    return expit(-(np.asarray(llr, dtype=np.float64) + logit(prior_bonafide)))


def p_spoof_from_logodds(score) -> np.ndarray:
    """Posterior probability of spoof implied by a raw log-odds score (the model's own softmax)."""
    return expit(-np.asarray(score, dtype=np.float64))


def _smoothed_targets(n_bona: int, n_spoof: int) -> tuple[float, float]:
    """Platt's smoothed targets: keep the slope finite on separable data."""
    return (n_bona + 1.0) / (n_bona + 2.0), 1.0 / (n_spoof + 2.0)


def _weighted_loss(params: np.ndarray, bona: np.ndarray, spoof: np.ndarray, prior: float,
                   targets: tuple[float, float]) -> tuple[float, np.ndarray]:
    """Prior-weighted cross-entropy (nats) and its gradient w.r.t. (a, b)."""
    a, b = params
    offset = logit(prior)
    total, grad = 0.0, np.zeros(2)
    for scores, weight, target in ((bona, prior, targets[0]), (spoof, 1.0 - prior, targets[1])):
        z = a * scores + b + offset
        # -[t log sigmoid(z) + (1-t) log sigmoid(-z)], stable for large |z|
        loss = -(target * log_expit(z) + (1.0 - target) * log_expit(-z))
        dz = expit(z) - target
        total += weight * loss.mean()
        grad += weight * np.array([(dz * scores).mean(), dz.mean()])
    return total, grad


def fit_calibration(bonafide_scores, spoof_scores, prior: float = DEFAULT_PRIOR) -> Calibration:
    """Fit `llr = a*s + b` by prior-weighted logistic regression (see module doc)."""
    bona = np.asarray(bonafide_scores, dtype=np.float64).ravel()
    spoof = np.asarray(spoof_scores, dtype=np.float64).ravel()
    if len(bona) == 0 or len(spoof) == 0:
        raise SpoofrlError(f"calibration needs both classes: got {len(bona)} bona fide and {len(spoof)} spoof scores")
    if not (np.all(np.isfinite(bona)) and np.all(np.isfinite(spoof))):
        raise SpoofrlError("calibration scores contain NaN or infinite values")
    if not 0.0 < prior < 1.0:
        raise SpoofrlError(f"calibration prior must be strictly between 0 and 1, got {prior}")
    # Standardise scores so the optimiser sees a well-conditioned problem, then map back.
    allscores = np.concatenate([bona, spoof])
    centre, spread = float(allscores.mean()), float(allscores.std()) or 1.0
    bona_n, spoof_n = (bona - centre) / spread, (spoof - centre) / spread
    targets = _smoothed_targets(len(bona), len(spoof))
    result = minimize(_weighted_loss, x0=np.array([1.0, 0.0]), args=(bona_n, spoof_n, prior, targets),
                      jac=True, method="L-BFGS-B")
    a_n, b_n = (float(v) for v in result.x)
    a = a_n / spread
    b = b_n - a_n * centre / spread
    return Calibration(a=a, b=b, prior=prior, n_bonafide=len(bona), n_spoof=len(spoof))


def save_calibration(cal: Calibration, folder: str | Path) -> Path:
    path = Path(folder) / CALIBRATION
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_calibration(folder: str | Path) -> Calibration | None:
    """The calibration saved in a model folder, or None when it has none."""
    path = Path(folder) / CALIBRATION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpoofrlError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SpoofrlError(f"{path}: expected a JSON object")
    return Calibration.from_dict(data, source=str(path))
