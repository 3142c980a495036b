import pytest

from spoofrl.data.manifest import Utterance, read_manifest, write_manifest, check_audio_exists
from spoofrl.errors import ProtocolError


def test_roundtrip_and_subset(tmp_path):
    rows = [Utterance("a.flac", "bonafide", subset="train"), Utterance("b.flac", "spoof", "A01", "x", "clean", "dev")]
    out = tmp_path / "m.csv"
    write_manifest(rows, out)
    back = read_manifest(out)
    assert [(r.path, r.label, r.attack, r.subset) for r in back] == [("a.flac", "bonafide", "-", "train"),
                                                                     ("b.flac", "spoof", "A01", "dev")]
    assert back[0].audio_path == tmp_path / "a.flac"
    assert [r.path for r in read_manifest(out, subsets=["dev"])] == ["b.flac"]
    with pytest.raises(ProtocolError, match="no utterances in subset nope"):
        read_manifest(out, subsets=["nope"])


def test_bad_lines_name_file_and_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,label,attack,source,condition,subset\na.wav,bonafide,-,s,clean,train\nb.wav,fake,A1,s,clean,train\n")
    with pytest.raises(ProtocolError, match=r"m.csv:3: label must be"):
        read_manifest(m)
    m.write_text("path,label,attack\na.wav,bonafide,-\n")
    with pytest.raises(ProtocolError, match="missing columns source, condition, subset"):
        read_manifest(m)
    m.write_text("path,label,attack,source,condition,subset\na.wav,bonafide,-\n")
    with pytest.raises(ProtocolError, match=r"m.csv:2: expected 6 fields, found 3"):
        read_manifest(m)


def test_missing_audio_reported_all_at_once(tmp_path):
    rows = [Utterance(f"{i}.wav", "spoof", root=tmp_path) for i in range(7)]
    with pytest.raises(ProtocolError, match="7 audio files missing.*and 2 more"):
        check_audio_exists(rows, tmp_path / "m.csv")
