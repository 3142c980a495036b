"""spoofrl.inference: batched scoring of waveforms and manifest utterances (used by every other component)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import chain_ops, float_tol
from spoofrl.data.manifest import Utterance
from spoofrl.errors import AudioError
from spoofrl.inference import _length_batches, score_utterances, score_waveforms
from spoofrl.models import build_model, load_model_preset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_model_preset("logmel-linear"))


# One score along two float32 paths (a batch of 3 vs alone): the 512-point STFT, 257-bin mel sums, a mean over
# <= 75 frames and the 60-wide head, on |features| <= 7 (log-mel of this noise; head weights < 0.13, so the
# score's error is no larger): 5e-5. Scores here are -0.06 to -0.35: one in another's place is off by > 0.02.
SCORE_TOL = float_tol(np.float32, chain_ops(512, 257, 75, 60), 7)


def _waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_scores_keep_input_order_and_match_single_scoring(model):
    waves = _waves([8000, 8000, 12000, 8000, 12000])
    batched = score_waveforms(model, waves, batch_size=3)  # sorted by length: batches {0, 1, 3} and {2, 4}
    alone = np.array([score_waveforms(model, [w])[0] for w in waves])
    assert batched.dtype == np.float64 and batched.shape == (5,)
    # equal lengths are batched together (sorted by length), so no padding: identical up to float rounding
    np.testing.assert_allclose(batched, alone, rtol=0, atol=SCORE_TOL)
    with torch.no_grad():
        logits = model(torch.from_numpy(waves[0])[None])
    assert batched[0] == pytest.approx(float(logits[0, 1] - logits[0, 0]), abs=SCORE_TOL)  # log-odds of bona fide


def test_scoring_restores_the_training_mode(model):
    model.train()
    score_waveforms(model, _waves([4000]))
    assert model.training
    model.eval()
    score_waveforms(model, _waves([4000]))
    assert not model.training


def test_score_utterances_reads_files_and_cuts_to_max_seconds(model, tmp_path):
    waves = _waves([16000, 24000], seed=1)
    utts = []
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"{i}.flac", w, 16000)
        utts.append(Utterance(f"{i}.flac", "bonafide", root=tmp_path))
    full = score_utterances(model, utts, batch_size=4)
    np.testing.assert_allclose(full, score_waveforms(model, waves), atol=1e-4)  # FLAC is 16-bit
    cut = score_utterances(model, utts, max_seconds=0.5)
    np.testing.assert_allclose(cut, score_waveforms(model, [w[:8000] for w in waves]), atol=1e-4)
    assert score_utterances(model, []).shape == (0,)


def test_unreadable_audio_names_the_file(model, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        score_utterances(model, [Utterance("bad.wav", "spoof", root=tmp_path)])


def test_exact_length_batches_never_pad(model):
    lengths = [300, 100, 300, 200, 100, 300]
    assert [list(b) for b in _length_batches(lengths, 2)] == [[1, 4], [3, 0], [2, 5]]  # mixes 200 with 300
    assert [list(b) for b in _length_batches(lengths, 2, exact=True)] == [[1, 4], [3], [0, 2], [5]]
    # A short wave batched with a long one is zero-padded, and the padded edge frames move its score;
    # with exact_lengths its score is the one it gets alone.
    short, long = _waves([3000, 16000], seed=2)
    alone = score_waveforms(model, [short])[0]
    exact = score_waveforms(model, [short, long], exact_lengths=True)[0]
    assert exact == alone        # its own batch of one, as when alone: the same computation, bit for bit
