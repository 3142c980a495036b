"""Hostile uploads: playlists, manifests, concat lists and URLs handed to ffmpeg must be refused.

ffmpeg follows HLS/DASH playlists, concat lists and protocols. A playlist uploaded as `a.wav` made it
decode (and the server score) a server-side file or fetch a URL, and a missing target gave another error
than an existing one (an oracle for file existence). Each such file must be refused by load_audio,
iter_chunks, audio_info and `POST /api/detect` with one reason that does not depend on what it names,
while nothing connects to a loopback listener that stands for the network.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.audio import FFMPEG_FORMATS, audio_info, iter_chunks, load_audio
from spoofrl.errors import AudioError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg/ffprobe not installed (the hostile formats are ffmpeg's)")

SR = 16000
READERS = {
    "load_audio": load_audio,
    "iter_chunks": lambda p: list(iter_chunks(p, 0.5)),
    "audio_info": audio_info,
}


# --------------------------------------------------------------------------------------------- helpers

class Listener:
    """A TCP listener on 127.0.0.1 (free port) in a thread, recording every connection it gets."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:  # the 0.1 s timeout (socket.timeout is an OSError) or a closed socket
                continue
            self.connections.append(addr)
            conn.close()  # answer nothing: a client sees a failed fetch

    def count(self) -> int:
        """Connections so far, after every earlier one has been accepted: a marker connection of our own is
        made and waited for (the backlog is accepted in order), then left out of the count."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as marker:
            mark = marker.getsockname()
            for _ in range(200):
                if mark in self.connections:
                    break
                threading.Event().wait(0.01)
            else:
                raise AssertionError("the listener did not accept its marker connection")
        self.connections.remove(mark)
        return len(self.connections)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.close()


def _sine(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> dict[str, Path]:
    """Local audio files a playlist may name ("server-side" files), by suffix."""
    folder = tmp_path_factory.mktemp("server")
    wav = folder / "secret.wav"
    sf.write(str(wav), _sine(), SR)
    return {
        ".wav": wav,
        ".mp3": _ffmpeg(wav, folder / "secret.mp3"),
        ".ts": _ffmpeg(wav, folder / "secret.ts", "-c:a", "mp2", "-f", "mpegts"),
        ".m4a": _ffmpeg(wav, folder / "secret.m4a", "-c:a", "aac"),
    }


def _hls(segment: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{segment}\n#EXT-X-ENDLIST\n"


def _dash_base_url(url: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period>
  <AdaptationSet mimeType="audio/mp4">
   <Representation id="a" bandwidth="64000" codecs="mp4a.40.2" audioSamplingRate="16000">
    <BaseURL>{url}</BaseURL>
   </Representation>
  </AdaptationSet>
 </Period>
</MPD>
"""


