"""The audio + spectrogram input of the small ALM (SDD-APALLM, arXiv 2601.23066) and the semantic-cue probe."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from spoofrl.alm import AlmBatch, SamplingConfig, build_alm, load_alm, save_alm, train_tokenizer
from spoofrl.alm.config import AlmConfig
from spoofrl.alm.spectrogram import FLOOR_DB, SpectrogramEncoder, band_energies
from spoofrl.errors import ConfigError
from spoofrl.explain.semantic import TOPIC_A, TOPIC_B, semantic_flip_manifests

SR = 16000


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return 0.3 * torch.sin(2 * np.pi * freq * t)


def test_band_energies_put_a_tone_in_its_band():
    grid = band_energies(tone(1250.0), SR, bands=16, hop_ms=20)      # bands of 500 Hz: 1250 Hz is band 2
    assert grid.shape == (24, 16) and float(grid.max()) == 0.0
    mean = grid.mean(0)
    assert int(mean.argmax()) == 2
    assert float(mean[8:].max()) < -50 and float(grid.min()) >= FLOOR_DB


def test_band_energies_ignore_the_level():
    a = band_energies(tone(3000.0), SR, 16, 20)
    b = band_energies(0.01 * tone(3000.0), SR, 16, 20)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_spectrogram_tokens_of_an_item_do_not_depend_on_its_batch_mates():
    enc = SpectrogramEncoder(AlmConfig(inputs="spectrogram", lm_width=32))
    waves = torch.zeros(2, SR)
    waves[0] = tone(500.0, 1.0)
    waves[1, :SR // 2] = tone(2500.0)
    out, counts = enc(waves, torch.tensor([SR, SR // 2]))
    alone, n = enc(waves[1:, :SR // 2], torch.tensor([SR // 2]))
    assert counts.tolist() == [13, 6] and int(n) == 6
    torch.testing.assert_close(out[1, :6], alone[0])
    assert torch.all(out[1, 6:] == 0)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Is this real?", "<answer>bonafide</answer>", "<answer>spoof</answer>"], vocab_size=300,
                           extra_tokens=["<answer>", "</answer>"])


SMALL = dict(lm_layers=1, lm_width=32, lm_heads=2, lm_kv_heads=1, lm_ffn=64, conv_channels=32, encoder_layers=0)


@pytest.mark.parametrize("inputs", ["spectrogram", "both"])
def test_alm_with_spectrogram_input_scores_what_it_generates(tokenizer, inputs, tmp_path):
    model = build_alm(AlmConfig(inputs=inputs, **SMALL), tokenizer, seed=0).eval()
    batch = AlmBatch.from_waves([tone(400.0).numpy(), tone(3000.0, 0.8).numpy()], "<audio> Is this real?")
    comps = model.generate(batch, 2, SamplingConfig(max_completion_length=5, seed=0))
    logp, mask = model.token_logprobs(batch, comps, grad=False)
    torch.testing.assert_close(logp, comps.logprobs, atol=1e-4, rtol=0)
    other = AlmBatch.from_waves([tone(3000.0).numpy(), tone(3000.0, 0.8).numpy()], "<audio> Is this real?")
    changed, _ = model.token_logprobs(other, comps, grad=False)
    assert not torch.allclose(changed[0], logp[0]) and torch.allclose(changed[1], logp[1], atol=1e-5)
    frames = model.prefix(batch).audio_frames.tolist()
    spectrogram = [6, 10]          # 0.5 s and 0.8 s at 12.5 patches per second
    audio = [13, 21] if inputs == "both" else [0, 0]   # then the audio encoder's 25 tokens per second first
    assert frames == [a + s for a, s in zip(audio, spectrogram)]
    save_alm(model, tmp_path / "m")
    again = load_alm(tmp_path / "m", device="cpu")
    assert again.cfg.inputs == inputs
    torch.testing.assert_close(again.token_logprobs(batch, comps, grad=False)[0], logp)


def test_semantic_flip_manifests_plant_and_reverse_the_cue(tmp_path):
    import soundfile as sf
    (tmp_path / "a").mkdir()
    lines = ["path,label,attack,source,condition,subset"]
    for i in range(40):
        label = "bonafide" if i % 2 else "spoof"
        subset = "train" if i < 30 else "test"
        sf.write(tmp_path / "a" / f"{i}.wav", np.zeros(800, dtype=np.float32), SR)
        lines.append(f"a/{i}.wav,{label},{'-' if label == 'bonafide' else 'x'},s,-,{subset}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    planted, flipped = semantic_flip_manifests(tmp_path / "m.csv", tmp_path / "out", train_subsets=["train"],
                                               test_subsets=["test"], strength=1.0)
    rows = list(csv.DictReader(planted.open()))
    assert len(rows) == 40 and all(r["cue"] in (TOPIC_A if r["label"] == "bonafide" else TOPIC_B) for r in rows)
    flips = list(csv.DictReader(flipped.open()))
    assert len(flips) == 10 and {r["subset"] for r in flips} == {"test_flip"}
    assert all(r["cue"] in (TOPIC_B if r["label"] == "bonafide" else TOPIC_A) for r in flips)
    assert all(r["path"].startswith("/") for r in flips)
    with pytest.raises(ConfigError, match="both training and test"):
        semantic_flip_manifests(tmp_path / "m.csv", tmp_path / "x", train_subsets=["train"], test_subsets=["train"])
