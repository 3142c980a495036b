"""spoofrl.audio: reading every supported format, resampling, streaming, and one clear AudioError per bad file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import spoofrl.audio as audio
from conftest import chain_ops, float_tol
from spoofrl.audio import audio_info, chunk_signal, crop_or_pad, iter_chunks, load_audio
from spoofrl.errors import AudioError

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not installed")


SOXR_TOL = float_tol(np.float32, chain_ops(1024, 1024), 0.5)     # 3.8e-6, see test_iter_chunks_are_exact_...


def _sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def _ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture
def sine_wav(tmp_path) -> Path:
    """1 s of 440 Hz at 22.05 kHz: a rate that must be resampled."""
    path = tmp_path / "sine.wav"
    sf.write(str(path), _sine(440, 1.0, 22050), 22050)
    return path


# --------------------------------------------------------------------------------------------- good files

def test_resamples_and_downmixes_keeping_the_content(tmp_path):
    left, right = _sine(1000, 0.5, 48000), _sine(1000, 0.5, 48000, amp=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 48000)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == 8000
    assert _peak_hz(x, 16000) == pytest.approx(1000, abs=5)
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.4, abs=0.01)  # mean of the two channels
    assert len(load_audio(path, sr=8000)) == 4000


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_soundfile_formats(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sf.write(str(path), _sine(440, 0.5, 16000), 16000)
    x = load_audio(path)
    assert len(x) == 8000 and _peak_hz(x, 16000) == pytest.approx(440, abs=5)


@needs_ffmpeg
@pytest.mark.parametrize("suffix, codec", [(".mp3", []), (".m4a", ["-c:a", "aac"]), (".opus", ["-c:a", "libopus"])])
def test_compressed_formats_through_ffmpeg(sine_wav, tmp_path, suffix, codec):
    path = _ffmpeg(sine_wav, tmp_path / f"a{suffix}", *codec)
    x = load_audio(path)
    assert x.dtype == np.float32 and abs(len(x) - 16000) < 800  # encoders add a little padding
    assert _peak_hz(x, 16000) == pytest.approx(440, abs=5)
    seconds, rate, channels = audio_info(path)
    assert seconds == pytest.approx(1.0, abs=0.08) and rate > 0 and channels == 1
    streamed = np.concatenate([piece for _, piece in iter_chunks(path, 0.25)])
    assert np.array_equal(streamed, x)


@needs_ffmpeg
def test_file_names_ffmpeg_could_misread(sine_wav, tmp_path, monkeypatch):
    odd = _ffmpeg(sine_wav, tmp_path / "a.m4a", "-c:a", "aac").rename(tmp_path / "-odd:name.m4a")
    monkeypatch.chdir(tmp_path)  # a relative name starting with '-' must not become an ffmpeg option
    assert _peak_hz(load_audio(odd.name), 16000) == pytest.approx(440, abs=5)
    assert audio_info(odd.name)[1] == 22050


def test_iter_chunks_are_exact_and_seamless(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, int(3.3 * 44100)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(str(path), x, 44100, subtype="PCM_24")
    pieces = list(iter_chunks(path, 1.0))
    assert [start for start, _ in pieces] == [0.0, 1.0, 2.0, 3.0]
    assert [len(p) for _, p in pieces] == [16000, 16000, 16000, len(load_audio(path)) - 48000]
    # The stream is resampled as one signal: identical to resampling the whole file at once, up to where soxr's
    # float32 filter (~1000 taps, FFT blocks of ~1000) splits its sums, on |x| <= 0.5: 4e-6; a seam at a block
    # edge would be off by ~0.1 there
    np.testing.assert_allclose(np.concatenate([p for _, p in pieces]), load_audio(path), rtol=0, atol=SOXR_TOL)


def test_streamed_wav_with_unknown_size_is_not_called_truncated(sine_wav, tmp_path):
    # A writer piping a WAV cannot fix the header afterwards: ffmpeg writes 0xFFFFFFFF as the data size.
    data = bytearray(sine_wav.read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    piped = tmp_path / "piped.wav"
    piped.write_bytes(bytes(data))
    assert len(load_audio(piped)) == 16000


def test_info_reads_headers(sine_wav):
    assert audio_info(sine_wav) == (1.0, 22050, 1)


def test_silent_files_and_length_limit(tmp_path, sine_wav):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match=r"silent\.wav: all samples are zero"):
        load_audio(silent)
    assert not load_audio(silent, allow_silent=True).any()
    assert len(list(iter_chunks(silent, 0.05))) == 2  # streaming callers judge silence themselves
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(sine_wav, max_seconds=0.5)
    assert len(load_audio(sine_wav, max_seconds=None)) == 16000


@needs_ffmpeg
def test_length_limit_stops_ffmpeg_decoding_early(sine_wav, tmp_path, monkeypatch):
    path = _ffmpeg(sine_wav, tmp_path / "a.m4a", "-c:a", "aac")
    monkeypatch.setattr(audio, "LOAD_BLOCK_SECONDS", 0.1)
    with pytest.raises(AudioError, match=r"a\.m4a: is longer than the limit"):
        load_audio(path, max_seconds=0.3)


# --------------------------------------------------------------------------------------------- bad files

def _truncated_wav(p: Path) -> None:
    sf.write(str(p), _sine(440, 1.0, 16000), 16000)
    p.write_bytes(p.read_bytes()[:16000])


def _truncated_flac(p: Path) -> None:
    sf.write(str(p), np.random.default_rng(0).uniform(-0.5, 0.5, 48000).astype(np.float32), 16000)
    p.write_bytes(p.read_bytes()[:8000])


def _unknown_codec(p: Path) -> None:
    sf.write(str(p), _sine(440, 0.5, 16000), 16000)
    data = bytearray(p.read_bytes())
    data[20:22] = (0x1234).to_bytes(2, "little")  # WAV format tag no decoder knows
    p.write_bytes(bytes(data))


BAD_FILES = [
    ("missing.wav", lambda p: None, "file not found"),
    ("folder.wav", lambda p: p.mkdir(), "is a folder"),
    ("empty.wav", lambda p: p.write_bytes(b""), r"file is empty \(0 bytes\)"),
    ("text.wav", lambda p: p.write_text("hello, this is not audio at all" * 10), "not a readable audio file"),
    ("text.mp3", lambda p: p.write_text("hello, this is not audio at all" * 10), "not a readable audio file"),
    ("random.flac", lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "not a readable audio file"),
    ("zero.wav", lambda p: sf.write(str(p), np.zeros(0, np.float32), 16000), "zero-length"),
    ("nan.wav", lambda p: sf.write(str(p), np.full(100, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
    ("inf.wav", lambda p: sf.write(str(p), np.r_[np.ones(50), np.inf].astype(np.float32), 16000, subtype="FLOAT"),
     "NaN or infinite"),
    ("cut.wav", _truncated_wav, "truncated: the header announces 32000 bytes"),
    ("cut.flac", _truncated_flac, "corrupt or truncated"),
    ("codec.wav", _unknown_codec, "unreadable codec"),
]


@pytest.mark.parametrize("name, make, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    for read in (load_audio, lambda p: list(iter_chunks(p, 0.5))):
        with pytest.raises(AudioError, match=reason) as info:
            read(path)
        assert str(info.value).startswith(f"{path}: ")
        assert info.value.path == str(path)


@needs_ffmpeg
def test_no_audio_stream_and_truncated_compressed(tmp_path, sine_wav):
    video = tmp_path / "video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=duration=1:size=32x32:rate=5", "-an", str(video)], check=True)
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError, match=r"video\.mp4: no audio stream"):
            read(video)
    m4a = _ffmpeg(sine_wav, tmp_path / "a.m4a", "-c:a", "aac")
    m4a.write_bytes(m4a.read_bytes()[:3000])
    with pytest.raises(AudioError, match=r"a\.m4a: not a readable audio file"):
        load_audio(m4a)


def test_zero_length_and_truncated_headers_fail_in_info(tmp_path):
    zero, cut = tmp_path / "zero.wav", tmp_path / "cut.wav"
    sf.write(str(zero), np.zeros(0, np.float32), 16000)
    _truncated_wav(cut)
    with pytest.raises(AudioError, match="zero-length"):
        audio_info(zero)
    with pytest.raises(AudioError, match="truncated"):
        audio_info(cut)


def test_without_ffmpeg_the_reason_says_so(tmp_path, monkeypatch):
    path = tmp_path / "a.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"a\.m4a: not readable by soundfile, and ffmpeg .* is not installed"):
        load_audio(path)


@needs_ffmpeg
def test_mp3_without_ffmpeg_is_read_whole_by_libsndfile(sine_wav, tmp_path, monkeypatch):
    path = _ffmpeg(sine_wav, tmp_path / "a.mp3")
    with_ffmpeg = load_audio(path)
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    if audio._soundfile_info(path) is None:
        pytest.skip("this libsndfile has no MP3 support")
    x = load_audio(path)
    # libsndfile decodes MP3 wrongly in small blocks; one read gives the same signal as ffmpeg.
    np.testing.assert_allclose(np.concatenate([p for _, p in iter_chunks(path, 0.1)]), x, rtol=0, atol=SOXR_TOL)
    assert np.abs(x[:len(with_ffmpeg)] - with_ffmpeg[:len(x)]).max() < 0.02  # two resamplers; the bug gave ~0.2


def test_nan_in_a_later_chunk_is_located(tmp_path):
    x = np.full(32000, 0.1, np.float32)
    x[20000] = np.nan
    path = tmp_path / "late_nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    chunks = iter_chunks(path, 0.5)
    assert len(next(chunks)[1]) == 8000  # the good part streams before the problem is reached
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(at 1\.0 s\)"):
        list(chunks)


# --------------------------------------------------------------------------------------------- helpers

def test_crop_or_pad():
    x = np.arange(10, dtype=np.float32)
    assert list(crop_or_pad(x, 4)) == [0, 1, 2, 3]
    assert list(crop_or_pad(x[:3], 7)) == [0, 1, 2, 0, 1, 2, 0]
    rng = np.random.default_rng(0)
    starts = {int(crop_or_pad(x, 4, random=rng)[0]) for _ in range(200)}
    assert starts == set(range(7))  # every valid crop position, never past the end


def test_chunk_signal_covers_every_sample():
    pieces = chunk_signal(np.arange(25), 10)
    assert [(s, len(p)) for s, p in pieces] == [(0, 10), (10, 10), (20, 5)]
    pieces = chunk_signal(np.arange(21), 10)  # a 1-sample tail joins the previous window
    assert [(s, len(p)) for s, p in pieces] == [(0, 10), (10, 11)] and pieces[-1][1][-1] == 20
    overlapping = chunk_signal(np.arange(25), 10, hop=5)
    assert [s for s, _ in overlapping] == [0, 5, 10, 15] and overlapping[-1][1][-1] == 24
