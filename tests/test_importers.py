"""Corpus importers on tiny fake corpora laid out like the real releases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.importers import IMPORTERS, ImportOptions, import_corpus, read_protocol_key
from spoofrl.data.manifest import read_manifest
from spoofrl.errors import ProtocolError


def _audio(path: Path, seed: int = 0) -> Path:
    """A 50 ms noise burst (the importers only need real, existing audio files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.random.default_rng(seed).standard_normal(800)).astype(np.float32)
    sf.write(str(path), x, 16000)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- fake corpora

P2019 = {"train": "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1000137 - A01 spoof\nLA_0080 LA_T_1000138 - A02 spoof\n",
         "dev": "LA_0069 LA_D_1047731 - - bonafide\nLA_0069 LA_D_1000001 - A05 spoof\n",
         "eval": "LA_0039 LA_E_2834763 - A11 spoof\nLA_0014 LA_E_8877452 - - bonafide\n"}
NAMES_2019 = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


@pytest.fixture
def la2019(tmp_path):
    root = tmp_path / "LA"
    for split, text in P2019.items():
        _write(root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{NAMES_2019[split]}.txt", text)
        for i, line in enumerate(text.splitlines()):
            _audio(root / f"ASVspoof2019_LA_{split}" / "flac" / f"{line.split()[1]}.flac", i)
    return root


LA2021 = ("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
          "LA_0009 LA_E_5932896 none - bonafide bonafide notrim progress\n"
          "LA_0010 LA_E_1000001 gsm sine_tx A19 spoof trim hidden\n"
          "LA_0010 LA_E_1000002 opus voip_tx bonafide bonafide notrim eval\n")
DF2021 = ("LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -\n"
          "LA_0043 DF_E_2000027 nocodec asvspoof bonafide bonafide notrim eval - - - - -\n"
          "VCC_1 DF_E_2000028 low_mp3 vcc2020 Task1-team20 spoof notrim progress neural_vocoder_nonautoregressive - - - -\n")


@pytest.fixture
def corpus2021(tmp_path):
    root = tmp_path / "asv21"
    _write(root / "keys" / "LA" / "CM" / "trial_metadata.txt", LA2021)
    _write(root / "keys" / "DF" / "CM" / "trial_metadata.txt", DF2021)
    for text, track in ((LA2021, "LA"), (DF2021, "DF")):
        for i, line in enumerate(text.splitlines()):
            _audio(root / f"ASVspoof2021_{track}_eval" / "flac" / f"{line.split()[1]}.flac", i)
    return root


ASV5 = {"train": "T_4850 T_0000000000 F - - - AC3 A05 spoof -\nT_1138 T_0000000001 M - - - bonafide bonafide bonafide -\n",
        "dev": "D_0062 D_0000000001 F - - - AC1 A11 spoof -\nD_0062 D_0000000002 F - - - bonafide bonafide bonafide -\n",
        "eval": "E_0001 E_0000000001 M C08 6 1 AC2 A20 spoof -\nE_0002 E_0000000002 F C01 0 3 bonafide bonafide bonafide -\n"}
ASV5_FILES = {"train": ("ASVspoof5.train.tsv", "flac_T"), "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D"),
              "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval")}


@pytest.fixture
def asv5(tmp_path):
    root = tmp_path / "asv5"
    for split, text in ASV5.items():
        name, folder = ASV5_FILES[split]
        _write(root / name, text)
        for i, line in enumerate(text.splitlines()):
            _audio(root / folder / f"{line.split()[1]}.flac", i)
    return root


@pytest.fixture
def itw(tmp_path):
    root = tmp_path / "release_in_the_wild"
    _write(root / "meta.csv", 'file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,"Doe, John",bona-fide\n'
                              '2.wav,Barack Obama,bona-fide\n')
    for i in range(3):
        _audio(root / f"{i}.wav", i)
    return root


# --------------------------------------------------------------------------------------------- ASVspoof 2019 LA

def test_asvspoof2019_all_splits(la2019, tmp_path):
    rows = import_corpus("asvspoof2019-la", la2019, out=la2019 / "m.csv")
    assert len(rows) == 7
    by_id = {Path(r.path).stem: r for r in rows}
    assert by_id["LA_T_1000137"].path == "ASVspoof2019_LA_train/flac/LA_T_1000137.flac"  # relative to manifest
    assert (by_id["LA_T_1000137"].label, by_id["LA_T_1000137"].attack, by_id["LA_T_1000137"].subset) == \
        ("spoof", "A01", "train")
    assert (by_id["LA_T_1138215"].label, by_id["LA_T_1138215"].attack) == ("bonafide", "-")
    assert by_id["LA_E_2834763"].subset == "eval" and by_id["LA_E_2834763"].extra["speaker"] == "LA_0039"


