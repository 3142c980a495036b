"""`spoofrl serve` API: same JSON as `detect`, limits and clean 4xx errors, concurrent requests."""
from __future__ import annotations

import base64
import io
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_detect import crafted_model_dir, hiss, low_tone  # noqa: E402

from spoofrl.detect import DetectOptions, detect_files, load_detection_model, report_dict  # noqa: E402
from spoofrl.serve import ServeLimits, create_app  # noqa: E402

SR = 16000


def wav_bytes(x: np.ndarray, sr: int = SR, channels: int = 1, **kw) -> bytes:
    buf = io.BytesIO()
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(buf, data, sr, format="WAV", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_detection_model(crafted_model_dir(tmp_path_factory.mktemp("model")), "cpu")


@pytest.fixture(scope="module")
def client(loaded):
    limits = ServeLimits(max_upload_mb=1.0, max_seconds=20.0, chunk_seconds=4.0)
    with TestClient(create_app(loaded, limits)) as c:
        yield c


def post(client, content: bytes, name: str = "clip.wav", **params):
    return client.post("/api/detect", files={"file": (name, content, "application/octet-stream")}, params=params)


def test_healthz_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"]["score_type"] == "log-odds"
    assert health["limits"]["max_seconds"] == 20.0
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert 'id="file"' in html and "MediaRecorder" in html and 'id="verdict"' in html
    # No CDN: every src/href is relative (the service may run without internet).
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)


def test_detect_returns_the_same_json_as_the_cli_report(client, loaded, tmp_path):
    x = np.concatenate([low_tone(8.0), hiss(4.0)])
    path = tmp_path / "mixed.wav"
    sf.write(str(path), x, SR)
    resp = post(client, path.read_bytes(), name="mixed.wav")
    assert resp.status_code == 200
    got = resp.json()
    opts = DetectOptions(chunk_seconds=4.0, max_seconds=20.0, show_progress=False)
    (result,) = detect_files(loaded, [str(path)], opts)
    result.path = "mixed.wav"
    expected = report_dict(loaded, [result], opts)
    assert got == expected
    assert [c["verdict"] for c in got["files"][0]["chunks"]] == ["bonafide", "bonafide", "spoof"]


