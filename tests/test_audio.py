import numpy as np
import pytest
import soundfile as sf

from spoofrl.audio import chunk_signal, crop_or_pad, iter_chunks, load_audio
from spoofrl.errors import AudioError


def test_load_resamples_and_downmixes(tone_file):
    path = tone_file("s.wav", seconds=0.5, sr=48000, channels=2)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 2


def test_flac_and_ogg_read(tone_file):
    for name in ("a.flac", "a.ogg"):
        assert len(load_audio(tone_file(name, seconds=0.3))) > 4000


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("hello, this is not audio at all" * 10), "not a readable audio file|not readable"),
    (lambda p: sf.write(str(p), np.zeros(16000, np.float32), 16000), "silent"),
    (lambda p: sf.write(str(p), np.zeros((0,), np.float32), 16000), "no samples|zero-length"),
    (lambda p: sf.write(str(p), np.full(100, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_truncated_file_is_reported(tone_file):
    path = tone_file("t.wav", seconds=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        x = load_audio(path)
    except AudioError as err:
        assert str(path) in str(err)
    else:  # libsndfile may read a short wav as valid with fewer frames; then it must be shorter
        assert len(x) < 16000


def test_iter_chunks_streams_whole_file(tone_file):
    path = tone_file("long.flac", seconds=3.3, sr=8000)
    pieces = list(iter_chunks(path, 1.0))
    assert [round(s, 2) for s, _ in pieces] == [0.0, 1.0, 2.0, 3.0]
    assert abs(sum(len(p) for _, p in pieces) - 3.3 * 16000) < 50


def test_crop_pad_and_chunk():
    x = np.arange(10, dtype=np.float32)
    assert list(crop_or_pad(x, 4)) == [0, 1, 2, 3]
    assert list(crop_or_pad(x[:3], 7)) == [0, 1, 2, 0, 1, 2, 0]
    pieces = chunk_signal(np.zeros(25), 10)
    assert [s for s, _ in pieces] == [0, 10, 20]
    assert [s for s, _ in chunk_signal(np.zeros(21), 10)] == [0, 10]
