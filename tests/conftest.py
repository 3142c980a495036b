"""Shared fixtures: small generated audio, deterministic torch on few threads."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPOOFRL_NO_PROGRESS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
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