def test_spectrogram_is_a_png_data_url(client):
    resp = post(client, wav_bytes(low_tone(1.0)), spectrogram="true")
    url = resp.json()["files"][0]["spectrogram_png"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_stereo_48k_and_mulaw_uploads_are_scored(client):
    for content in (wav_bytes(low_tone(1.0, sr=48000), sr=48000, channels=2),
                    wav_bytes(low_tone(1.0, sr=8000), sr=8000, subtype="ULAW")):
        resp = post(client, content)
        assert resp.status_code == 200
        assert resp.json()["files"][0]["verdict"] == "bonafide"


@pytest.mark.parametrize("content, status, code, words", [
    (b"this is plain text, not audio " * 20, 415, "not_audio", "not a readable audio file"),
    (b"", 422, "empty_upload", "empty"),
    (wav_bytes(np.zeros(SR, np.float32)), 422, "cannot_score", "silent"),
    (wav_bytes(np.zeros(0, np.float32)), 422, "cannot_score", "no samples"),
    (wav_bytes(low_tone(25.0) * 0.1, subtype="PCM_U8"), 422, "audio_too_long", "over the limit of 20 s"),
    (wav_bytes(low_tone(40.0)), 413, "upload_too_large", "limit of 1 MB"),
], ids=["text", "empty", "silent", "zero-frames", "too-long", "too-large"])
def test_bad_uploads_get_clear_json_errors(client, content, status, code, words):
    resp = post(client, content, name="bad.wav")
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code and words in body["detail"]
    assert "spoofrl-serve-" not in body["detail"]  # the server's temp path never leaks


def test_corrupt_and_truncated_uploads_are_422_with_the_reason(client, tmp_path):
    full = wav_bytes(low_tone(4.0))
    truncated = post(client, full[: len(full) // 2], name="cut.wav")
    assert truncated.status_code == 422 and truncated.json()["error"] == "cannot_score"
    assert truncated.json()["detail"].startswith("cut.wav: truncated")
    flac = tmp_path / "a.flac"
    sf.write(str(flac), low_tone(9.0), SR)
    data = bytearray(flac.read_bytes())
    data[len(data) // 2:] = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 2, np.uint8).tobytes()
    corrupt = post(client, bytes(data), name="corrupt.flac")
    assert corrupt.status_code == 422 and corrupt.json()["error"] == "cannot_score"
    assert "corrupt" in corrupt.json()["detail"] and "\n" not in corrupt.json()["detail"]


def test_unknown_paths_and_methods_use_the_same_error_shape(client):
    wrong_method = client.get("/api/detect")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "not_found", "detail": "Not Found"}


def test_compressed_upload_is_probed_without_decoding_it_whole(client, tmp_path):
    """m4a is decoded by ffmpeg only: a short one is scored, a long one (small on disk) refused by duration."""
    import shutil
    import subprocess
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    for seconds in (2.0, 45.0):
        wav = tmp_path / f"{seconds:g}.wav"
        sf.write(str(wav), low_tone(seconds), SR)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "aac", "-b:a", "24k",
                        str(wav.with_suffix(".m4a"))], check=True)
    short = post(client, (tmp_path / "2.m4a").read_bytes(), name="short.m4a")
    assert short.status_code == 200 and short.json()["files"][0]["verdict"] == "bonafide"
    long = post(client, (tmp_path / "45.m4a").read_bytes(), name="long.m4a")
    assert (tmp_path / "45.m4a").stat().st_size < 1e6  # under the upload limit: refused for its duration
    assert long.status_code == 422 and long.json()["error"] == "audio_too_long"
    assert "over the limit of 20 s" in long.json()["detail"]


def test_missing_file_field_is_a_422(client):
    resp = client.post("/api/detect", data={"other": "x"})
    assert resp.status_code == 422 and resp.json()["error"] == "bad_request" and "file" in resp.json()["detail"]
    bad_flag = post(client, wav_bytes(low_tone(1.0)), spectrogram="maybe")
    assert bad_flag.status_code == 422 and bad_flag.json()["error"] == "bad_request"
    assert "spectrogram" in bad_flag.json()["detail"] and "multipart" not in bad_flag.json()["detail"]


def test_chunked_upload_without_length_is_cut_at_the_limit(client):
    def body():
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        yield boundary
        for _ in range(40):  # 40 x 64 KB = 2.6 MB > 1 MB limit, no Content-Length header
            yield b"\0" * 65536
        yield b"\r\n--xyz--\r\n"
    resp = client.post("/api/detect", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert resp.status_code == 413 and resp.json()["error"] == "upload_too_large"


def test_concurrent_requests_each_get_their_own_result(client):
    # Different lengths and content: any mix-up shows as a wrong duration, verdict or score.
    clips = []
    for i in range(8):
        seconds = 1.0 + 0.5 * i
        x = low_tone(seconds, seed=i) if i % 2 == 0 else hiss(seconds, seed=i)
        clips.append((f"clip{i}.wav", wav_bytes(x * (0.5 + 0.05 * i)), seconds, "bonafide" if i % 2 == 0 else "spoof"))
    serial = {name: post(client, data, name=name).json()["files"][0]["score"] for name, data, _, _ in clips}

    def request(clip):
        name, data, _, _ = clip
        return name, post(client, data, name=name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(request, clips * 2))
    for (name, resp), (_, _, seconds, verdict) in zip(answers, clips * 2):
        assert resp.status_code == 200
        f = resp.json()["files"][0]
        assert f["path"] == name and f["duration"] == pytest.approx(seconds, abs=1e-3)
        assert f["verdict"] == verdict and f["score"] == pytest.approx(serial[name], abs=1e-4)


@pytest.mark.parametrize("option, words", [
    (["--port", "0"], "--port must be 1-65535"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be a positive number"),
    (["--max-seconds", "inf"], "--max-seconds must be a positive number"),
    (["--chunk-seconds", "0.1"], "--chunk-seconds must be between 0.5 and 600"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
])
def test_serve_command_refuses_bad_options_in_one_line(capsys, option, words):
    from spoofrl.cli import main
    assert main(["serve", *option]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
