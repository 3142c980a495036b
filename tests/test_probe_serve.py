"""`spoofrl serve`, issue 25 (probe defects 4 and 12): one upload protocol for `/api/detect` and `/api/explain`
(the same duration check, limits and errors), the explainer checked when the server starts, 503 (never 500)
for an explainer that fails, and the documented error contract (--help, docs/detect.md, docs/explain.md)
matched by what the endpoints answer.

As tests/test_serve_explain.py: the bundled explainer (a tiny SmallAlm) with its `generate` scripted to write
the clip's evidence-grounded rationale (tests/test_explain_cli.py: script_generate)."""
from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_detect import crafted_model_dir, low_tone  # noqa: E402
from test_explain_cli import script_generate  # noqa: E402
from test_serve_explain import wav_bytes  # noqa: E402

from spoofrl.detect import load_detection_model  # noqa: E402
from spoofrl.detect.explainer import default_explainer_path  # noqa: E402
from spoofrl.serve import ServeLimits, create_app  # noqa: E402

SR = 16000
MAX_SECONDS = 20.0
DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.skipif(not (default_explainer_path() / "alm.json").is_file(),
                                reason="no bundled explainer in this checkout")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_detection_model(crafted_model_dir(tmp_path_factory.mktemp("det")), "cpu")


@pytest.fixture
def scripted(monkeypatch):
    script_generate(monkeypatch, default_explainer_path() / "evidence_reference.json")


def serve_limits(**kw) -> ServeLimits:
    options = dict(max_upload_mb=1.0, max_seconds=MAX_SECONDS, score_without_speech=True)
    return ServeLimits(**{**options, **kw})


def make_client(loaded, limits: ServeLimits | None = None, **kw) -> TestClient:
    app = create_app(loaded, limits or serve_limits(), allowed_hosts=["testserver"], explainer_device="cpu", **kw)
    return TestClient(app)


def post(client, endpoint: str, content: bytes, name: str = "clip.wav", **kw):
    return client.post(f"/api/{endpoint}", files={"file": (name, content, "application/octet-stream")}, **kw)


# --- defect 4: the same duration check for both endpoints ------------------------------------------------

