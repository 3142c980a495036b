"""Score files (write/read/keys) and the `spoofrl metrics` command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spoofrl.cli import main
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.errors import ProtocolError, SpoofrlError
from spoofrl.metrics import compute_eer, evaluate
from spoofrl.metrics.scorefile import read_scores, write_scores

REF_BONA = [0.9, 0.8, 0.7, 0.55, 0.3]
REF_SPOOF = [0.6, 0.4, 0.35, 0.2, 0.1, 0.05]


def _ref_file(path: Path, attacks=None, conditions=None) -> Path:
    utts = [f"b{i}.flac" for i in range(5)] + [f"s{i}.flac" for i in range(6)]
    labels = ["bonafide"] * 5 + ["spoof"] * 6
    return write_scores(path, utts, REF_BONA + REF_SPOOF, labels, attacks, conditions)


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


# --------------------------------------------------------------------------------------------- score files

def test_write_read_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=50)
    labels = ["bonafide" if i % 3 else "spoof" for i in range(50)]
    utts = [f"dir with space/u{i}.wav" for i in range(50)]
    path = write_scores(tmp_path / "s.tsv", utts, scores, labels, [f"A{i % 4}" for i in range(50)], ["mp3"] * 50)
    assert path.read_text().splitlines()[0] == "utt\tscore\tlabel\tattack\tcondition"
    table = read_scores(path)
    assert table.utt == utts and np.array_equal(table.score, scores) and table.label == labels
    assert table.attack[5] == "A1" and table.condition[0] == "mp3"


def test_write_refuses_nan_and_length_mismatch(tmp_path):
    with pytest.raises(SpoofrlError, match="NaN"):
        write_scores(tmp_path / "s.tsv", ["a", "b"], [0.1, float("nan")], ["bonafide", "spoof"])
    with pytest.raises(SpoofrlError, match="1 labels for 2 scores"):
        write_scores(tmp_path / "s.tsv", ["a", "b"], [0.1, 0.2], ["bonafide"])


def test_read_accepts_public_label_spellings_and_headerless(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("utt\tscore\tlabel\na\t1.5\tbona-fide\nb\t-2\tspoof\n")
    assert read_scores(p).label == ["bonafide", "spoof"]
    p.write_text("LA_E_1 1.5 bonafide\nLA_E_2 -2 spoof\n")  # ASVspoof-style, whitespace separated
    t = read_scores(p)
    assert t.utt == ["LA_E_1", "LA_E_2"] and t.score.tolist() == [1.5, -2.0]
    p.write_text("utt score label\nLA_E_1 1.5 bonafide\n")  # header written with spaces
    assert read_scores(p).label == ["bonafide"]


@pytest.mark.parametrize("body,match", [
    ("a\t0.1\tbonafide\nb\tnan\tspoof\n", r"s.tsv:3: score is nan"),
    ("a\t0.1\tbonafide\nb\tabc\tspoof\n", r"s.tsv:3: score 'abc' is not a number"),
    ("a\t0.1\tbonafide\nb\t0.2\n", r"s.tsv:3: expected 3 fields"),
    ("a\t0.1\tbonafide\na\t0.2\tspoof\n", r"s.tsv:3: utt 'a' is scored twice \(first on line 2\)"),
    ("a\t0.1\tbonafide\nb\t0.2\tmaybe\n", r"s.tsv:3: label must be 'bonafide' or 'spoof'"),
    ("a\t0.1\tbonafide\nb\t0.2\t-\n", r"s.tsv:3: utt 'b' has no label"),
    ("", r"s.tsv: no scores in file \(header only\)"),
])
def test_read_errors_name_file_and_line(tmp_path, body, match):
    p = tmp_path / "s.tsv"
    p.write_text("utt\tscore\tlabel\n" + body)
    with pytest.raises(ProtocolError, match=match):
        read_scores(p)


# --------------------------------------------------------------------------------------------- CLI

def test_cli_reference_case_table_and_json(tmp_path, capsys):
    path = _ref_file(tmp_path / "s.tsv")
    assert main(["metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert "18.333" in out and "0.5000" in out and "1.0000" in out and "0.9191" in out
    m = _json(capsys, ["metrics", str(path), "--json"])
    assert set(m) == {"eer", "threshold", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof"}
    assert m["eer"] == pytest.approx(11 / 60) and m["threshold"] == pytest.approx(0.4)
    assert (m["min_dcf"], m["act_dcf"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert m["cllr"] == pytest.approx(0.91914, abs=5e-6)   # the reference value, given to 5 decimals
    assert (m["n_bonafide"], m["n_spoof"]) == (5, 6)


def test_cli_tie_reference_case(tmp_path, capsys):
    path = write_scores(tmp_path / "t.tsv", list("abcdefgh"), [1, 2, 2, 3, 0, 2, 2, 1], ["bonafide"] * 4 + ["spoof"] * 4)
    m = _json(capsys, ["metrics", str(path), "--json"])
    assert m["eer"] == pytest.approx(0.5) and m["threshold"] == pytest.approx(2.0)


def test_cli_dcf_overrides_and_ci(tmp_path, capsys):
    path = _ref_file(tmp_path / "s.tsv")
    m = _json(capsys, ["metrics", str(path), "--json", "--p-spoof", "0.5", "--c-fa", "1", "--ci", "--n-boot", "200"])
    assert m["min_dcf"] == pytest.approx(evaluate(REF_BONA, REF_SPOOF, p_spoof=0.5, c_fa=1.0)["min_dcf"])
    assert m["min_dcf"] != pytest.approx(0.5)
    lo, hi = m["eer_ci"]
    assert 0 <= lo <= m["eer"] <= hi <= 1 and hi > lo


def test_cli_breakdown_by_attack_uses_all_bonafide(tmp_path, capsys):
    attacks = ["-"] * 5 + ["A01", "A02", "A01", "A02", "A01", "A02"]
    path = _ref_file(tmp_path / "s.tsv", attacks=attacks)
    m = _json(capsys, ["metrics", str(path), "--json", "--by", "attack"])
    assert set(m["breakdown"]) == {"A01", "A02"}
    a01 = [s for s, a in zip(REF_SPOOF, attacks[5:]) if a == "A01"]
    assert m["breakdown"]["A01"]["eer"] == pytest.approx(compute_eer(REF_BONA, a01)[0])
    assert (m["breakdown"]["A01"]["n_bonafide"], m["breakdown"]["A01"]["n_spoof"]) == (5, 3)
    assert m["eer"] == pytest.approx(11 / 60)
    assert main(["metrics", str(path), "--by", "attack"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "attack" and [row.split()[0] for row in table[1:]] == ["A01", "A02", "pooled"]


def test_cli_breakdown_by_condition_pools_within_condition(tmp_path, capsys):
    conditions = ["mp3", "mp3", "clean", "clean", "clean", "mp3", "mp3", "clean", "clean", "clean", "gsm"]
    path = _ref_file(tmp_path / "s.tsv", conditions=conditions)
    m = _json(capsys, ["metrics", str(path), "--json", "--by", "condition"])
    assert set(m["breakdown"]) == {"clean", "gsm", "mp3"}
    mp3_b = [s for s, c in zip(REF_BONA, conditions[:5]) if c == "mp3"]
    mp3_s = [s for s, c in zip(REF_SPOOF, conditions[5:]) if c == "mp3"]
    assert m["breakdown"]["mp3"]["eer"] == pytest.approx(compute_eer(mp3_b, mp3_s)[0])
    assert m["breakdown"]["gsm"] == {"eer": None, "threshold": None, "min_dcf": None, "act_dcf": None,
                                     "cllr": None, "n_bonafide": 0, "n_spoof": 1}


def test_cli_key_from_manifest(tmp_path, capsys):
    rows = [Utterance(f"audio/b{i}.flac", "bonafide", "-", "x", "clean", "eval") for i in range(5)] + \
           [Utterance(f"audio/s{i}.flac", "spoof", f"A0{i % 2}", "x", "clean", "eval") for i in range(6)]
    write_manifest(rows, tmp_path / "m.csv")
    path = write_scores(tmp_path / "s.tsv", [r.path for r in rows], REF_BONA + REF_SPOOF)
    assert path.read_text().splitlines()[0] == "utt\tscore"
    m = _json(capsys, ["metrics", str(path), "--key", str(tmp_path / "m.csv"), "--json", "--by", "attack"])
    assert m["eer"] == pytest.approx(11 / 60) and set(m["breakdown"]) == {"A00", "A01"}
    err = _error(capsys, ["metrics", str(path)])
    assert "has no label" in err and "pass a key" in err


def test_cli_key_from_asvspoof_protocol_headerless_scores(tmp_path, capsys):
    proto = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    ids_b = [f"LA_E_{i}" for i in range(5)]
    ids_s = [f"LA_E_{10 + i}" for i in range(6)]
    proto.write_text("".join(f"LA_0001 {u} - - bonafide\n" for u in ids_b) +
                     "".join(f"LA_0002 {u} - A{7 + i % 2:02d} spoof\n" for i, u in enumerate(ids_s)))
    scores = tmp_path / "cm_scores.txt"
    scores.write_text("".join(f"{u} {s}\n" for u, s in zip(ids_b + ids_s, REF_BONA + REF_SPOOF)))
    m = _json(capsys, ["metrics", str(scores), "--key", str(proto), "--json", "--by", "attack"])
    assert m["eer"] == pytest.approx(11 / 60) and set(m["breakdown"]) == {"A07", "A08"}
    # Manifest-style paths match protocol ids by file name.
    scores.write_text("utt\tscore\n" + "".join(f"ASVspoof2019_LA_eval/flac/{u}.flac\t{s}\n"
                                                for u, s in zip(ids_b + ids_s, REF_BONA + REF_SPOOF)))
    assert _json(capsys, ["metrics", str(scores), "--key", str(proto), "--json"])["n_spoof"] == 6


def test_cli_key_errors(tmp_path, capsys):
    proto = tmp_path / "key.txt"
    proto.write_text("LA_0001 LA_E_1 - - bonafide\nLA_0002 LA_E_2 - A07 spoof\n")
    scores = tmp_path / "s.tsv"
    scores.write_text("utt\tscore\nLA_E_1\t1.0\nLA_E_9\t0.5\n")
    err = _error(capsys, ["metrics", str(scores), "--key", str(proto)])
    assert f"{scores}:3: utt 'LA_E_9' is not in the key" in err
    scores.write_text("utt\tscore\tlabel\nLA_E_1\t1.0\tspoof\nLA_E_2\t0.5\tspoof\n")
    err = _error(capsys, ["metrics", str(scores), "--key", str(proto)])
    assert f"{scores}:2: utt 'LA_E_1' is labelled spoof here but bonafide in the key" in err


def test_cli_single_class_and_nan(tmp_path, capsys):
    p = tmp_path / "s.tsv"
    p.write_text("utt\tscore\tlabel\na\t0.1\tspoof\nb\t0.2\tspoof\n")
    assert f"{p}: all 2 scores are spoof" in _error(capsys, ["metrics", str(p)])
    p.write_text("utt\tscore\tlabel\na\t0.1\tbonafide\nb\tNaN\tspoof\n")
    assert f"{p}:3: score is NaN" in _error(capsys, ["metrics", str(p), "--json"])


def test_metrics_help_states_score_convention(capsys):
    with pytest.raises(SystemExit):
        main(["metrics", "--help"])
    assert "HIGHER SCORE = MORE BONA FIDE" in capsys.readouterr().out


def test_cli_unusable_files_and_breakdowns(tmp_path, capsys):
    p = tmp_path / "s.tsv"
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00")
    assert f"{p}:1: binary data, not a text score file" in _error(capsys, ["metrics", str(p)])
    p.write_text("\ufeffutt\tscore\tlabel\na\t1\tbonafide\nb\t0\tspoof\n", encoding="utf-8")  # BOM
    assert _json(capsys, ["metrics", str(p), "--json"])["eer"] == 0.0
    err = _error(capsys, ["metrics", str(p), "--by", "attack"])
    assert f"{p}: cannot break results down by attack: every spoof row has attack '-'" in err
    assert f"{tmp_path / 'nope.csv'}: key file not found" in _error(
        capsys, ["metrics", str(p), "--key", str(tmp_path / "nope.csv")])