def test_asvspoof2019_subset_and_absolute_paths(la2019, tmp_path):
    out = tmp_path / "elsewhere" / "m.csv"
    assert main(["data", "import", "asvspoof2019-la", "--root", str(la2019), "--out", str(out),
                 "--subset", "dev"]) == 0
    rows = read_manifest(out)
    assert {r.subset for r in rows} == {"dev"} and len(rows) == 2
    assert all(Path(r.path).is_absolute() and r.audio_path.is_file() for r in rows)
    assert rows[0].extra == {"speaker": "LA_0069"}


def test_asvspoof2019_explicit_protocol(la2019, tmp_path):
    proto = la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    rows = import_corpus("asvspoof2019-la", la2019, protocols=[proto])
    assert {r.subset for r in rows} == {"eval"} and len(rows) == 2


def test_asvspoof2019_malformed_line_names_file_and_line(la2019):
    proto = la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    proto.write_text(P2019["dev"] + "LA_0070 LA_D_1000002 A05 spoof\n")
    with pytest.raises(ProtocolError) as err:
        import_corpus("asvspoof2019-la", la2019)
    msg = str(err.value)
    assert f"{proto}:3" in msg and "expected 5 fields" in msg and "LA_D_1000002 A05 spoof" in msg


def test_bad_key_and_duplicate_ids(la2019):
    proto = la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    proto.write_text("LA_0069 LA_D_1047731 - - genuinish\n")
    with pytest.raises(ProtocolError, match=r"dev\.trl\.txt:1: key must be bonafide or spoof"):
        import_corpus("asvspoof2019-la", la2019)
    proto.write_text(P2019["dev"] + "LA_0069 LA_D_1047731 - - bonafide\n")
    with pytest.raises(ProtocolError, match=r":3: 'LA_D_1047731' listed twice \(first on line 1\)"):
        import_corpus("asvspoof2019-la", la2019)
    proto.write_text("LA_0069 LA_D_1000001 - - spoof\n")
    with pytest.raises(ProtocolError, match="spoof trial without an attack"):
        import_corpus("asvspoof2019-la", la2019)


def test_bona_fide_with_attack_and_unreadable_protocols(la2019, tmp_path):
    proto = la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    proto.write_text("LA_0069 LA_D_1047731 - A05 bonafide\n")
    with pytest.raises(ProtocolError, match=r"dev\.trl\.txt:1: bona fide trial with attack id 'A05'"):
        import_corpus("asvspoof2019-la", la2019)
    proto.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(ProtocolError, match=r"dev\.trl\.txt:1: binary data, not a text protocol file"):
        import_corpus("asvspoof2019-la", la2019)
    proto.write_bytes("LA_0069 LA_D_1047731 - - bonafide\nLA_0069 LA_D_1000001 - A05 sp\xf6of\n".encode("latin-1"))
    with pytest.raises(ProtocolError, match=r"dev\.trl\.txt:2: not UTF-8 text"):
        import_corpus("asvspoof2019-la", la2019)
    proto.write_text("\n\n")
    with pytest.raises(ProtocolError, match=r"dev\.trl\.txt: empty protocol file"):
        import_corpus("asvspoof2019-la", la2019)
    with pytest.raises(ProtocolError, match="is a folder, not a protocol file"):
        import_corpus("asvspoof2019-la", la2019, protocols=[tmp_path])


