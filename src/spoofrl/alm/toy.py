"""A toy audio question-answering task for tests, benchmarks and smoke runs of audio LLM training.

Two kinds of synthetic audio, told apart only by their spectrum: a low tone (a sine of 150-500 Hz) and
high-passed white noise (above 4 kHz), each 0.3-0.6 s at a random level. The prompt is the same for both,
so a model can only answer right by listening: "it sounds low" / "it sounds high".
"""
from __future__ import annotations

import numpy as np

from spoofrl.alm.batch import AlmBatch, collate_alm

TOY_SAMPLE_RATE = 16000
TOY_PROMPT = "Is the sound low or high?"
TOY_ANSWERS = {"low": "it sounds low", "high": "it sounds high"}


def toy_item(rng: np.random.Generator, kind: str | None = None, sr: int = TOY_SAMPLE_RATE) -> dict:
    """One item {"wave", "prompt", "completion", "label"}; `kind` "low" | "high" (random when None)."""
    from scipy.signal import butter, sosfilt

    kind = kind or ("low" if rng.random() < 0.5 else "high")
    n = int(sr * rng.uniform(0.3, 0.6))
    if kind == "low":
        t = np.arange(n) / sr
        x = rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(150, 500) * t + rng.uniform(0, 2 * np.pi))
    else:
        sos = butter(6, 4000, "highpass", fs=sr, output="sos")
        x = sosfilt(sos, rng.standard_normal(n)) * rng.uniform(0.05, 0.3)
    return {"wave": x.astype(np.float32), "prompt": TOY_PROMPT, "completion": TOY_ANSWERS[kind], "label": kind}


def toy_batch(n: int, seed: int) -> AlmBatch:
    """n random toy items (references = the right answers, column "label" = low | high)."""
    rng = np.random.default_rng(seed)
    return collate_alm([toy_item(rng) for _ in range(n)])


def toy_texts() -> list[str]:
    """Texts to train a tokenizer for the toy task on."""
    return [TOY_PROMPT, *TOY_ANSWERS.values()]
