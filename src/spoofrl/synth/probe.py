"""The channel-parity probe: can packaging alone tell bona fide from spoof?

Real recordings carry their packaging (Vorbis artefacts, an 8 kHz-rate band, G.722's 7 kHz band, the
resampler's edge below 8 kHz). The `real` design gives every spoof its base clip's packaging; this probe
checks that it worked. It describes each file by packaging features only, fits two classifiers on
`posttrain` (bona fide vs spoof: a logistic regression, and a small MLP that can use interactions such as
"this band edge with that level above 7 kHz") and reports their EER on every subset. Near 50 % means a
detector cannot win by spotting the packaging. (The training subset's own EER is in-sample: the MLP fits it.)

A second, direct measure needs no classifier: the *paired gap*, per spoof kind, is the median over spoofs
of |features(spoof) - features(its bona fide clip)| in units of each feature's spread across bona fide
clips (0: the spoof's packaging features equal its clip's). On the small preset it is 0.05 for TTS spoofs
(0.12 through a vocoder) with parity and 0.51 (0.57) without it (the ablation `parity=False` of
`real_generate.generate_real`: spoofs not packaged, TTS not matched to the clip), while the classifier EERs
hardly moved: pooled over sources, packaging features vary far more between clips than
between a clip and its spoofs, so the EER probe alone would miss a leak that a detector recognising the
source could still use.

Features (`packaging_features`, from the long-term spectrum of the speech frames, 16 kHz files):

- `cliff_4k`, `cliff_7k`, `cliff_7k8`: level drop (dB) across 4 kHz (Nyquist of 8 kHz-rate clips and of
  8 kHz codecs), 7 kHz (G.722's band edge) and 7.6-7.9 kHz (the resampler's transition band);
- `above_4k`, `above_7k`, `above_7k6`: energy above those frequencies relative to the whole band (dB);
- `bandwidth`: highest frequency within 50 dB of the spectrum's peak (kHz);
- `rolloff_99`, `rolloff_999`: frequencies below which 99 % / 99.9 % of the energy lies (kHz);
- `holes_lo`, `holes_hi`: share of time-frequency bins below 1-4 kHz / 4-8 kHz that lie 20 dB or more
  under their frame's smoothed spectrum (Vorbis zeroes bands it cannot afford; G.722 and PCM do not);

Not used: how high-band energy is spread over the frames of speech (e.g. the 7-8 kHz share in the weakest
frames). It separates espeak-ng from human voices through the voice, not the packaging (it did, at about
45 % EER, in a trial), so it does not belong in a packaging probe.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter

from spoofrl.synth import dsp

SR = 16000
N_FFT, HOP = 512, 256
# attacks that change the band by definition (8 kHz codecs; upsamplers rebuilding the band above 4 / 2 kHz):
# packaging features see them, as they see an 8 kHz packaging, so the probe also reports the EER without them
BAND_ATTACKS = ("codec2", "celp", "upsampler_x2", "upsampler_x4")
FEATURES = ("cliff_4k", "cliff_7k", "cliff_7k8", "above_4k", "above_7k", "above_7k6", "bandwidth", "rolloff_99",
            "rolloff_999", "holes_lo", "holes_hi")


def _band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (freqs >= lo) & (freqs < hi)


def _db(x) -> float:
    return float(10 * np.log10(x + 1e-20))


def packaging_features(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """The FEATURES of one 16 kHz signal (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    power = np.abs(dsp.stft(x, N_FFT, HOP)) ** 2                    # [frames, bins]
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)
    energy = power.sum(axis=1)
    speech = energy > energy.max() * 10 ** (-3.0)                   # frames within 30 dB of the loudest
    p = power[speech] if speech.any() else power
    ltas = p.mean(axis=0)
    total = ltas.sum() + 1e-20

    def level(lo, hi):
        return _db(ltas[_band(freqs, lo, hi)].mean())

    cum = np.cumsum(ltas) / total
    peak = 10 * np.log10(ltas.max() + 1e-20)
    over = np.nonzero(10 * np.log10(ltas + 1e-20) > peak - 50.0)[0]
    smooth = 10 * np.log10(median_filter(p, size=(1, 9), mode="nearest") + 1e-20)
    holes = 10 * np.log10(p + 1e-20) < smooth - 20.0
    return np.array([
        level(3600, 3900) - level(4100, 4400),
        level(6600, 6900) - level(7100, 7400),
        level(7000, 7300) - level(7600, 7900),
        _db(ltas[freqs >= 4000].sum() / total),
        _db(ltas[freqs >= 7000].sum() / total),
        _db(ltas[freqs >= 7600].sum() / total),
        freqs[over[-1]] / 1000.0 if len(over) else 0.0,
        freqs[min(np.searchsorted(cum, 0.99), len(freqs) - 1)] / 1000.0,
        freqs[min(np.searchsorted(cum, 0.999), len(freqs) - 1)] / 1000.0,
        float(holes[:, _band(freqs, 1000, 4000)].mean()),
        float(holes[:, _band(freqs, 4000, 8000)].mean()),
    ])


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, mean, std) of an L2-regularised logistic regression on standardised features (Newton)."""
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-9
    Z = np.hstack([(X - mean) / std, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    reg = l2 * len(X) * np.eye(Z.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -30, 30)))
        grad = Z.T @ (p - y) + reg @ w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w, mean, std


def logistic_scores(X: np.ndarray, model: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    w, mean, std = model
    return np.hstack([(X - mean) / std, np.ones((len(X), 1))]) @ w


def fit_mlp(X: np.ndarray, y: np.ndarray, classes: int = 2, hidden: int = 32, steps: int = 400,
            weight_decay: float = 1e-3, seed: int = 0):
    """A small MLP (2 hidden layers) on standardised features, full-batch Adam, deterministic on CPU.
    Returns a function features -> class scores (logit of class 1 for 2 classes, else all logits)."""
    import torch
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-9
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                              torch.nn.Tanh(), torch.nn.Linear(hidden, classes))
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / np.sqrt(layer.in_features))
                layer.bias.zero_()
    Z = torch.tensor((X - mean) / std, dtype=torch.float32)
    t = torch.tensor(y, dtype=torch.long)
    counts = torch.bincount(t, minlength=classes).clamp(min=1).float()
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / counts / classes)   # classes weighed alike
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(Z), t).backward()
        opt.step()

    def score(Xn: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.tensor((Xn - mean) / std, dtype=torch.float32)).numpy().astype(np.float64)
        return out[:, 1] - out[:, 0] if classes == 2 else out
    return score


@dataclass
class ProbeResult:
    train_subset: str
    eer: dict[str, dict[str, float]]       # probe (linear | mlp) -> subset -> EER (%) (bona fide = higher score)
    eer_wideband: dict[str, dict[str, float]]  # the same without spoofs made by BAND_ATTACKS
    counts: dict[str, tuple[int, int]]     # subset -> (bona fide, spoof)
    by_kind: dict[str, dict[str, float]]   # probe -> spoof kind -> EER (%), eval subsets pooled
    paired_gap: dict[str, float]           # spoof kind (or 'band attacks') -> median paired gap (see above)
    paired_count: dict[str, int]
    weights: dict[str, float]              # of the linear probe

    def to_dict(self) -> dict:
        return {"train_subset": self.train_subset, "features": list(FEATURES), "eer_percent": self.eer,
                "eer_percent_without_band_attacks": self.eer_wideband, "band_attacks": list(BAND_ATTACKS),
                "counts": {k: list(v) for k, v in self.counts.items()}, "eer_percent_by_spoof_kind": self.by_kind,
                "paired_gap": self.paired_gap, "paired_count": self.paired_count,
                "linear_weights": self.weights}

    def lines(self) -> list[str]:
        out = [f"channel-parity probe: classifiers on {len(FEATURES)} packaging features only, trained on "
               f"{self.train_subset} to tell bona fide from spoof. EER % (50 = packaging says nothing about the "
               f"class); 'wide' = without the band-changing attacks ({', '.join(BAND_ATTACKS)}):",
               f"  {'subset':14s} {'linear':>7s} {'wide':>6s} {'MLP':>7s} {'wide':>6s}"]
        for s in self.eer["linear"]:
            b, n = self.counts[s]
            note = ", in-sample" if s == self.train_subset else ""
            out.append(f"  {s:14s} {self.eer['linear'][s]:7.1f} {self.eer_wideband['linear'][s]:6.1f} "
                       f"{self.eer['mlp'][s]:7.1f} {self.eer_wideband['mlp'][s]:6.1f}  ({b} bona fide, {n} spoof{note})")
        for k in self.by_kind["linear"]:
            out.append(f"  eval subsets, bona fide vs {k}: linear {self.by_kind['linear'][k]:.1f}, "
                       f"MLP {self.by_kind['mlp'][k]:.1f}")
        out.append("  paired gap (spoof vs its own clip, 0 = same packaging features): " + ", ".join(
            f"{k} {v:.2f} ({self.paired_count[k]})" for k, v in self.paired_gap.items()))
        return out


def _eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    from spoofrl.metrics.official import compute_eer
    if len(bona) == 0 or len(spoof) == 0:
        return float("nan")
    return round(100.0 * compute_eer(bona, spoof)[0], 2)


def file_features(bench: Path, rows) -> np.ndarray:
    import soundfile as sf
    return np.array([packaging_features(sf.read(str(r.audio_path), dtype="float64")[0]) for r in rows])


def paired_gap(rows, X: np.ndarray) -> tuple[dict[str, float], dict[str, int]]:
    """Median |features(spoof) - features(its clip's bona fide copy)| / spread of the feature over bona fide
    files, per spoof kind ('band attacks' apart), over pairs that both went through the clean channel."""
    bona = {r.extra.get("base"): i for i, r in enumerate(rows) if r.label == "bonafide"}
    if not bona:
        return {}, {}
    spread = X[list(bona.values())].std(axis=0) + 1e-9
    gaps: dict[str, list] = {}
    for i, r in enumerate(rows):
        j = bona.get(r.extra.get("base"))
        if r.label != "spoof" or j is None or r.extra.get("channel") != "clean" or rows[j].extra.get("channel") != "clean":
            continue
        kind = "band attacks" if r.extra.get("vocoder", "-") in BAND_ATTACKS else r.extra.get("kind", "-")
        gaps.setdefault(kind, []).append(np.abs(X[i] - X[j]) / spread)
    return ({k: round(float(np.median(np.array(v))), 3) for k, v in sorted(gaps.items())},
            {k: len(v) for k, v in sorted(gaps.items())})


def run_probe(bench: str | Path, train_subset: str = "posttrain", write: bool = True) -> ProbeResult:
    """Features of every file of a benchmark folder, the probes fitted on `train_subset`, EER per subset.
    Writes BENCH/probe.json when `write`."""
    from spoofrl.data.manifest import read_manifest
    bench = Path(bench)
    rows = read_manifest(bench / "manifest.csv")
    X = file_features(bench, rows)
    y = np.array([r.label == "bonafide" for r in rows], dtype=float)
    subsets = list(dict.fromkeys(r.subset for r in rows))
    train = np.array([r.subset == train_subset for r in rows])
    if not train.any() or len(set(y[train])) < 2:
        raise ValueError(f"{bench}: subset '{train_subset}' lacks one of the classes; cannot fit the probe")
    linear = fit_logistic(X[train], y[train])
    scores = {"linear": logistic_scores(X, linear), "mlp": fit_mlp(X[train], y[train].astype(int))(X)}
    wide = np.array([r.extra.get("vocoder", "-") not in BAND_ATTACKS and r.attack not in BAND_ATTACKS for r in rows])
    evals = np.array([r.subset != train_subset for r in rows])
    kinds = sorted({r.extra.get("kind", "-") for r in rows if r.label == "spoof"})
    eer: dict = {}
    eer_wide: dict = {}
    by_kind: dict = {}
    counts = {}
    for name, sc in scores.items():
        eer[name], eer_wide[name], by_kind[name] = {}, {}, {}
        for s in subsets:
            m = np.array([r.subset == s for r in rows])
            eer[name][s] = _eer(sc[m & (y == 1)], sc[m & (y == 0)])
            eer_wide[name][s] = _eer(sc[m & (y == 1)], sc[m & wide & (y == 0)])
            counts[s] = (int((m & (y == 1)).sum()), int((m & (y == 0)).sum()))
        for k in kinds:
            m = np.array([r.extra.get("kind", "-") == k for r in rows])
            by_kind[name][k] = _eer(sc[evals & (y == 1)], sc[evals & m & (y == 0)])
    gap, gap_n = paired_gap(rows, X)
    result = ProbeResult(train_subset, eer, eer_wide, counts, by_kind, gap, gap_n,
                         {f: round(float(w), 4) for f, w in zip(FEATURES, linear[0][:-1])})
    if write:
        (bench / "probe.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return result