def streamed_webm(tmp_path: Path, seconds: float) -> bytes:
    """Opus in WebM written to a pipe: the container has no duration (no seek back to write it)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    wav = tmp_path / "long.wav"
    sf.write(str(wav), low_tone(seconds), SR)
    made = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "libopus", "-b:a", "12k",
                           "-f", "webm", "-"], capture_output=True, check=True)
    return made.stdout


@pytest.fixture
def decoded_seconds(monkeypatch):
    """Seconds of audio every ffmpeg decode of the test hands out, appended to the returned list."""
    import spoofrl.audio as audio
    real = audio._ffmpeg_blocks
    seconds: list[float] = []

    def counting(path, sr, block_seconds):
        with closing(real(path, sr, block_seconds)) as blocks:
            for block in blocks:
                seconds.append(block.size / sr)
                yield block

    monkeypatch.setattr(audio, "_ffmpeg_blocks", counting)
    return seconds


def test_explain_refuses_a_long_upload_without_duration_as_detect_does(loaded, scripted, tmp_path, decoded_seconds):
    from spoofrl.serve.app import PROBE_PIECE_SECONDS
    content = streamed_webm(tmp_path, 6 * MAX_SECONDS)
    assert len(content) < 1e6  # under the upload limit: only its duration can refuse it
    margin = PROBE_PIECE_SECONDS  # the probe stops after the piece that passes the limit
    with make_client(loaded) as client:
        detect = post(client, "detect", content, "stream.webm")
        detect_decoded, decoded_seconds[:] = sum(decoded_seconds), []
        explain = post(client, "explain", content, "stream.webm")
    assert detect.status_code == 422 and detect.json()["error"] == "audio_too_long"
    assert (explain.status_code, explain.json()) == (detect.status_code, detect.json())
    assert detect_decoded <= MAX_SECONDS + margin
    assert sum(decoded_seconds) <= MAX_SECONDS + margin  # not the whole 120 s just to measure it


def test_a_short_upload_without_duration_is_still_explained(loaded, scripted, tmp_path):
    with make_client(loaded) as client:
        r = post(client, "explain", streamed_webm(tmp_path, 3.0), "short.webm")
    assert r.status_code == 200, r.text
    f = r.json()["files"][0]
    assert f["verdict"] == "spoof" and f["seconds"] == pytest.approx(3.0, abs=0.1) and not f["clipped"]


@pytest.mark.parametrize("content, status, code", [
    (b"this is plain text, not audio " * 40, 415, "not_audio"),
    (b"", 422, "empty_upload"),
    (wav_bytes(low_tone(MAX_SECONDS + 5) * 0.1), 422, "audio_too_long"),
    (b"\0" * 1_100_000, 413, "upload_too_large"),
], ids=["text", "empty", "too-long", "too-large"])
def test_explain_answers_bad_uploads_with_the_errors_of_detect(loaded, scripted, content, status, code):
    with make_client(loaded) as client:
        detect, explain = (post(client, endpoint, content, "bad.wav") for endpoint in ("detect", "explain"))
    assert (detect.status_code, detect.json()["error"]) == (status, code), detect.text
    assert (explain.status_code, explain.json()) == (detect.status_code, detect.json())


def test_a_clip_that_cannot_be_explained_is_a_422(loaded, scripted):
    with make_client(loaded) as client:
        r = post(client, "explain", wav_bytes(np.zeros(SR, np.float32)), "quiet.wav")
    assert r.status_code == 422 and r.json()["error"] == "cannot_explain"
    assert r.json()["detail"].startswith("quiet.wav: ") and "silent" in r.json()["detail"]
    assert "spoofrl-serve" not in r.json()["detail"]


# --- defect 12: the explainer at start and at request time -----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_server(monkeypatch, loaded):
    """`spoofrl serve` with the crafted detector and a server that only records the app it was given."""
    import spoofrl.detect
    import spoofrl.serve.server as server_module
    built = {}

    class FakeServer:
        started = True

        def run(self):
            built["ran"] = True

    def fake_build_server(app, host, port, options=None, log_level="warning"):
        built["app"] = app
        return FakeServer()

    monkeypatch.setattr(server_module, "build_server", fake_build_server)
    monkeypatch.setattr(spoofrl.detect, "load_detection_model", lambda *a, **k: loaded)
    return built


def serve(capsys, *options: str) -> tuple[int, str]:
    from spoofrl.cli import main
    rc = main(["serve", "--port", str(free_port()), "--device", "cpu", *options])
    return rc, capsys.readouterr().err


def broken_explainers(tmp_path: Path) -> dict[str, Path]:
    """A missing folder, a folder that is no explainer, bad alm.json, unreadable weights."""
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_json = shutil.copytree(default_explainer_path(), tmp_path / "bad-json")
    (bad_json / "alm.json").write_text('{"x":')
    bad_weights = shutil.copytree(default_explainer_path(), tmp_path / "bad-weights")
    (bad_weights / "model.safetensors").write_bytes(b"garbage")
    return {"missing": tmp_path / "nonexistent", "empty": empty, "bad-json": bad_json, "bad-weights": bad_weights}


@pytest.mark.parametrize("kind", ["missing", "empty", "bad-json", "bad-weights"])
def test_serve_stops_at_once_on_a_missing_or_broken_explainer(fake_server, capsys, tmp_path, kind):
    folder = broken_explainers(tmp_path)[kind]
    rc, err = serve(capsys, "--explainer", str(folder))
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("spoofrl serve: error: --explainer") and str(folder) in err
    assert "app" not in fake_server  # stopped before any server was built


def test_serve_stops_on_a_missing_detector_model(fake_server, capsys, tmp_path, monkeypatch):
    import spoofrl.detect
    from spoofrl.detect.model import load_detection_model as real_loader
    monkeypatch.setattr(spoofrl.detect, "load_detection_model", real_loader)
    rc, err = serve(capsys, "--model", str(tmp_path / "nonexistent"))
    assert rc == 2 and err.count("\n") == 1 and "model folder not found" in err
    assert "app" not in fake_server


def test_serve_loads_the_explainer_at_start(fake_server, capsys):
    rc, _ = serve(capsys)
    assert rc == 0 and fake_server["ran"]
    with TestClient(fake_server["app"]) as client:
        health = client.get("/healthz", headers={"host": "localhost"}).json()
    assert health["explainer"] == {"status": "ready", "name": "bundled explainer"}


def test_serve_without_a_bundled_explainer_still_serves_detection(fake_server, capsys, monkeypatch, tmp_path):
    import spoofrl.detect.explainer as explainer_module
    monkeypatch.setattr(explainer_module, "default_explainer_path", lambda: tmp_path / "none")
    rc, _ = serve(capsys)
    assert rc == 0 and fake_server["ran"]
    with TestClient(fake_server["app"], headers={"host": "localhost"}) as client:
        assert client.get("/healthz").json()["explainer"]["status"] == "unavailable"
        r = post(client, "explain", wav_bytes(low_tone(1.0)))
        assert r.status_code == 503 and r.json()["error"] == "no_explainer"


def test_an_explainer_that_fails_to_load_is_a_503(loaded):
    def broken_loader(folder, device):
        raise RuntimeError("weights went missing from /srv/secret")

    with make_client(loaded, explainer_loader=broken_loader) as client:
        r = post(client, "explain", wav_bytes(low_tone(1.0)))
        again = post(client, "explain", wav_bytes(low_tone(1.0)))
    assert r.status_code == 503 and r.json()["error"] == "no_explainer", r.text
    assert "RuntimeError" in r.json()["detail"] and "/srv/secret" not in r.text
    assert again.status_code == 503


def test_an_explainer_that_fails_while_generating_is_a_503(loaded, monkeypatch):
    from spoofrl.alm import SmallAlm

    def failing_generate(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory in /srv/secret")

    monkeypatch.setattr(SmallAlm, "generate", failing_generate)
    with make_client(loaded) as client:
        r = post(client, "explain", wav_bytes(low_tone(2.0)), "clip.wav")
    assert r.status_code == 503 and r.json()["error"] == "explainer_failed", r.text
    assert "RuntimeError" in r.json()["detail"] and "/srv/secret" not in r.text and "Traceback" not in r.text


# --- the documented error contract ----------------------------------------------------------------------

def stalled_upload(app, endpoint: str) -> int:
    """Status of an upload whose body stops after its first bytes (an ASGI request: TestClient sends whole bodies)."""
    sent: list[dict] = []
    first = {"type": "http.request", "more_body": True,
             "body": b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + b"\0" * 100}
    pending = [first]

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the client never sends more

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"/api/{endpoint}", "raw_path": f"/api/{endpoint}".encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=xyz"),
                         (b"content-length", b"500000")]}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def fail(*args, **kwargs):
    raise RuntimeError("broken")


def answer(loaded, monkeypatch, status: int, code: str, endpoint: str) -> tuple[int, str]:
    """(status, error code) of a request made to get `status` / `code` from `endpoint`."""
    import spoofrl.serve.app as app_module
    limits = serve_limits(max_concurrent=1, queue=0, body_timeout=0.2)
    kw = {}
    if code == "no_explainer":
        kw["explainer_loader"] = fail
    if code == "explainer_failed":
        from spoofrl.alm import SmallAlm
        monkeypatch.setattr(SmallAlm, "generate", fail)
    if code == "internal_error":
        monkeypatch.setattr(app_module, "_probe", fail)
    with make_client(loaded, limits, **kw) as client:
        if code == "body_timeout":
            return stalled_upload(client.app, endpoint), code
        if code == "busy":
            with client.app.state.gate.admit():  # the only slot is taken
                r = post(client, endpoint, wav_bytes(low_tone(1.0)))
        elif code == "not_found":
            r = client.get(f"/api/{endpoint}/nothing")
        elif code == "method_not_allowed":
            r = client.get(f"/api/{endpoint}")
        elif code == "bad_request":
            r = client.post(f"/api/{endpoint}", data={"other": "x"})
        else:
            r = post(client, endpoint, REQUEST_BODIES.get(code, wav_bytes(low_tone(1.0))),
                     headers={"host": "evil.example"} if code == "bad_host" else None)
    return r.status_code, r.json()["error"]


REQUEST_BODIES = {"upload_too_large": b"\0" * 1_100_000, "not_audio": b"plain text, not audio " * 40,
                  "empty_upload": b"", "audio_too_long": wav_bytes(low_tone(MAX_SECONDS + 5) * 0.1),
                  "cannot_score": wav_bytes(np.zeros(SR, np.float32)),
                  "cannot_explain": wav_bytes(np.zeros(SR, np.float32))}
BOTH = ("detect", "explain")
# (status, error code, the endpoints that answer it): what --help and the docs must list, no more, no less.
CONTRACT = [
    (400, "bad_host", BOTH), (404, "not_found", BOTH), (405, "method_not_allowed", BOTH),
    (408, "body_timeout", BOTH), (413, "upload_too_large", BOTH), (415, "not_audio", BOTH),
    (422, "empty_upload", BOTH), (422, "audio_too_long", BOTH), (422, "bad_request", BOTH),
    (422, "cannot_score", ("detect",)), (422, "cannot_explain", ("explain",)), (429, "busy", BOTH),
    (500, "internal_error", BOTH), (503, "no_explainer", ("explain",)), (503, "explainer_failed", ("explain",)),
]


@pytest.mark.parametrize("status, code, endpoint",
                         [(s, c, e) for s, c, endpoints in CONTRACT for e in endpoints],
                         ids=[f"{s}-{c}-{e}" for s, c, endpoints in CONTRACT for e in endpoints])
def test_every_documented_error_is_answered(loaded, scripted, monkeypatch, status, code, endpoint):
    assert answer(loaded, monkeypatch, status, code, endpoint) == (status, code)


def serve_help() -> str:
    from spoofrl.cli.cmd_serve import DESCRIPTION
    return DESCRIPTION


def errors_block(text: str, start: str) -> str:
    """The paragraph of `text` from the line holding `start` to the next blank line."""
    at = text.index(start)
    end = text.find("\n\n", at)
    return text[at:end if end >= 0 else len(text)]


def documented_statuses(block: str) -> set[int]:
    return {int(s) for s in re.findall(r"(?<![\d.])([45]\d\d)(?![\d.])", block)}


def section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    at = text.index(heading)
    end = text.find("\n## ", at + len(heading))
    return text[at:end if end >= 0 else len(text)]


@pytest.mark.parametrize("source", ["--help", "docs/detect.md", "docs/explain.md"])
def test_the_documented_error_list_is_the_contract(source):
    statuses = {s for s, _, _ in CONTRACT}
    codes = {c for _, c, _ in CONTRACT}
    if source == "--help":
        block = errors_block(serve_help(), "Errors of POST /api/detect and POST /api/explain")
    elif source == "docs/detect.md":
        block = errors_block(section(DOCS / "detect.md", "## `spoofrl serve`"), "| status | `error` | when |")
        rows = [line for line in block.splitlines() if re.match(r"\| [45]\d\d", line)]
        assert {c for line in rows for c in re.findall(r"`([a-z_]+)`", line.split("|")[2])} == codes
    else:
        block = section(DOCS / "explain.md", "## `spoofrl serve`: `POST /api/explain`")
    assert documented_statuses(block) == statuses, block
    assert all(code in block for code in codes), [c for c in codes if c not in block]


def test_serve_help_lists_the_explain_endpoint(capsys):
    from spoofrl.cli import main
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "POST /api/explain" in out and "503 no_explainer" in out
    assert "415 not_audio" in out and "verdict 'error'" in out