def _dash_template(base: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-live:2011">
 <BaseURL>{base}</BaseURL>
 <Period>
  <AdaptationSet mimeType="audio/mp4">
   <SegmentTemplate timescale="1000" duration="1000" initialization="init.mp4" media="seg-$Number$.m4s"
                    startNumber="1"/>
   <Representation id="a" bandwidth="64000" codecs="mp4a.40.2" audioSamplingRate="16000"/>
  </AdaptationSet>
 </Period>
</MPD>
"""


def _concat(entry: str) -> str:
    return f"ffconcat version 1.0\nfile {entry}\n"


# Hostile files that name a local target: (name of the upload, its text given the target's path).
NAMING_LOCAL = {
    "hls-wav-segment": ("a.wav", ".wav", lambda t: _hls(str(t))),
    "hls-mp3-segment": ("a.wav", ".mp3", lambda t: _hls(str(t))),
    "hls-ts-segment": ("a.wav", ".ts", lambda t: _hls(str(t))),
    "hls-file-url": ("a.m3u8", ".mp3", lambda t: _hls("file:" + str(t))),
    "dash-local": ("a.wav", ".m4a", lambda t: _dash_base_url(str(t))),
    "dash-local-mpd": ("a.mpd", ".m4a", lambda t: _dash_base_url(str(t))),
    "ffconcat-absolute": ("a.wav", ".wav", lambda t: _concat(str(t))),
    "ffconcat-relative": ("a.wav", ".wav", lambda t: _concat(t.name)),
}
# Hostile files that name the loopback listener (the port is filled in).
NAMING_NETWORK = {
    "hls-http": ("a.wav", lambda port: _hls(f"http://127.0.0.1:{port}/x.ts")),
    "hls-tcp": ("a.m3u8", lambda port: _hls(f"tcp://127.0.0.1:{port}")),
    "dash-http-template": ("a.wav", lambda port: _dash_template(f"http://127.0.0.1:{port}/")),
    "dash-http-base-url": ("a.mpd", lambda port: _dash_base_url(f"http://127.0.0.1:{port}/a.m4a")),
    "ffconcat-http": ("a.wav", lambda port: _concat(f"http://127.0.0.1:{port}/a.wav")),
    "plain-url": ("a.wav", lambda port: f"http://127.0.0.1:{port}/a.wav\n"),
}


def _local_pair(kind: str, folder: Path, targets: dict[str, Path]) -> tuple[Path, Path, Path]:
    """(hostile file naming an existing target, the same naming a missing one, the existing target)."""
    name, suffix, text = NAMING_LOCAL[kind]
    existing = targets[suffix]
    # The missing target sits next to the hostile file so that the relative ffconcat entry points at it.
    missing = folder / "missing" / f"gone{suffix}"
    missing_rel = folder / "missing" / existing.name
    for sub in ("existing", "missing"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(existing, folder / "existing" / existing.name)  # for the relative entry
    a = folder / "existing" / name
    b = folder / "missing" / name
    if kind == "ffconcat-relative":
        a.write_text(text(folder / "existing" / existing.name))
        b.write_text(text(missing_rel))  # same text; the file beside it does not exist
    else:
        a.write_text(text(existing))
        b.write_text(text(missing))
    return a, b, existing


def _reason(read, path: Path) -> str:
    with pytest.raises(AudioError) as info:
        read(path)
    assert info.value.path == str(path)
    return info.value.reason


def _assert_mentions_nothing(reason: str, *named: Path | str) -> None:
    for thing in named:
        assert str(thing) not in reason and Path(str(thing)).name not in reason
    assert "127.0.0.1" not in reason and "/tmp" not in reason and "http" not in reason


# --------------------------------------------------------------------------------------------- the library

def test_allowed_formats_are_plain_containers():
    refused = {"hls", "dash", "webm_dash_manifest", "concat", "image2", "lavfi", "sdp", "rtp", "rtsp", "data",
               "ffmetadata", "mpjpeg", "tee", "subfile", "fifo"}
    assert not refused & set(FFMPEG_FORMATS)
    assert {"wav", "flac", "ogg", "mp3", "mov", "matroska", "aac"} <= set(FFMPEG_FORMATS)


@pytest.mark.parametrize("kind", sorted(NAMING_LOCAL))
def test_playlists_naming_local_files_are_refused_uniformly(kind, tmp_path, targets, listener):
    existing_case, missing_case, target = _local_pair(kind, tmp_path, targets)
    before = listener.count()
    for label, read in READERS.items():
        got = _reason(read, existing_case)
        assert got == _reason(read, missing_case), f"{label}: the reason tells an existing target from a missing one"
        assert got.startswith("not a plain audio file (ffmpeg format '"), f"{label}: {got}"
        assert "is refused: playlists, concat lists and network formats are not read" in got
        _assert_mentions_nothing(got, target, tmp_path)
    assert listener.count() == before


@pytest.mark.parametrize("kind", sorted(NAMING_NETWORK))
def test_playlists_and_urls_naming_the_network_open_no_connection(kind, tmp_path, listener):
    name, text = NAMING_NETWORK[kind]
    path = tmp_path / name
    path.write_text(text(listener.port))
    before = listener.count()
    reasons = {label: _reason(read, path) for label, read in READERS.items()}
    assert listener.count() == before, f"ffmpeg connected to the listener for {kind}"
    for label, got in reasons.items():
        _assert_mentions_nothing(got, str(listener.port), tmp_path)
        if kind != "plain-url":  # a URL in a text file is no format at all: "not a readable audio file"
            assert got.startswith("not a plain audio file"), f"{label}: {got}"


def test_the_reason_names_the_refused_format(tmp_path, targets):
    hls, dash, concat = tmp_path / "h.wav", tmp_path / "d.wav", tmp_path / "c.wav"
    hls.write_text(_hls(str(targets[".mp3"])))
    dash.write_text(_dash_base_url(str(targets[".m4a"])))
    concat.write_text(_concat(str(targets[".wav"])))
    assert "ffmpeg format 'hls' is refused" in _reason(load_audio, hls)
    assert "ffmpeg format 'dash' is refused" in _reason(audio_info, dash)
    assert "ffmpeg format 'concat' is refused" in _reason(load_audio, concat)


def test_whitelist_refusals_in_ffmpeg_stderr_map_to_uniform_reasons(tmp_path):
    from spoofrl.audio import _ffmpeg_input, _ffmpeg_reason
    path = tmp_path / "a.wav"
    fmt = f"[hls @ 0x55d296de6980] Format not on whitelist 'wav,mp3'\n{_ffmpeg_input(path)}: Invalid argument\n"
    assert _ffmpeg_reason(path, fmt.encode()) == ("not a plain audio file (ffmpeg format 'hls' is refused: playlists, "
                                                  "concat lists and network formats are not read)")
    proto = (f"[http @ 0x55e525d57040] Protocol 'http' not on whitelist 'file'!\n"
             f"[hls @ 0x55e525d52900] Error when loading first segment 'http://127.0.0.1:9/x.ts'\n"
             f"{_ffmpeg_input(path)}: Invalid data found when processing input\n")
    got = _ffmpeg_reason(path, proto.encode())
    assert got.startswith("not a plain audio file") and "127.0.0.1" not in got and "x.ts" not in got


PLAIN = [
    (".wav", None), (".flac", None), (".ogg", None),
    (".mp3", []), (".m4a", ["-c:a", "aac"]), (".aac", ["-c:a", "aac"]), (".opus", ["-c:a", "libopus"]),
    (".webm", ["-c:a", "libopus"]), (".mka", ["-c:a", "flac"]), (".ts", ["-c:a", "mp2", "-f", "mpegts"]),
]


def _plain_clip(path: Path, codec: list[str] | None, targets) -> Path:
    """A one-second sine in a plain container: written by soundfile (codec None) or encoded by ffmpeg."""
    if codec is None:
        sf.write(str(path), _sine(), SR)
    else:
        _ffmpeg(targets[".wav"], path, *codec)
    return path


@pytest.mark.parametrize("suffix, codec", PLAIN, ids=[p[0] for p in PLAIN])
def test_plain_audio_still_decodes(suffix, codec, tmp_path, targets, listener):
    path = _plain_clip(tmp_path / f"clip{suffix}", codec, targets)
    x = load_audio(path)
    assert x.dtype == np.float32 and abs(len(x) - SR) < 2048  # raw ADTS keeps the encoder delay
    spectrum = np.abs(np.fft.rfft(x[:SR // 2] * np.hanning(len(x[:SR // 2]))))
    assert np.argmax(spectrum) * SR / len(x[:SR // 2]) == pytest.approx(440, abs=10)
    seconds, rate, _ = audio_info(path)
    assert seconds == pytest.approx(1.0, abs=0.15) and rate > 0
    assert np.array_equal(np.concatenate([piece for _, piece in iter_chunks(path, 0.25)]), x)


# --------------------------------------------------------------------------------------------- the HTTP API

try:
    import httpx  # noqa: F401  (TestClient needs it)
    from fastapi.testclient import TestClient
except ImportError:
    TestClient = None
needs_api = pytest.mark.skipif(TestClient is None, reason="fastapi/httpx not installed")


@pytest.fixture(scope="module")
def client(loaded):
    from spoofrl.serve import ServeLimits, create_app
    limits = ServeLimits(max_upload_mb=1.0, max_seconds=20.0, chunk_seconds=4.0)
    # Host "localhost": a loopback name the server answers to whatever --allow-host says.
    with TestClient(create_app(loaded, limits), base_url="http://localhost") as c:
        yield c


def _post(client, path: Path, name: str, **params):
    files = {"file": (name, path.read_bytes(), "application/octet-stream")}
    return client.post("/api/detect", files=files, params=params)


def _refused_detail(resp, name: str) -> str:
    assert resp.status_code == 415, resp.text
    body = resp.json()
    assert body["error"] == "not_audio"
    assert body["detail"].startswith(f"{name}: ")
    return body["detail"]


@needs_api
@pytest.mark.parametrize("spectrogram", [False, True], ids=["plain", "spectrogram"])
@pytest.mark.parametrize("kind", sorted(NAMING_LOCAL))
def test_api_refuses_playlists_naming_server_files_uniformly(kind, spectrogram, client, tmp_path, targets,
                                                             listener):
    existing_case, missing_case, target = _local_pair(kind, tmp_path, targets)
    name = existing_case.name
    params = {"spectrogram": "true"} if spectrogram else {}
    before = listener.count()
    got = _refused_detail(_post(client, existing_case, name, **params), name)
    assert got == _refused_detail(_post(client, missing_case, name, **params), name)
    assert "not a plain audio file" in got
    _assert_mentions_nothing(got.split(": ", 1)[1], target, tmp_path)
    assert "spoofrl-serve-" not in got and "upload" not in got
    assert listener.count() == before


@needs_api
@pytest.mark.parametrize("spectrogram", [False, True], ids=["plain", "spectrogram"])
@pytest.mark.parametrize("kind", sorted(NAMING_NETWORK))
def test_api_refuses_playlists_and_urls_naming_the_network(kind, spectrogram, client, tmp_path, listener):
    name, text = NAMING_NETWORK[kind]
    path = tmp_path / name
    path.write_text(text(listener.port))
    before = listener.count()
    got = _refused_detail(_post(client, path, name, **({"spectrogram": "true"} if spectrogram else {})), name)
    assert listener.count() == before
    if kind != "plain-url":
        assert "not a plain audio file" in got
    _assert_mentions_nothing(got.split(": ", 1)[1], str(listener.port), tmp_path)
    assert "spoofrl-serve-" not in got and "upload" not in got


@needs_api
@pytest.mark.parametrize("suffix, codec", [(".wav", None), (".mp3", []), (".m4a", ["-c:a", "aac"]),
                                           (".ogg", None), (".opus", ["-c:a", "libopus"]),
                                           (".webm", ["-c:a", "libopus"])])
def test_api_still_scores_plain_audio(suffix, codec, client, tmp_path, targets):
    path = _plain_clip(tmp_path / f"clip{suffix}", codec, targets)
    resp = _post(client, path, path.name, spectrogram="true")
    assert resp.status_code == 200, resp.text
    report = resp.json()["files"][0]
    assert report["path"] == path.name and report["spectrogram_png"].startswith("data:image/png;base64,")
