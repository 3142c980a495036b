"""The audio + spectrogram input of the small ALM (SDD-APALLM, arXiv 2601.23066) and the semantic-cue probe."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import chain_ops, float_tol, spectral_db_tol
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
    # float32 STFT of 640 samples, bands of ~21 bins: a cell L dB under the loudest carries 10^(L/20) times the
    # loudest's rounding error, from 3e-5 dB at 0 dB to 0.3 dB at the -80 dB floor (spectral_db_tol); a level
    # that leaked through would move every cell by the 40 dB between the two
    tol = torch.from_numpy(spectral_db_tol(-torch.minimum(a, b).double().numpy(), chain_ops(640, 21)))
    assert ((a - b).abs() <= tol).all() and a.min() < -60        # quiet cells were compared too


def test_spectrogram_tokens_of_an_item_do_not_depend_on_its_batch_mates():
    enc = SpectrogramEncoder(AlmConfig(inputs="spectrogram", lm_width=32))
    waves = torch.zeros(2, SR)
    waves[0] = tone(500.0, 1.0)
    waves[1, :SR // 2] = tone(2500.0)
    out, counts = enc(waves, torch.tensor([SR, SR // 2]))
    alone, n = enc(waves[1:, :SR // 2], torch.tensor([SR // 2]))
    assert counts.tolist() == [13, 6] and int(n) == 6
    # float32: the 640-point STFT, 21-bin bands, the 64-wide patch embedding and a 32-wide norm, on |x| <= ~4;
    # a batch mate's frames or the padding mixed in would move these normalised embeddings by O(1)
    tol = float_tol(torch.float32, chain_ops(640, 21, 64, 32), 4)       # 2e-5
    torch.testing.assert_close(out[1, :6], alone[0], atol=tol, rtol=0)
    assert torch.all(out[1, 6:] == 0)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Is this real?", "<answer>bonafide</answer>", "<answer>spoof</answer>"], vocab_size=300,
                           extra_tokens=["<answer>", "</answer>"])


SMALL = dict(lm_layers=1, lm_width=32, lm_heads=2, lm_kv_heads=1, lm_ffn=64, conv_channels=32, encoder_layers=0)
# log-probs of the SMALL ALM along two float32 paths (KV-cached decoding vs one forward): its longest chain of
# reductions (the spectrogram's 640-point STFT, 21-bin bands, 64-wide patch embedding; 32-wide norms and
# projections, attention over ~40 positions, the 64-wide MLP, a 300-way log-softmax) is ~120 roundings
# (chain_ops), on |logits|, |log-probs| < 10 (ln 300 = 5.7 plus the logits' spread)
LOGP_TOL = float_tol(torch.float32, chain_ops(640, 21, 64, *[32] * 9, 40, 64, 300), 10)     # 1.4e-4


@pytest.mark.parametrize("inputs", ["spectrogram", "both"])
def test_alm_with_spectrogram_input_scores_what_it_generates(tokenizer, inputs, tmp_path):
    model = build_alm(AlmConfig(inputs=inputs, **SMALL), tokenizer, seed=0).eval()
    batch = AlmBatch.from_waves([tone(400.0).numpy(), tone(3000.0, 0.8).numpy()], "<audio> Is this real?")
    comps = model.generate(batch, 2, SamplingConfig(max_completion_length=5, seed=0))
    logp, mask = model.token_logprobs(batch, comps, grad=False)
    torch.testing.assert_close(logp, comps.logprobs, atol=LOGP_TOL, rtol=0)
    other = AlmBatch.from_waves([tone(3000.0).numpy(), tone(3000.0, 0.8).numpy()], "<audio> Is this real?")
    changed, _ = model.token_logprobs(other, comps, grad=False)
    # 400 Hz -> 3 kHz moves item 0's log-probs by 1e-2 to 3e-2 in this small random model, ~100 LOGP_TOL
    assert float((changed[0] - logp[0]).abs().max()) > 10 * LOGP_TOL
    torch.testing.assert_close(changed[1], logp[1], atol=LOGP_TOL, rtol=0)     # its batch mate's did not
    frames = model.prefix(batch).audio_frames.tolist()
    spectrogram = [6, 10]          # 0.5 s and 0.8 s at 12.5 patches per second
    audio = [13, 21] if inputs == "both" else [0, 0]   # then the audio encoder's 25 tokens per second first
    assert frames == [a + s for a, s in zip(audio, spectrogram)]
    save_alm(model, tmp_path / "m")
    again = load_alm(tmp_path / "m", device="cpu")
    assert again.cfg.inputs == inputs
    assert torch.equal(again.token_logprobs(batch, comps, grad=False)[0], logp)   # same weights, same path


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
