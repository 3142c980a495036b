"""Shared fixtures: small generated audio, deterministic torch on few threads; the rule for float tolerances."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPOOFRL_NO_PROGRESS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """torch on one thread whatever OMP_NUM_THREADS says (`make test` sets 2): results do not depend on the
    thread count. Other CPUs (SIMD width, BLAS kernels) still round differently: tests that compare two code
    paths allow float_tol, those that compare one path with itself in one process ask for equality."""
    import torch
    torch.set_num_threads(1)


def make_tone(seconds: float = 1.0, sr: int = 16000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: speech-like enough for I/O and shape tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6)) * 0.2
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def tone_file(tmp_path: Path):
    """Factory: write a tone to tmp_path/name and return its path."""
    import soundfile as sf

    def write(name: str = "a.wav", seconds: float = 1.0, sr: int = 16000, channels: int = 1, **kw) -> Path:
        x = make_tone(seconds, sr, **kw)
        if channels > 1:
            x = np.stack([x] * channels, axis=1)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, sr)
        return path
    return write


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The hand-set detector of test_detect (low bands read bona fide, high bands spoof), loaded for scoring;
    shared by the server and hostile-input tests (test_detect has its own)."""
    from test_detect import crafted_model_dir

    from spoofrl.detect import load_detection_model
    return load_detection_model(crafted_model_dir(tmp_path_factory.mktemp("model")), "cpu")


# --- float tolerances ----------------------------------------------------------------------------------------
# Two computations of one quantity along different float paths (another kernel, batch shape or padding, BLAS
# reduction order, thread count, SIMD width of another CPU, merged vs separate weights, float32 vs a float64
# reference) differ by rounding alone. Every such tolerance in these tests follows one rule:
#
#     tol = eps(dtype) * n_ops * magnitude
#
#   eps:       machine epsilon (finfo.eps) of the dtype the paths compute in: float32 1.19e-7, float64 2.2e-16;
#   n_ops:     the roundings that pile up along the longer path. A sum of n terms taken in another order is off
#              by about sqrt(n) roundings, not n: the errors have random signs (Higham & Mary's probabilistic
#              bound; n is the adversarial worst case). A chain of reductions adds their sqrt(n): chain_ops;
#              a handful of elementwise steps counts as a few;
#   magnitude: the largest |value| those roundings act on (the terms of the reductions, or the result): a
#              range of the values (of activations, logits, scores), which may be measured, never the noise.
#
# Weights trained along two paths drift by float_tol(steps x step's n_ops) of the distance they moved; Adam,
# which divides each gradient by its own size, gets a gain for gradients that nearly cancel. Tolerances of
# another kind (Hz of a peak, dB of an SNR, a fitted slope, a Monte-Carlo estimate) come from the signal or
# from statistics over seeded draws, which are the same on every machine; they are not rounding margins.
#
# The tolerance comes from the dtype and the sizes involved, never from what one machine printed, so it holds
# on any IEEE CPU; each test says why it is still far below the effect the test checks. One code path run twice
# in one process on the same data (save and load, resume, a replay, a cache read back) is deterministic: such
# results are compared exactly (torch.equal, rtol=atol=0).
def float_tol(dtype="float32", n_ops: float = 1, magnitude: float = 1.0) -> float:
    """eps(dtype) * n_ops * magnitude, the rule above. dtype: a torch or numpy dtype, or its name."""
    import torch
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        dtype = getattr(torch, dtype)
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)
    return eps * n_ops * magnitude


def chain_ops(*lengths: int) -> float:
    """n_ops of a chain of reductions of these lengths (dot products, sums, FFTs, softmax normalisers): the
    sum of their sqrt(n), the random-walk growth of rounding errors in a sum taken in another order."""
    return float(sum(math.sqrt(n) for n in lengths))


def spectral_db_tol(below_peak_db, n_ops: float, dtype="float32"):
    """Rounding bound in dB on 10*log10(power) of a spectral cell `below_peak_db` (>= 0, array or scalar) under
    the loudest cell. A transform's absolute error is float_tol(dtype, n_ops) of the loudest amplitude, so a
    cell's relative amplitude error is that times 10**(below / 20), and 20*log10(1 + r) <= 8.69 r dB: quiet
    cells near a -80 dB floor carry 10^4 times the error of the loudest."""
    return 8.69 * float_tol(dtype, n_ops) * 10.0 ** (np.asarray(below_peak_db, dtype=np.float64) / 20.0)
