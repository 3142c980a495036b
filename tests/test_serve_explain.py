"""`POST /api/explain` of `spoofrl serve` and the page's Explain UI: the `spoofrl explain --json` report of one
upload (claims with their cited evidence), per-file errors, the missing-explainer error, the page's hooks.

The explainer is the bundled one (a tiny SmallAlm, loaded in well under a second); as in
tests/test_explain_cli.py its `generate` is scripted to write the evidence-grounded rationale of the clip it
is handed (spoofrl.explain.write_rationale), so the claims come out true and cite measured evidence."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from test_detect import crafted_model_dir
from test_explain_cli import script_generate

from spoofrl.detect import load_detection_model
from spoofrl.detect.explainer import default_explainer_path
from spoofrl.serve import ServeLimits, create_app

SR = 16000
pytestmark = pytest.mark.skipif(not (default_explainer_path() / "alm.json").is_file(),
                                reason="no bundled explainer in this checkout")


def wav_bytes(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def voiced(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A buzzy harmonic tone with a little noise and a pause: something every evidence measure can read."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 10 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.2 + 0.005 * rng.standard_normal(len(t))
    x[int(0.9 * SR):int(1.1 * SR)] *= 0.01
    return x


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_detection_model(crafted_model_dir(tmp_path_factory.mktemp("det")), "cpu")


@pytest.fixture
def scripted(monkeypatch):
    """generate replaced by the rationale writer, with the bundled explainer's profile."""
    script_generate(monkeypatch, default_explainer_path() / "evidence_reference.json")


def make_client(loaded, **kw):
    limits = ServeLimits(max_upload_mb=1.0, max_seconds=20.0, score_without_speech=True)
    return TestClient(create_app(loaded, limits, allowed_hosts=["testserver"], explainer_device="cpu", **kw))


def post(client, content: bytes, name: str = "clip.wav", **params):
    return client.post("/api/explain", files={"file": (name, content, "application/octet-stream")}, params=params)


def test_explain_returns_claims_with_their_cited_evidence(loaded, scripted):
    with make_client(loaded) as client:
        r = post(client, wav_bytes(voiced()), "voice.wav", spectrogram="true")
        assert r.status_code == 200, r.text
        report = r.json()
        assert set(report) >= {"model", "settings", "files", "summary"}
        assert report["model"]["path"] is None          # no server paths
        f = report["files"][0]
        assert f["path"] == "voice.wav" and f["error"] is None
        assert f["verdict"] == "spoof" and isinstance(f["score"], float)
        assert f["rationale"] and f["claims_checked"] and f["n_claims"] == len(f["claims"]) > 0
        assert {c["verdict"] for c in f["claims"]} <= {"true", "false", "unverifiable"}
        cited = [item for c in f["claims"] for item in c["evidence"]]
        assert cited and all("band_hz" in item and "span_s" in item for item in cited)
        assert any(item["band_hz"] or item["span_s"] for item in cited)
        assert f["spectrogram_png"].startswith("data:image/png;base64,")
        ax = f["spectrogram_axes"]
        assert 0 <= ax["left"] < ax["right"] <= 1 and 0 <= ax["top"] < ax["bottom"] <= 1
        assert ax["hz"] == [0.0, SR / 2] and ax["seconds"][1] == pytest.approx(2.0, abs=0.1)
        assert report["time_kinds"]
        # The explainer is loaded once: a second request reuses it.
        first = client.app.state.explainer.get()
        assert post(client, wav_bytes(voiced(seed=1))).status_code == 200
        assert client.app.state.explainer.get() is first


def test_non_audio_upload_is_refused_like_detect(loaded, scripted):
    with make_client(loaded) as client:
        r = post(client, b"this is not audio at all " * 40, "notes.wav")
        # one contract for both endpoints: a request whose one file cannot be processed is an error status
        assert r.status_code == 415 and r.json()["error"] == "not_audio", r.text
        assert "/tmp" not in r.text and "spoofrl-serve" not in r.text
        # Request-level problems keep the detect endpoint's errors.
        empty = post(client, b"", "empty.wav")
        assert empty.status_code == 422 and empty.json()["error"] == "empty_upload"
        big = post(client, b"\0" * 1_100_000, "big.wav")
        assert big.status_code == 413 and big.json()["error"] == "upload_too_large"


def test_missing_explainer_is_a_clear_json_error(loaded, tmp_path, monkeypatch):
    import spoofrl.detect.explainer as ex
    monkeypatch.setattr(ex, "default_explainer_path", lambda: tmp_path / "none")
    with make_client(loaded) as client:
        r = post(client, wav_bytes(voiced()))
        assert r.status_code == 503
        body = r.json()
        assert body["error"] == "no_explainer" and "explainer" in body["detail"]
        assert "--explainer" in body["detail"]
        assert client.post("/api/detect", files={"file": ("c.wav", wav_bytes(voiced()))}).status_code == 200
    folder = tmp_path / "not-an-explainer"
    folder.mkdir()
    with make_client(loaded, explainer_dir=folder) as client:
        r = post(client, wav_bytes(voiced()))
        assert r.status_code == 503 and r.json()["error"] == "no_explainer"
        assert str(tmp_path) not in r.json()["detail"]


def test_explainer_dir_option_loads_that_folder(loaded, scripted, tmp_path):
    folder = shutil.copytree(default_explainer_path(), tmp_path / "my-explainer")
    with make_client(loaded, explainer_dir=folder) as client:
        r = post(client, wav_bytes(voiced()))
        assert r.status_code == 200, r.text
        assert r.json()["model"]["name"] == "my-explainer" and r.json()["model"]["path"] is None


def test_page_has_the_explain_ui(loaded):
    with make_client(loaded) as client:
        html = client.get("/").text
    for hook in ('id="explain"', 'id="explain-panel"', 'id="rationale"', 'id="claims"', 'id="explain-overlay"',
                 'id="explain-spectrogram"', "/api/explain?spectrogram=true", "claim-true", "claim-false",
                 "claim-unverifiable", "band_hz", "span_s", "mouseenter"):
        assert hook in html, hook
    assert "<script src" not in html and "cdn" not in html.lower()
