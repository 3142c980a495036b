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


HEADER = "path,label,attack,source,condition,subset\n"


def test_spreadsheet_bom_and_empty_cells(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("\ufeff" + HEADER + "a.wav,spoof,,,,\n\n\nb.wav,bonafide,-,s,c,train\n", encoding="utf-8")
    rows = read_manifest(m)
    assert [(r.path, r.attack, r.source, r.condition, r.subset) for r in rows] == [
        ("a.wav", "-", "-", "-", "-"), ("b.wav", "-", "s", "c", "train")]


@pytest.mark.parametrize("body, match", [
    (HEADER.encode() + b"a.wav,bonafide,A01,s,c,train\n", r"m.csv:2: a bona fide row must have attack '-'"),
    (HEADER.encode() + "\u00e4.wav,spoof,A1,s,c,t\n".encode("latin-1"), r"m.csv:2: not UTF-8 text \(byte 0xe4"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00", r"m.csv:1: binary data, not a text manifest"),
    (HEADER.encode() + b"a.wav,spoof,A1,s,c,t\n\n\na.wav,bonafide,-,s,c,t\n", r"m.csv:5: 'a.wav' is spoof on line 2"),
    (HEADER.encode() + b"a.wav,spoof,A1,s,c,t\na.wav,spoof,A2,s,c,t\n", r"m.csv:3: 'a.wav' listed twice in subset 't'"),
    (b"path,label,attack,source,condition,subset,label\n", r"m.csv:1: header repeats column label"),
])
def test_malformed_manifests_name_file_line_and_reason(tmp_path, body, match):
    m = tmp_path / "m.csv"
    m.write_bytes(body)
    with pytest.raises(ProtocolError, match=match):
        read_manifest(m)


def test_one_file_in_two_subsets_is_allowed(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(HEADER + "a.wav,spoof,A1,s,c,train\na.wav,spoof,A1,s,c,ood\n")
    assert [r.subset for r in read_manifest(m)] == ["train", "ood"]


def test_bad_lines_collected_when_asked_and_good_rows_kept(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,label,attack,source,condition,subset\n"
                 "a.wav,bonafide,-,x,-,train\n"
                 "b.wav,real,-,x,-,train\n"             # unknown label
                 "a.wav,spoof,A01,x,-,train\n"          # same path, other label
                 "c.wav,spoof,A01,x,-,train\n")
    bad: list[ProtocolError] = []
    rows = read_manifest(m, bad_lines=bad)
    assert [r.path for r in rows] == ["a.wav", "c.wav"]
    assert [(e.line, e.reason.split(",")[0]) for e in bad] == [(3, "label must be 'bonafide' or 'spoof'"),
                                                               (4, "'a.wav' is bonafide on line 2 but spoof here")]
    with pytest.raises(ProtocolError, match="m.csv:3: label must be"):
        read_manifest(m)
    m.write_text("path,label\na.wav,bonafide\n")       # a bad header is never skipped
    with pytest.raises(ProtocolError, match="missing columns"):
        read_manifest(m, bad_lines=[])


def test_unclosed_quote_is_reported_where_the_record_starts(tmp_path):
    from spoofrl.data.manifest import read_manifest
    from spoofrl.errors import ProtocolError
    path = tmp_path / "m.csv"
    rows = [f"a{i}.wav,bonafide,-,src,-,train" for i in range(1, 10)]
    rows[2] = '"a3.wav,bonafide,-,src,-,train'  # line 4 (after the header)
    path.write_text("path,label,attack,source,condition,subset\n" + "\n".join(rows) + "\n")
    with pytest.raises(ProtocolError) as err:
        read_manifest(path)
    assert "m.csv:4" in str(err.value)