def test_missing_audio_all_reported_and_counted(la2019, tmp_path, capsys):
    for stem in ("LA_T_1000137", "LA_T_1000138", "LA_E_8877452"):
        split = {"T": "train", "E": "eval"}[stem[3]]
        (la2019 / f"ASVspoof2019_LA_{split}" / "flac" / f"{stem}.flac").unlink()
    out = tmp_path / "m.csv"
    rc = main(["data", "import", "asvspoof2019-la", "--root", str(la2019), "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and "3 of 7 audio files missing" in err[0] and "m.csv.missing.txt" in err[0]
    listing = (tmp_path / "m.csv.missing.txt").read_text().splitlines()
    assert sorted(Path(p).stem for p in listing) == ["LA_E_8877452", "LA_T_1000137", "LA_T_1000138"]
    with pytest.raises(ProtocolError, match="3 of 7 audio files missing"):
        import_corpus("asvspoof2019-la", la2019)
    # Once the files are back, the import succeeds and the stale listing goes.
    for stem in ("LA_T_1000137", "LA_T_1000138", "LA_E_8877452"):
        split = {"T": "train", "E": "eval"}[stem[3]]
        _audio(la2019 / f"ASVspoof2019_LA_{split}" / "flac" / f"{stem}.flac")
    assert main(["data", "import", "asvspoof2019-la", "--root", str(la2019), "--out", str(out)]) == 0
    assert len(read_manifest(out)) == 7 and not (tmp_path / "m.csv.missing.txt").exists()


def test_audio_found_in_other_layout(la2019, tmp_path):
    # e.g. flac files unpacked without the flac/ folder level
    src = la2019 / "ASVspoof2019_LA_dev" / "flac"
    moved = la2019 / "ASVspoof2019_LA_dev" / "audio"
    src.rename(moved)
    rows = import_corpus("asvspoof2019-la", la2019, options=ImportOptions(subsets=["dev"]), out=la2019 / "m.csv")
    assert sorted(r.path for r in rows) == ["ASVspoof2019_LA_dev/audio/LA_D_1000001.flac",
                                            "ASVspoof2019_LA_dev/audio/LA_D_1047731.flac"]


# --------------------------------------------------------------------------------------------- ASVspoof 2021

def test_asvspoof2021_la_columns_and_subset_filter(corpus2021, caplog):
    with caplog.at_level("INFO"):
        official = import_corpus("asvspoof2021-la", corpus2021)
    # Default: the SUBSET column's official evaluation subset only, and the log says what was left out.
    assert sorted(Path(u.path).stem for u in official) == ["LA_E_1000002", "LA_E_9332881"]
    assert "skipped 1 hidden, 1 progress" in caplog.text
    rows = import_corpus("asvspoof2021-la", corpus2021, options=ImportOptions(subsets=["all"]))
    assert len(rows) == 4
    r = {Path(u.path).stem: u for u in rows}
    assert (r["LA_E_9332881"].attack, r["LA_E_9332881"].condition, r["LA_E_9332881"].subset) == ("A07", "alaw", "eval")
    assert r["LA_E_9332881"].extra == {"speaker": "LA_0009", "transmission": "ita_tx", "trim": "notrim"}
    assert (r["LA_E_5932896"].label, r["LA_E_5932896"].attack, r["LA_E_5932896"].subset) == ("bonafide", "-", "progress")
    progress = import_corpus("asvspoof2021-la", corpus2021, options=ImportOptions(subsets=["progress"]))
    assert [Path(u.path).stem for u in progress] == ["LA_E_5932896"]


def test_asvspoof2021_df_columns(corpus2021, tmp_path):
    out = tmp_path / "df.csv"
    assert main(["data", "import", "asvspoof2021-df", "--root", str(corpus2021), "--out", str(out),
                 "--subset", "eval,progress"]) == 0
    r = {Path(u.path).stem: u for u in read_manifest(out)}
    assert (r["DF_E_2000026"].condition, r["DF_E_2000026"].source, r["DF_E_2000026"].attack) == \
        ("mp3m4a", "asvspoof", "A09")
    assert r["DF_E_2000026"].extra["vocoder"] == "traditional_vocoder"
    assert (r["DF_E_2000028"].source, r["DF_E_2000028"].attack, r["DF_E_2000028"].subset) == \
        ("vcc2020", "Task1-team20", "progress")
    assert r["DF_E_2000027"].label == "bonafide" and r["DF_E_2000027"].condition == "nocodec"


def test_asvspoof2021_wrong_width_and_unknown_subset(corpus2021):
    key = corpus2021 / "keys" / "DF" / "CM" / "trial_metadata.txt"
    key.write_text(DF2021 + "LA_0043 DF_E_2000029 nocodec asvspoof A09 spoof notrim eval\n")
    with pytest.raises(ProtocolError, match=r"trial_metadata.txt:4: expected 13 fields"):
        import_corpus("asvspoof2021-df", corpus2021)
    with pytest.raises(ProtocolError, match=r"no utterances in subset\(s\) dev .*the protocol has 1 hidden, 1 "):
        import_corpus("asvspoof2021-la", corpus2021, options=ImportOptions(subsets=["eval", "dev"]))


def test_asvspoof2021_key_without_eval_trials_says_what_it_has(corpus2021):
    (corpus2021 / "keys" / "LA" / "CM" / "trial_metadata.txt").write_text(LA2021.splitlines(keepends=True)[1])
    with pytest.raises(ProtocolError, match=r"no utterances imported for subset\(s\) eval; the protocol has 1 pro"):
        import_corpus("asvspoof2021-la", corpus2021)


# --------------------------------------------------------------------------------------------- ASVspoof 5

def test_asvspoof5_columns(asv5):
    rows = import_corpus("asvspoof5", asv5, out=asv5 / "m.csv")
    assert len(rows) == 6
    r = {Path(u.path).stem: u for u in rows}
    e = r["E_0000000001"]
    assert (e.path, e.label, e.attack, e.condition, e.subset) == \
        ("flac_E_eval/E_0000000001.flac", "spoof", "A20", "C08", "eval")
    assert e.extra == {"speaker": "E_0001", "gender": "M", "codec_q": "6", "codec_seed": "1", "attack_tag": "AC2"}
    b = r["T_0000000001"]
    assert (b.label, b.attack, b.condition, b.subset) == ("bonafide", "-", "-", "train")


def test_asvspoof5_protocol_option_and_split_from_name(asv5):
    rows = import_corpus("asvspoof5", asv5, protocols=[asv5 / "ASVspoof5.dev.track_1.tsv"])
    assert {u.subset for u in rows} == {"dev"}
    odd = _write(asv5 / "mine.txt", ASV5["dev"])
    with pytest.raises(ProtocolError, match="cannot tell which split"):
        import_corpus("asvspoof5", asv5, protocols=[odd])
    assert len(import_corpus("asvspoof5", asv5, protocols=[odd], options=ImportOptions(subsets=["dev"]))) == 2


def test_asvspoof5_bad_line(asv5):
    (asv5 / "ASVspoof5.train.tsv").write_text(ASV5["train"] + "T_1 T_2 F - - - AC1 A01 maybe -\n")
    with pytest.raises(ProtocolError, match=r"ASVspoof5.train.tsv:3: key must be bonafide or spoof.*maybe"):
        import_corpus("asvspoof5", asv5)


# --------------------------------------------------------------------------------------------- In-the-Wild

def test_in_the_wild(itw, tmp_path):
    out = tmp_path / "itw.csv"
    assert main(["data", "import", "in-the-wild", "--root", str(itw.parent), "--out", str(out)]) == 0
    rows = read_manifest(out)
    assert [(Path(r.path).name, r.label, r.attack, r.subset) for r in rows] == [
        ("0.wav", "spoof", "unknown", "eval"), ("1.wav", "bonafide", "-", "eval"), ("2.wav", "bonafide", "-", "eval")]
    assert rows[1].extra["speaker"] == "Doe, John" and rows[0].source == "in-the-wild"


def test_in_the_wild_header_with_bom_and_paths_outside(itw):
    (itw / "meta.csv").write_text("\ufefffile,speaker,label\n0.wav,A,spoof\n1.wav,B,bona-fide\n", encoding="utf-8")
    assert [r.label for r in import_corpus("in-the-wild", itw)] == ["spoof", "bonafide"]
    (itw / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n/etc/passwd,B,bona-fide\n")
    with pytest.raises(ProtocolError, match=r"meta.csv:3: file '/etc/passwd' must be a name relative to"):
        import_corpus("in-the-wild", itw)


def test_in_the_wild_bad_label(itw):
    (itw / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n1.wav,B,bonafied\n")
    with pytest.raises(ProtocolError, match=r"meta.csv:3: label must be 'spoof' or 'bona-fide'.*bonafied"):
        import_corpus("in-the-wild", itw)


def _meta_with_open_quote_on_line_4(later_quote: bool = False) -> str:
    """A meta.csv of 10 lines (header + 9 rows) whose line 4 opens a quote it never closes."""
    lines = ["file,speaker,label"] + [f"{i}.wav,Speaker {i},{'spoof' if i % 2 else 'bona-fide'}" for i in range(9)]
    lines[3] = '"2.wav,Speaker 2,bona-fide'
    if later_quote:  # a stray quote further down closes the open field there
        lines[7] = '6.wa"v,Speaker 6,bona-fide'
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("later_quote", [False, True])
def test_in_the_wild_unclosed_quote_is_reported_where_it_opens(itw, later_quote):
    (itw / "meta.csv").write_text(_meta_with_open_quote_on_line_4(later_quote))
    assert len((itw / "meta.csv").read_text().splitlines()) == 10
    with pytest.raises(ProtocolError, match=r"meta\.csv:4: .*quoted field.*not closed") as info:
        import_corpus("in-the-wild", itw)
    assert info.value.line == 4 and "2.wav,Speaker 2" in str(info.value)
    with pytest.raises(ProtocolError, match=r"meta\.csv:4: "):
        read_protocol_key(itw / "meta.csv")


def test_in_the_wild_unclosed_quote_in_a_large_file_is_reported_where_it_opens(itw):
    """In a large file the open field outgrows the csv module's field size limit: still named at its line."""
    rows = [f"{i}.wav,Speaker {i},spoof" for i in range(20000)]
    rows[2] = '"2.wav,Speaker 2,spoof'
    (itw / "meta.csv").write_text("file,speaker,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ProtocolError, match=r"meta\.csv:4: .*(field larger|not closed)"):
        import_corpus("in-the-wild", itw)


def test_in_the_wild_quoted_fields_on_one_line_are_fine(itw):
    (itw / "meta.csv").write_text('file,speaker,label\n"0.wav","A, B",spoof\n\n1.wav,"C ""D""",bona-fide\n')
    rows = import_corpus("in-the-wild", itw)
    assert [(Path(r.path).name, r.extra["speaker"]) for r in rows] == [("0.wav", "A, B"), ("1.wav", 'C "D"')]


# --------------------------------------------------------------------------------------------- folder formats

def test_folders_any_depth_with_splits(tmp_path):
    root = tmp_path / "FoR"
    _audio(root / "for-norm" / "training" / "real" / "a.wav")
    _audio(root / "for-norm" / "training" / "fake" / "b.wav")
    _audio(root / "for-norm" / "testing" / "Fake" / "tacotron" / "c.flac")
    _audio(root / "for-norm" / "validation" / "bonafide" / "spk1" / "d.wav")
    rows = {Path(r.path).name: r for r in import_corpus("folders", root, out=tmp_path / "m.csv")}
    assert (rows["a.wav"].label, rows["a.wav"].attack, rows["a.wav"].subset, rows["a.wav"].source) == \
        ("bonafide", "-", "train", "for-norm")
    assert (rows["b.wav"].label, rows["b.wav"].attack) == ("spoof", "unknown")
    assert (rows["c.flac"].label, rows["c.flac"].attack, rows["c.flac"].subset) == ("spoof", "tacotron", "eval")
    assert (rows["d.wav"].label, rows["d.wav"].subset) == ("bonafide", "dev")
    assert rows["a.wav"].path == "FoR/for-norm/training/real/a.wav"


def test_folders_without_splits_and_unlabelled_files(tmp_path):
    root = tmp_path / "mine"
    _audio(root / "real" / "a.wav")
    _audio(root / "spoof" / "b.wav")
    rows = import_corpus("folders", root, options=ImportOptions(subset_name="test_set"))
    assert {r.subset for r in rows} == {"test_set"} and {r.source for r in rows} == {"mine"}
    _audio(root / "other" / "c.wav")
    with pytest.raises(ProtocolError, match=r"1 of 3 audio files are not inside a real/bonafide or fake/spoof folder"):
        import_corpus("folders", root)


def test_wavefake_with_bonafide_root(tmp_path):
    root = tmp_path / "WaveFake"
    _audio(root / "generated_audio" / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    _audio(root / "generated_audio" / "jsut_parallel_wavegan" / "BASIC5000_0001_gen.wav")
    lj = tmp_path / "LJSpeech-1.1"
    _audio(lj / "wavs" / "LJ001-0001.wav")
    out = tmp_path / "wf.csv"
    assert main(["data", "import", "wavefake", "--root", str(root), "--out", str(out),
                 "--bonafide-root", str(lj)]) == 0
    rows = {Path(r.path).name: r for r in read_manifest(out)}
    assert (rows["LJ001-0001_gen.wav"].attack, rows["LJ001-0001_gen.wav"].source) == ("ljspeech_melgan", "ljspeech")
    assert (rows["BASIC5000_0001_gen.wav"].attack, rows["BASIC5000_0001_gen.wav"].source) == \
        ("jsut_parallel_wavegan", "jsut")
    assert (rows["LJ001-0001.wav"].label, rows["LJ001-0001.wav"].attack, rows["LJ001-0001.wav"].source) == \
        ("bonafide", "-", "ljspeech")
    assert {r.subset for r in rows.values()} == {"all"}


def test_mlaad_with_mailabs(tmp_path):
    root = tmp_path / "MLAAD"
    _audio(root / "fake" / "de" / "facebook_mms-tts-deu" / "x.wav")
    _audio(root / "fake" / "en" / "tts_models_en_ljspeech_vits" / "y.wav")
    _write(root / "fake" / "de" / "facebook_mms-tts-deu" / "meta.csv", "path|x\n")  # not audio: ignored
    mailabs = tmp_path / "mailabs"
    _audio(mailabs / "de_DE" / "by_book" / "female" / "eva_k" / "book" / "wavs" / "z.wav")
    rows = {Path(r.path).name: r for r in import_corpus(
        "mlaad", root, options=ImportOptions(bonafide_roots=[str(mailabs)], subset_name="eval"))}
    assert (rows["x.wav"].label, rows["x.wav"].attack, rows["x.wav"].source) == ("spoof", "facebook_mms-tts-deu", "de")
    assert (rows["y.wav"].attack, rows["y.wav"].source) == ("tts_models_en_ljspeech_vits", "en")
    assert (rows["z.wav"].label, rows["z.wav"].source, rows["z.wav"].subset) == ("bonafide", "de", "eval")
    _audio(root / "fake" / "loose.wav")
    with pytest.raises(ProtocolError, match=r"loose.wav: not in a <language>/<model> folder"):
        import_corpus("mlaad", root)


def test_protocol_refused_for_folder_formats(tmp_path, itw):
    _audio(tmp_path / "c" / "real" / "a.wav")
    with pytest.raises(ProtocolError, match="takes its labels from folder names"):
        import_corpus("folders", tmp_path / "c", protocols=[itw / "meta.csv"])


def test_every_format_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["data", "import", "--help"])
    text = capsys.readouterr().out
    for fmt in ("asvspoof2019-la", "asvspoof2021-la", "asvspoof2021-df", "asvspoof5", "in-the-wild", "folders",
                "wavefake", "mlaad"):
        assert fmt in IMPORTERS and f"  {fmt} " in text
    assert "--bonafide-root" in text and "--subset" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(["data", "import", "asvspoof2019-la", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "corpus folder not found" in err


# --------------------------------------------------------------------------------------------- protocol keys

def test_read_protocol_key_detects_each_format(la2019, corpus2021, asv5, itw):
    k19 = read_protocol_key(la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt")
    assert k19["LA_T_1000137"].attack == "A01" and k19["LA_T_1000137"].subset == "train"
    kla = read_protocol_key(corpus2021 / "keys" / "LA" / "CM" / "trial_metadata.txt")
    assert kla["LA_E_9332881"].condition == "alaw"
    kdf = read_protocol_key(corpus2021 / "keys" / "DF" / "CM" / "trial_metadata.txt")
    assert kdf["DF_E_2000027"].label == "bonafide"
    k5 = read_protocol_key(asv5 / "ASVspoof5.eval.track_1.tsv")
    assert k5["E_0000000001"].condition == "C08"
    kw = read_protocol_key(itw / "meta.csv")
    assert kw["1.wav"].label == "bonafide"
    odd = _write(asv5 / "odd.txt", "a b c\n")
    with pytest.raises(ProtocolError, match=r"odd.txt:1: not a spoofrl manifest nor a known protocol"):
        read_protocol_key(odd)


def test_absent_split_protocol_is_warned_not_silent(la2019, caplog, tmp_path):
    (la2019 / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt").unlink()
    with caplog.at_level("WARNING"):
        rows = import_corpus("asvspoof2019-la", la2019)
    assert {r.subset for r in rows} == {"train", "dev"}
    assert "eval split is not imported" in caplog.text
    out = tmp_path / "m.csv"
    assert main(["data", "import", "asvspoof2019-la", "--root", str(la2019), "--out", str(out), "--split", "eval"]) == 2


def test_2021_key_elsewhere_never_takes_other_track(corpus2021, tmp_path):
    key_la = corpus2021 / "keys" / "LA" / "CM" / "trial_metadata.txt"
    key_la.rename(corpus2021 / "keys" / "LA" / "trial_metadata.txt")  # non-standard place
    assert {Path(u.path).stem[:2] for u in import_corpus("asvspoof2021-la", corpus2021)} == {"LA"}
    (corpus2021 / "keys" / "LA" / "trial_metadata.txt").unlink()
    with pytest.raises(ProtocolError, match="no keys/LA/CM/trial_metadata.txt found"):
        import_corpus("asvspoof2021-la", corpus2021)
