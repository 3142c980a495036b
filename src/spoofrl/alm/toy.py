"""Toy audio tasks for tests, benchmarks and smoke runs of audio LLM training.

- `toy_item` / `toy_batch`: low tone or high noise, answered "it sounds low" / "it sounds high";
- `attack_family_manifest`: name the attack family of a benchmark clip (held-out = unseen time segments);
- `spoken_digits_manifest`: speech-to-text of espeak-ng digit strings (BLEU rewards).

The first: two kinds of synthetic audio, told apart only by their spectrum: a low tone (a sine of 150-500 Hz) and
high-passed white noise (above 4 kHz), each 0.3-0.6 s at a random level. The prompt is the same for both,
so a model can only answer right by listening: "it sounds low" / "it sounds high".
"""
from __future__ import annotations

from pathlib import Path

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


# --- toy tasks on manifest audio (tests, benchmarks, smoke runs of `spoofrl train` with task: generation) ------
FAMILIES = ("none", "tts", "codec", "upsampler", "vocoder")
_CODECS = ("codec2", "celp", "lpc", "world_coded", "gsm", "opus", "mp3", "vorbis", "amr")


def attack_family(attack: str) -> str:
    """The family of a manifest attack name: none ('-': the source audio as it is), tts, codec, upsampler or
    vocoder (the other signal-processing attacks). A chain (`tts-flite-cg+upsampler_x2`) is named by its first
    step."""
    first = attack.split("+")[0]
    if first == "-":
        return "none"
    if first.startswith("tts"):
        return "tts"
    if first in _CODECS:
        return "codec"
    if first.startswith("upsampler"):
        return "upsampler"
    return "vocoder"


def attack_family_manifest(manifest: str | Path, out: str | Path, *, train_share: float = 0.6,
                           sample_rate: int = TOY_SAMPLE_RATE) -> Path:
    """"Name the attack family of this clip": every file of `manifest` cut in time into a training segment
    (the first `train_share`) and a held-out one (the rest), written as WAVs under `out` with a manifest
    (subsets `train` / `heldout`, column `family`). Held-out audio is never heard in training, though its
    speakers and attacks are."""
    import soundfile as sf

    from spoofrl.audio import load_audio
    from spoofrl.data.manifest import read_manifest

    out = Path(out)
    (out / "seg").mkdir(parents=True, exist_ok=True)
    lines = ["path,label,attack,source,condition,subset,family"]
    for i, u in enumerate(read_manifest(manifest)):
        x = load_audio(u.audio_path, sample_rate)
        cut = int(len(x) * train_share)
        for subset, part in (("train", x[:cut]), ("heldout", x[cut:])):
            path = f"seg/{i:04d}_{subset}.wav"
            sf.write(out / path, part, sample_rate, subtype="FLOAT")
            lines.append(f"{path},{u.label},{u.attack},{u.source},{u.condition},{subset},{attack_family(u.attack)}")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    return out / "manifest.csv"


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_VOICES = ("en+m1", "en+m3", "en+m5", "en+f1", "en+f3", "en-us+m2", "en-us+f2", "en-us+m7")


def spoken_digits_manifest(out: str | Path, *, train: int = 96, heldout: int = 32, digits: int = 3,
                           seed: int = 0) -> Path:
    """A toy speech-to-text corpus: strings of `digits` spoken digits ("three one four") from espeak-ng voices
    at random rates, the words in column `transcript`. Synthetic speech, so labelled spoof (tts-espeak)."""
    import soundfile as sf

    from spoofrl.synth.sources import Prosody, espeak, synthesize

    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jobs, rows = [], []
    for i in range(train + heldout):
        words = " ".join(DIGITS[d] for d in rng.integers(0, 10, digits))
        voice = _DIGIT_VOICES[int(rng.integers(len(_DIGIT_VOICES)))]
        jobs.append((espeak(voice), words, Prosody(rate=float(rng.uniform(0.9, 1.25)))))
        rows.append((f"wav/{i:04d}.wav", "train" if i < train else "heldout", words))
    lines = ["path,label,attack,source,condition,subset,transcript"]
    for (path, subset, words), audio in zip(rows, synthesize(jobs)):
        sf.write(out / path, audio.astype(np.float32), 16000, subtype="FLOAT")
        lines.append(f"{path},spoof,tts-espeak,espeak-digits,-,{subset},{words}")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    return out / "manifest.csv"
