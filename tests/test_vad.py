"""Voice activity detection (spoofrl.detect.vad, Silero VAD from its PyPI package) and the `no-speech` verdict.

Real behaviour, no stubs: speech comes from espeak-ng (skipped where it is missing), the non-speech signals
are made with numpy: white and pink noise, 50 Hz hum with harmonics followed by near-silence, and music-like
sustained chords (harmonic tones without the modulation of speech)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import chain_ops, float_tol
from test_detect import crafted_model_dir, write

from spoofrl.audio import resample
from spoofrl.cli import main
from spoofrl.detect import DetectOptions, detect_files, load_detection_model
from spoofrl.detect.engine import DEFAULT_MIN_SPEECH_SHARE
from spoofrl.detect.vad import FRAME, SpeechStream, speech_probabilities, speech_share, weights_path

SR = 16000
ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng for speech-like audio")
SENTENCES = ["The quick brown fox jumps over the lazy dog, and the meeting is moved to next Tuesday.",
             "Hello, my name is Alice. I am calling about the parcel that was delivered this morning."]


# ------------------------------------------------------------------------------------------ signals

@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """Two espeak-ng sentences with a short pause, at 16 kHz (espeak writes 22.05 kHz)."""
    if ESPEAK is None:
        pytest.skip("needs espeak-ng for speech-like audio")
    folder = tmp_path_factory.mktemp("espeak")
    parts = []
    for i, text in enumerate(SENTENCES):
        path = folder / f"s{i}.wav"
        subprocess.run([ESPEAK, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
        x, sr = sf.read(str(path), dtype="float32")
        parts += [resample(x, sr, SR), np.zeros(SR // 2, np.float32)]
    return np.concatenate(parts)


def white_noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def pink_noise(seconds: float, seed: int = 1) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    n = int(seconds * SR)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def hum_then_silence(seconds: float, seed: int = 2) -> np.ndarray:
    """Mains hum (50 Hz and 6 harmonics) for the first half, then near-silence (a faint hiss)."""
    t = np.arange(int(seconds * SR)) / SR
    x = 0.05 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    x[len(t) // 2:] *= 0.0
    return (x + 3e-4 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def chords(seconds: float) -> np.ndarray:
    """Music-like: triads of harmonic tones (5 partials each), each held 2.5 s with a soft attack and decay."""
    progression = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    t = np.arange(int(2.5 * SR)) / SR
    envelope = np.minimum(1.0, t / 0.05) * np.exp(-0.7 * t)
    pieces = []
    while sum(map(len, pieces)) < seconds * SR:
        for chord in progression:
            pieces.append(envelope * sum(np.sin(2 * np.pi * f * h * t) / h ** 1.5 for f in chord for h in range(1, 6)))
    x = np.concatenate(pieces)[: int(seconds * SR)]
    return (0.15 * x / np.abs(x).max()).astype(np.float32)


NON_SPEECH = {"white-noise": white_noise, "pink-noise": pink_noise, "hum-and-silence": hum_then_silence,
              "music-chords": chords}


# ------------------------------------------------------------------------------------------ the VAD

@needs_espeak
def test_speech_share_is_high_for_speech(speech):
    assert speech_share(speech, SR) > 0.5
    assert speech_share(speech * 0.02, SR) > 0.5  # quiet speech (-34 dB) is still speech
    assert speech_share(resample(speech, SR, 48000), 48000) > 0.5  # other rates are resampled to 16 kHz


@pytest.mark.parametrize("name", sorted(NON_SPEECH))
def test_speech_share_is_below_the_minimum_for_noise_hum_and_music(name):
    assert speech_share(NON_SPEECH[name](10.0), SR) < DEFAULT_MIN_SPEECH_SHARE


@needs_espeak
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_probabilities_match_the_packages_own_per_frame_model(speech):
    """The batched run gives the probabilities of the TorchScript module's own stateful, frame-by-frame
    forward (the way silero-vad runs it), up to float rounding."""
    import torch
    x = speech[: 3 * SR]  # 94 frames: the package's own way is slow
    module = torch.jit.load(str(weights_path()), map_location="cpu").eval()
    with torch.no_grad():
        theirs = module.audio_forward(torch.from_numpy(x), SR).numpy()[0]
    ours = speech_probabilities(x, SR)
    assert len(ours) == len(theirs) == int(np.ceil(len(x) / FRAME))
    # float32, batched frames and a sequence LSTM vs one frame and LSTM cell at a time: the STFT (~256 points),
    # the conv encoder (4 layers of ~128 channels x 3 taps), the 128-wide LSTM gates, carried over 94 frames
    # (~400 roundings by chain_ops, sqrt(94) for the recurrence), on pre-sigmoid values < 10 whose slope is
    # <= 1/4: 1.2e-4; a frame off by one, or the state not carried, moves probabilities by 0.01 to 1
    tol = float_tol(np.float32, chain_ops(256, 129, *(384,) * 4) + math.sqrt(94) * chain_ops(256, 128), 2.5)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol)


@needs_espeak
def test_results_are_deterministic_and_the_same_from_many_threads(speech):
    clips = [speech, white_noise(5.0), np.concatenate([chords(3.0), speech[: 2 * SR]])]
    serial = [speech_probabilities(c, SR) for c in clips]
    assert all(np.array_equal(a, speech_probabilities(c, SR)) for a, c in zip(serial, clips))
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda c: speech_probabilities(c, SR), clips * 4))
    for got, want in zip(parallel, serial * 4):
        np.testing.assert_array_equal(got, want)


def test_the_model_is_loaded_once_per_process_even_from_many_threads(monkeypatch):
    import spoofrl.detect.vad as vad
    built = []
    real_init = vad.SileroVAD.__init__

    def counting_init(self, path):
        built.append(path)
        real_init(self, path)
    monkeypatch.setattr(vad, "_model", None)
    monkeypatch.setattr(vad.SileroVAD, "__init__", counting_init)
    start = threading.Barrier(8)

    def load(_):
        start.wait()
        return vad.get_vad()
    with ThreadPoolExecutor(max_workers=8) as pool:
        models = list(pool.map(load, range(8)))
    assert len(built) == 1 and all(m is models[0] for m in models)


def test_the_packaged_weights_load_offline_without_importing_silero_vad():
    """The weights come from the installed package's data folder; `import silero_vad` (which sets torch to one
    thread at import) and torchaudio are never imported."""
    code = ("import sys, torch; torch.set_num_threads(2); from spoofrl.detect.vad import get_vad, weights_path; "
            "get_vad(); assert 'silero_vad' not in sys.modules and 'torchaudio' not in sys.modules; "
            "assert torch.get_num_threads() == 2; print(weights_path())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith("silero_vad/data/silero_vad.jit") and Path(out).is_file()


@needs_espeak
def test_streaming_in_chunks_gives_the_whole_files_share(speech):
    """A long signal fed in pieces (the LSTM state, context and partial frames carried over) gets the share
    of the whole signal at once; pieces that are not whole frames, and another sample rate, too."""
    rng = np.random.default_rng(5)
    parts = []
    for i in range(6):  # about 75 s: speech, noise, chords, silence in turn
        parts += [speech * (0.5 + 0.1 * i), pink_noise(3.0, seed=i), chords(2.0), np.zeros(SR, np.float32)]
    x = np.concatenate(parts) + (1e-4 * rng.standard_normal(sum(map(len, parts)))).astype(np.float32)
    whole = speech_share(x, SR)
    assert 0.3 < whole < 0.8
    for piece_seconds in (4.0, 1.3, 0.45):
        stream = SpeechStream(SR)
        step = int(piece_seconds * SR)
        counts = [stream.feed(x[i:i + step]) for i in range(0, len(x), step)]
        counts[-1] += stream.finish()
        # ~2340 frames of 32 ms: a frame whose probability lies within rounding (~1e-4) of the threshold may
        # flip between the two runs (4e-4 each); 1e-3 allows two, a state dropped at a piece edge costs more
        assert stream.share == pytest.approx(whole, abs=1e-3), piece_seconds
        # The pieces' counts add up to the total (runs across pieces credited where their frames were).
        assert sum(c.speech_seconds for c in counts) == pytest.approx(stream.total.speech_seconds, abs=1e-9)
        assert sum(c.seconds for c in counts) == pytest.approx(len(x) / SR, abs=FRAME / SR)
    x22 = resample(x, SR, 22050)
    stream = SpeechStream(22050)
    for i in range(0, len(x22), 88200):  # 4 s pieces, each resampled on its own
        stream.feed(x22[i:i + 88200])
    stream.finish()
    assert stream.share == pytest.approx(whole, abs=0.01)


# ------------------------------------------------------------------------------------------ detect and serve

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return crafted_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory, speech) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    paths = {"speech": write(folder / "speech.wav", speech)}
    for name, make in NON_SPEECH.items():
        paths[name] = write(folder / f"{name}.wav", make(6.0))
    return paths


def test_detect_json_reports_no_speech_for_noise_hum_and_music(clips, model_dir, capsys):
    rc = main(["detect", *map(str, clips.values()), "--model", str(model_dir), "--format", "json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert rc == 0  # no-speech is not an error
    files = {Path(f["path"]).stem: f for f in report["files"]}
    assert files["speech"]["verdict"] in ("bonafide", "spoof") and files["speech"]["speech_share"] > 0.5
    assert files["speech"]["score"] is not None and files["speech"]["note"] is None
    assert all(c["speech_share"] is not None for c in files["speech"]["chunks"])
    for name in NON_SPEECH:
        f = files[f"{name}"]
        assert f["verdict"] == "no-speech" and f["score"] is None and f["p_spoof"] is None, name
        assert f["speech_share"] < DEFAULT_MIN_SPEECH_SHARE and "not scored" in f["note"]
        assert [c["verdict"] for c in f["chunks"]] == ["no-speech", "no-speech"]  # 6 s: two chunks
    assert report["summary"]["no-speech"] == 4 and report["summary"]["files"] == 5
    assert "4 of 5 file(s) hold too little speech" in captured.err


def test_score_without_speech_scores_noise_with_a_note(clips, model_dir, capsys):
    rc = main(["detect", str(clips["white-noise"]), "--model", str(model_dir), "--format", "json",
               "--score-without-speech"])
    (f,) = json.loads(capsys.readouterr().out)["files"]
    assert rc == 0 and f["verdict"] in ("bonafide", "spoof") and f["score"] is not None
    assert f["speech_share"] < DEFAULT_MIN_SPEECH_SHARE and f["note"].startswith("scored although only")


def test_long_file_streamed_in_chunks_has_the_whole_files_share(tmp_path, speech, model_dir):
    """detect reads a long file chunk by chunk, running the VAD on each chunk as it is read: the file's share
    is the share of the whole signal at once, and each chunk reports its own."""
    x = np.concatenate([speech, white_noise(20.0), speech, hum_then_silence(16.0)] * 3)
    path = write(tmp_path / "long.wav", x)
    loaded = load_detection_model(model_dir, "cpu")
    (result,) = detect_files(loaded, [str(path)], DetectOptions(chunk_seconds=4.0, show_progress=False))
    assert result.speech_share == pytest.approx(speech_share(x, SR), abs=2e-3)
    shares = [c["speech_share"] for c in result.chunks]
    weights = [c["end"] - c["start"] for c in result.chunks]
    assert np.average(shares, weights=weights) == pytest.approx(result.speech_share, abs=2e-3)
    assert max(shares) > 0.8 and min(shares) == 0.0  # speech chunks and noise chunks told apart
    assert result.verdict in ("bonafide", "spoof")  # enough speech overall: scored


@pytest.fixture(scope="module")
def gated_client(model_dir):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from spoofrl.serve import ServeLimits, create_app
    loaded = load_detection_model(model_dir, "cpu")
    with TestClient(create_app(loaded, ServeLimits(max_seconds=60.0), allowed_hosts=["testserver"])) as c:
        yield c


def _post(client, path: Path, **params):
    return client.post("/api/detect", files={"file": (path.name, path.read_bytes(), "audio/wav")}, params=params)


def test_api_answers_no_speech_and_scores_anyway_on_request(gated_client, clips):
    health = gated_client.get("/healthz").json()["limits"]
    assert health["min_speech_share"] == DEFAULT_MIN_SPEECH_SHARE and health["score_without_speech"] is False
    for name in NON_SPEECH:
        resp = _post(gated_client, clips[name])
        assert resp.status_code == 200, resp.text  # an answer, not an error
        f = resp.json()["files"][0]
        assert f["verdict"] == "no-speech" and f["score"] is None and f["speech_share"] < DEFAULT_MIN_SPEECH_SHARE
        assert resp.json()["summary"]["no-speech"] == 1
    anyway = _post(gated_client, clips["music-chords"], score_without_speech="true").json()
    f = anyway["files"][0]
    assert f["verdict"] in ("bonafide", "spoof") and f["score"] is not None and "scored although" in f["note"]
    assert anyway["settings"]["score_without_speech"] is True
    spoken = _post(gated_client, clips["speech"]).json()["files"][0]
    assert spoken["verdict"] in ("bonafide", "spoof") and spoken["speech_share"] > 0.5


def test_server_wide_score_without_speech_can_be_refused_per_request(model_dir, clips):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from spoofrl.serve import ServeLimits, create_app
    loaded = load_detection_model(model_dir, "cpu")
    app = create_app(loaded, ServeLimits(score_without_speech=True, min_speech_share=0.1),
                     allowed_hosts=["testserver"])
    with TestClient(app) as c:
        assert _post(c, clips["pink-noise"]).json()["files"][0]["verdict"] in ("bonafide", "spoof")
        gated = _post(c, clips["pink-noise"], score_without_speech="false").json()
        assert gated["files"][0]["verdict"] == "no-speech" and gated["settings"]["min_speech_share"] == 0.1


# ------------------------------------------------------------------------------------------ the web page
# In a real browser, with test_serve_browser's chromium fixture (`browser`; it fails without chromium unless
# SPOOFRL_ALLOW_NO_BROWSER=1) and a server with the speech gate on.

from test_serve_browser import browser, free_port, require_module, serve_in_thread, upload_and_wait  # noqa: F401


@pytest.fixture(scope="module")
def gated_server_url(model_dir):
    uvicorn = require_module("uvicorn")
    from spoofrl.serve import ServeLimits, create_app
    loaded = load_detection_model(model_dir, "cpu")
    port = free_port()
    yield from serve_in_thread(uvicorn, create_app(loaded, ServeLimits(max_seconds=60)), port)


@pytest.mark.browser
def test_page_shows_no_speech_detected_instead_of_a_verdict(browser, gated_server_url, clips):  # noqa: F811
    from selenium.webdriver.common.by import By
    verdict = upload_and_wait(browser, gated_server_url, clips["white-noise"])
    assert verdict == "no speech detected (speech share 0.0%)"
    assert browser.find_element(By.ID, "verdict").get_attribute("class") == "no-speech"
    assert browser.find_element(By.ID, "score").text == "-"
    assert "not scored" in browser.find_element(By.ID, "file-note").text
    segments = browser.find_elements(By.CSS_SELECTOR, "#timeline-bar div")
    assert [s.get_attribute("class") for s in segments] == ["seg-no-speech", "seg-no-speech"]
    assert upload_and_wait(browser, gated_server_url, clips["speech"]) in ("bonafide", "spoof")
    assert float(browser.find_element(By.ID, "speech-share").text.rstrip("%")) > 50
    assert browser.find_element(By.ID, "file-note").text == ""
