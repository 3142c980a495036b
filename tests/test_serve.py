"""`spoofrl serve` API: same JSON as `detect`, limits and clean 4xx errors, concurrent requests; Host allow
list, slow-client timeouts and the analysis gate on a live uvicorn server; temp folder cleanup; no server
paths, tracebacks or NaN in answers."""
from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_detect import crafted_model_dir, hiss, low_tone, score_tol  # noqa: E402

from spoofrl.detect import DetectOptions, detect_files, load_detection_model, report_dict  # noqa: E402
from spoofrl.serve import ServeLimits, create_app  # noqa: E402

SR = 16000


def wav_bytes(x: np.ndarray, sr: int = SR, channels: int = 1, **kw) -> bytes:
    buf = io.BytesIO()
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(buf, data, sr, format="WAV", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(loaded):
    # The crafted model's clips (tones, hiss) hold no speech: this server scores them anyway (the speech gate
    # is tested with `gated` below).
    limits = ServeLimits(max_upload_mb=1.0, max_seconds=20.0, chunk_seconds=4.0, score_without_speech=True)
    # TestClient sends "Host: testserver": allowed explicitly, as `spoofrl serve` allows its --host names.
    with TestClient(create_app(loaded, limits, allowed_hosts=["testserver"])) as c:
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
    opts = DetectOptions(chunk_seconds=4.0, max_seconds=20.0, show_progress=False, score_without_speech=True)
    (result,) = detect_files(loaded, [str(path)], opts)
    result.path = "mixed.wav"
    expected = report_dict(loaded, [result], opts)
    # The same report, except that the server names the model's folder instead of giving its path.
    assert got["model"] == {k: v for k, v in expected["model"].items() if k != "path"}
    assert {k: v for k, v in got.items() if k != "model"} == {k: v for k, v in expected.items() if k != "model"}
    assert got == report_dict(loaded, [result], opts, public=True)
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
        # the same clip scored in other company: rounding of the forward and of the 6 written digits
        # (score_tol, < 1e-3); clips of one kind score >= 0.03 apart (and their durations differ)
        assert f["verdict"] == verdict and f["score"] == pytest.approx(serial[name], abs=score_tol(serial[name]))


@pytest.mark.parametrize("option, words", [
    (["--port", "0"], "--port must be 1-65535"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be a positive number"),
    (["--max-seconds", "inf"], "--max-seconds must be a positive number"),
    (["--chunk-seconds", "0.1"], "--chunk-seconds must be between 0.5 and 600"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
    (["--min-speech-share", "-0.1"], "--min-speech-share must be between 0 and 1"),
    (["--max-concurrent", "0"], "--max-concurrent must be >= 1"),
    (["--queue", "-1"], "--queue must be >= 0"),
    (["--header-timeout", "0"], "--header-timeout must be a positive number"),
    (["--body-timeout", "nan"], "--body-timeout must be a positive number"),
    (["--max-connections", "0"], "--max-connections must be >= 1"),
    (["--allow-host", "bad/name"], "--allow-host 'bad/name': not a host name"),
])
def test_serve_command_refuses_bad_options_in_one_line(capsys, option, words):
    from spoofrl.cli import main
    assert main(["serve", *option]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


# --- Host header allow list (DNS rebinding) ---------------------------------------------------------------

def test_only_configured_host_names_are_answered(loaded):
    from spoofrl.serve.hosts import allowed_host_names
    with TestClient(create_app(loaded)) as local_only:  # no allowed_hosts: the loopback names only
        for host in ("localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST."):
            assert local_only.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("testserver", "evil.example", "evil.example:8000", "127.0.0.1.evil.example", "local host"):
            resp = local_only.get("/healthz", headers={"host": host})
            assert resp.status_code == 400, host
            assert resp.json()["error"] == "bad_host" and "--allow-host" in resp.json()["detail"]
        # Refused before the upload is read or scored.
        refused = post(local_only, wav_bytes(low_tone(1.0)))  # TestClient's Host: testserver
        assert refused.status_code == 400 and refused.json()["error"] == "bad_host"
    with TestClient(create_app(loaded, allowed_hosts=["detector.lan"]), base_url="http://detector.lan:8080") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"host": "other.lan:8080"}).status_code == 400
    with TestClient(create_app(loaded, allowed_hosts=["*"])) as anything:
        assert anything.get("/healthz", headers={"host": "whatever.example"}).status_code == 200
    assert socket.gethostname() in allowed_host_names("0.0.0.0") and socket.gethostname() in allowed_host_names("::")
    assert allowed_host_names("10.1.2.3", ["a.lan"])[-2:] == ["10.1.2.3", "a.lan"]
    assert socket.gethostname() not in allowed_host_names("127.0.0.1") or socket.gethostname() == "localhost"


def test_serve_command_passes_hosts_timeouts_and_limits(loaded, monkeypatch, tmp_path):
    """`spoofrl serve` wiring: the app answers --host / --allow-host names, the server gets the timeouts."""
    import spoofrl.detect
    import spoofrl.serve.server as server_module
    from spoofrl.cli import main
    captured = {}

    class FakeServer:
        started = True

        def run(self):
            captured["ran"] = True

    def fake_build_server(app, host, port, options=None, log_level="warning"):
        captured.update(app=app, host=host, port=port, options=options)
        return FakeServer()

    monkeypatch.setattr(server_module, "build_server", fake_build_server)
    monkeypatch.setattr(spoofrl.detect, "load_detection_model", lambda *a, **k: loaded)
    rc = main(["serve", "--host", "0.0.0.0", "--port", str(free_port()), "--allow-host", "detector.lan",
               "--allow-host", "10.9.8.7", "--header-timeout", "3", "--body-timeout", "4", "--keep-alive", "6",
               "--max-connections", "9", "--max-concurrent", "1", "--queue", "2", "--min-speech-share", "0.2",
               "--score-without-speech"])
    assert rc == 0 and captured["ran"]
    options = captured["options"]
    assert (options.header_timeout, options.keep_alive, options.max_connections) == (3.0, 6.0, 9)
    with TestClient(captured["app"]) as c:
        for host in ("detector.lan", "10.9.8.7:8000", socket.gethostname(), "localhost"):
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        assert c.get("/healthz", headers={"host": "evil.example"}).status_code == 400
        limits = c.get("/healthz", headers={"host": "localhost"}).json()["limits"]
        assert (limits["max_concurrent"], limits["queue"]) == (1, 2)
        assert (limits["min_speech_share"], limits["score_without_speech"]) == (0.2, True)


# --- slow clients, timeouts and the analysis gate, on a live uvicorn server ------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app, **options):
    """`app` on 127.0.0.1 through build_server (the server `spoofrl serve` runs), in a thread."""
    pytest.importorskip("uvicorn")
    from spoofrl.serve.server import ServerOptions, build_server
    port = free_port()
    server = build_server(app, "127.0.0.1", port, ServerOptions(**options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_close(sock: socket.socket, limit: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes the connection, and after how long (None: still open)."""
    start = time.monotonic()
    sock.settimeout(0.1)
    data = b""
    while time.monotonic() - start < limit:
        try:
            block = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, time.monotonic() - start
        if not block:
            return data, time.monotonic() - start
        data += block
    return data, None


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head + Content-Length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(65536)
        assert block, "connection closed before a response"
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        block = sock.recv(65536)
        assert block, "connection closed mid-response"
        body += block
    return head + b"\r\n\r\n" + body


def test_incomplete_request_head_is_closed_after_the_header_timeout(loaded):
    with live_server(create_app(loaded), header_timeout=1.0, keep_alive=30.0) as port:
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: the head never ends
        silent = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        closed_while_trickling = False
        while time.monotonic() - start < 4:  # one header byte every 0.2 s does not extend the deadline
            try:
                trickle.sendall(b"X")
            except OSError:
                closed_while_trickling = True
                break
            time.sleep(0.2)
        for sock in (partial, silent):
            data, after = wait_for_close(sock, 5.0)
            assert after is not None and data == b"", "the server kept a connection without a complete head"
            sock.close()
        _, after = wait_for_close(trickle, 1.0)
        assert closed_while_trickling or after is not None
        trickle.close()
        # A complete request on a keep-alive connection, then an idle pause longer than the header timeout
        # (the keep-alive timeout, 30 s here, governs idle time) and a second request: both answered.
        with socket.create_connection(("127.0.0.1", port)) as ok:
            request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            ok.settimeout(5)
            ok.sendall(request)
            first = read_response(ok)
            time.sleep(1.5)
            ok.sendall(request)
            second = read_response(ok)
        assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")


def test_stalled_upload_body_gets_408_and_is_closed(loaded):
    with live_server(create_app(loaded, ServeLimits(body_timeout=1.0)), header_timeout=10.0) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            sock.sendall(b"POST /api/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 500000\r\n\r\n"
                         + part + b"\0" * 4000)  # then the client stalls
            data, after = wait_for_close(sock, 6.0)
    assert after is not None, "a stalled body kept the connection open"
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "body_timeout"


def test_busy_server_answers_429_when_every_analysis_slot_is_taken(loaded, monkeypatch):
    import httpx

    import spoofrl.serve.app as app_module
    real_detect_one = app_module.detect_one
    entered, release = threading.Event(), threading.Event()

    def slow_detect_one(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real_detect_one(*args, **kwargs)

    monkeypatch.setattr(app_module, "detect_one", slow_detect_one)
    app = create_app(loaded, ServeLimits(max_concurrent=1, queue=0, score_without_speech=True))
    files = {"file": ("a.wav", wav_bytes(low_tone(1.0)), "audio/wav")}
    with live_server(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(http.post, "/api/detect", files=files)
            assert entered.wait(30)  # the first analysis holds the only slot
            second = http.post("/api/detect", files=files)
            release.set()
            first = first.result()
        assert second.status_code == 429 and second.json()["error"] == "busy"
        assert int(second.headers["retry-after"]) > 0
        assert first.status_code == 200 and first.json()["files"][0]["verdict"] == "bonafide"
        assert http.post("/api/detect", files=files).status_code == 200  # the slot is free again
    assert app.state.gate.admitted == 0 and app.state.gate.running == 0


def test_analysis_gate_queues_then_refuses():
    from spoofrl.serve.limits import AnalysisGate, Busy
    gate = AnalysisGate(max_concurrent=1, queue=1)
    first_running, release = threading.Event(), threading.Event()
    order = []

    def first():
        first_running.set()
        assert release.wait(10)
        order.append("first")

    def request(fn):
        with gate.admit():
            gate.run(fn)

    threads = [threading.Thread(target=request, args=(first,))]
    threads[0].start()
    assert first_running.wait(10)
    threads.append(threading.Thread(target=request, args=(lambda: order.append("queued"),)))
    threads[1].start()
    deadline = time.monotonic() + 10
    while gate.admitted < 2:  # the second is admitted and waits for the only slot
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert gate.running == 1
    with pytest.raises(Busy):  # one running + one waiting: a third is refused at once
        with gate.admit():
            pass
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "queued"] and gate.admitted == 0 and gate.running == 0
    gate.close()


# --- temp folders ----------------------------------------------------------------------------------------

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_start_removes_only_temp_folders_of_dead_servers(loaded, tmp_path, monkeypatch):
    import tempfile

    from spoofrl.serve.tempdirs import process_start_time, remove_stale_temp_dirs
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    me = os.getpid()
    stale = tmp_path / f"spoofrl-serve-{dead_pid()}-abcd1234"
    live = tmp_path / f"spoofrl-serve-{me}-efgh5678"
    reused = tmp_path / f"spoofrl-serve-{me}-ijkl9012"  # our pid, but recorded for an older process
    live_recorded = tmp_path / f"spoofrl-serve-{me}-mnop3456"
    legacy_old, legacy_new = tmp_path / "spoofrl-serve-k3j2h1g0", tmp_path / "spoofrl-serve-z9y8x7w6"
    unrelated = tmp_path / "something-else-123"
    for folder in (stale, live, reused, live_recorded, legacy_old, legacy_new, unrelated):
        (folder / "req-1").mkdir(parents=True)
        (folder / "req-1" / "upload.wav").write_bytes(b"x")
    (reused / "owner").write_text(f"{me} 1\n")
    (live_recorded / "owner").write_text(f"{me} {process_start_time(me)}\n")
    two_hours_ago = time.time() - 7200
    os.utime(legacy_old, (two_hours_ago, two_hours_ago))
    create_app(loaded)  # the start of a server
    assert not stale.exists() and not legacy_old.exists()
    if process_start_time(me) is not None:  # Linux: a reused pid is recognised by its start time
        assert not reused.exists()
    assert live.exists() and live_recorded.exists() and legacy_new.exists() and unrelated.exists()
    assert remove_stale_temp_dirs(tmp_path) == []  # nothing else to remove


def test_requests_use_one_parent_folder_named_with_the_pid(loaded, tmp_path, monkeypatch):
    import tempfile

    import spoofrl.serve.app as app_module
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_detect_one = app_module.detect_one
    seen = []

    def recording_detect_one(loaded_, path, opts):
        seen.append(Path(path))
        return real_detect_one(loaded_, path, opts)

    monkeypatch.setattr(app_module, "detect_one", recording_detect_one)
    with TestClient(create_app(loaded, allowed_hosts=["testserver"])) as c:
        for _ in range(2):
            assert post(c, wav_bytes(low_tone(1.0))).status_code == 200
        parents = {p.parent.parent for p in seen}
        assert len(parents) == 1 and len({p.parent for p in seen}) == 2
        (parent,) = parents
        assert parent.parent == tmp_path and re.fullmatch(rf"spoofrl-serve-{os.getpid()}-\w+", parent.name)
        assert [p.name for p in parent.iterdir()] == ["owner"]  # request folders are gone
    assert not parent.exists()  # removed at shutdown


# --- no server paths, tracebacks or NaN in answers -------------------------------------------------------

def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")
    return json.loads(text, parse_constant=refuse)


def test_healthz_and_reports_name_the_model_without_server_paths(tmp_path):
    import shutil

    model = tmp_path / "models" / "my-run"
    shutil.copytree(crafted_model_dir(tmp_path / "crafted"), model)
    manifest = tmp_path / "data" / "demo" / "manifest.csv"
    with (model / "config.yaml").open("a") as f:
        f.write(f"data:\n  manifest: {manifest}\n")
    loaded = load_detection_model(model, "cpu")
    assert str(manifest) in loaded.info()["trained_on"]  # the local report keeps the path
    tmp_names = {str(tmp_path), str(tmp_path.resolve()), str(Path(tempfile_dir()).resolve())}
    with TestClient(create_app(loaded, allowed_hosts=["testserver"])) as c:
        health = c.get("/healthz")
        report = post(c, wav_bytes(low_tone(2.0)), spectrogram="true")
        failed = post(c, wav_bytes(np.zeros(SR, np.float32)))
    assert report.status_code == 200 and failed.status_code == 422
    for text in (health.text, report.text, failed.text):
        assert not any(name in text for name in tmp_names), text[:500]
        assert "/" + tmp_path.parts[1] + "/" not in text.replace("\\/", "/")
    info = health.json()["model"]
    assert "path" not in info and info["folder"] == "my-run" and info["trained_on"] == "manifest demo/manifest.csv"
    assert report.json()["model"] == info and report.json()["files"][0]["path"] == "clip.wav"


def tempfile_dir() -> str:
    import tempfile
    return tempfile.gettempdir()


def test_unexpected_errors_are_json_500_without_a_traceback(client, loaded, monkeypatch):
    import spoofrl.serve.app as app_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom in /srv/secret/place.py")

    monkeypatch.setattr(app_module, "detect_one", broken)
    resp = post(client, wav_bytes(low_tone(1.0)))
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["error"] == "internal_error" and "RuntimeError" in body["detail"]
    assert "Traceback" not in resp.text and "/srv/secret" not in resp.text
    # Outside the detect handler too (Starlette's last-resort handler), e.g. /healthz.
    monkeypatch.setattr(type(loaded), "info", broken)
    app = create_app(loaded, allowed_hosts=["testserver"])
    with TestClient(app, raise_server_exceptions=False) as c:
        health = c.get("/healthz")
    assert health.status_code == 500 and health.json()["error"] == "internal_error"
    assert "Traceback" not in health.text and "/srv/secret" not in health.text


@pytest.mark.parametrize("where", ["file", "chunk"])
def test_non_finite_scores_are_422_and_json_never_holds_nan(client, monkeypatch, where):
    import spoofrl.serve.app as app_module
    from spoofrl.detect import FileResult
    nan = float("nan")

    def nan_detect_one(loaded_, path, opts):
        if where == "file":
            return FileResult(path=path, duration=1.0, score=nan, p_spoof=nan, verdict="spoof")
        chunk = {"start": 0.0, "end": 4.0, "score": 1.0, "p_spoof": 0.2, "verdict": "bonafide"}
        return FileResult(path=path, duration=8.0, score=0.5, p_spoof=0.4, verdict="bonafide",
                          chunks=[chunk, {**chunk, "start": 4.0, "end": 8.0, "score": math.inf, "p_spoof": nan}])

    monkeypatch.setattr(app_module, "detect_one", nan_detect_one)
    resp = post(client, wav_bytes(low_tone(1.0)), name="odd.wav")
    body = strict_json(resp.text)
    assert resp.status_code == 422 and body["error"] == "cannot_score"
    assert body["detail"].startswith("odd.wav: ") and "non-finite" in body["detail"]


def test_reports_replace_any_non_finite_number_by_null():
    from spoofrl.detect.report import finite_or_none
    cleaned = finite_or_none({"a": float("nan"), "b": [1.0, float("-inf"), {"c": float("inf")}], "d": "x", "e": 2})
    assert strict_json(json.dumps(cleaned, allow_nan=False)) == {"a": None, "b": [1.0, None, {"c": None}],
                                                                 "d": "x", "e": 2}
