"""Score files in the layouts people already hold: each read from a file in its real layout, gzip too,
with the same metrics as spoofrl's own TSV of the same trials."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from spoofrl.cli import main
from spoofrl.errors import ProtocolError
from spoofrl.metrics import evaluate
from spoofrl.metrics.scorefile import read_scores, write_scores

# Trials of the reference example in the notes: EER 18.33 % at threshold 0.40.
BONA = [0.9, 0.8, 0.7, 0.55, 0.3]
SPOOF = [0.6, 0.4, 0.35, 0.2, 0.1, 0.05]
ATTACKS = ["A07", "A08", "A07", "A09", "A08", "A09"]
UTTS = [f"LA_E_{1000 + i}" for i in range(len(BONA) + len(SPOOF))]
SCORES = BONA + SPOOF
LABELS = ["bonafide"] * len(BONA) + ["spoof"] * len(SPOOF)
ATTACK_COL = ["-"] * len(BONA) + ATTACKS
EXPECTED = evaluate(BONA, SPOOF)


def lines_2019():
    # The ASVspoof 2019 t-DCF scripts and AASIST: `utt src key score`, space-separated, no header.
    return [f"{u} {a} {lab} {s}" for u, a, lab, s in zip(UTTS, ATTACK_COL, LABELS, SCORES)]


def lines_asv5_aasist():
    # ASVspoof 5 AASIST baseline: `speaker utt score key`.
    return [f"E_{i % 3:04d} {u} {s} {lab}" for i, (u, s, lab) in enumerate(zip(UTTS, SCORES, LABELS))]


def lines_asv5_aasist_src():
    return [f"E_{i % 3:04d} {u} {a} {lab} {s}" for i, (u, a, lab, s) in
            enumerate(zip(UTTS, ATTACK_COL, LABELS, SCORES))]


def lines_utt_label_score():
    return [f"{u}\t{lab}\t{s}" for u, lab, s in zip(UTTS, LABELS, SCORES)]


@pytest.mark.parametrize("make_lines,attacks_known", [
    (lines_2019, True), (lines_asv5_aasist, False), (lines_asv5_aasist_src, True), (lines_utt_label_score, False)])
def test_headerless_layouts_read_like_the_spoofrl_tsv(tmp_path, make_lines, attacks_known):
    path = tmp_path / "scores.txt"
    path.write_text("\n".join(make_lines()) + "\n")
    table = read_scores(path)
    assert table.utt == UTTS and table.label == LABELS
    np.testing.assert_array_equal(table.score, SCORES)
    assert table.attack == (ATTACK_COL if attacks_known else ["-"] * len(UTTS))
    assert evaluate(table.bonafide_scores(), table.spoof_scores()) == EXPECTED


def test_asvspoof5_submission_and_key_files(tmp_path, capsys):
    scores = tmp_path / "score.tsv"
    scores.write_text("filename\tcm-score\n" + "".join(f"{u}\t{s}\n" for u, s in zip(UTTS, SCORES)))
    key = tmp_path / "key.tsv"
    key.write_text("filename\tcm-label\n" + "".join(f"{u}\t{lab}\n" for u, lab in zip(UTTS[::-1], LABELS[::-1])))
    table = read_scores(scores, key=key)
    assert table.label == LABELS
    assert main(["metrics", str(scores), "--key", str(key), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eer"] == pytest.approx(EXPECTED["eer"]) and out["min_dcf"] == pytest.approx(EXPECTED["min_dcf"])


def test_asvspoof5_full_key_with_attack_and_codec_columns(tmp_path):
    """The evaluation package's full keys: space-separated with a header, more columns than it needs."""
    key = tmp_path / "full_key.txt"
    rows = [f"E_{i % 3:04d} {u} F {('C0' + str(i % 2))} {a if lab == 'spoof' else 'bonafide'} {lab} -"
            for i, (u, a, lab) in enumerate(zip(UTTS, ATTACK_COL, LABELS))]
    key.write_text("tar_spk_anon trial_anon gender codec attack_anon cm-label track_2_tag\n" + "\n".join(rows) + "\n")
    scores = tmp_path / "score.tsv"
    write_scores(scores, UTTS, SCORES)
    table = read_scores(scores, key=key)
    assert table.label == LABELS and table.attack == ATTACK_COL
    assert table.condition == [f"C0{i % 2}" for i in range(len(UTTS))]


def test_gzip_score_and_key_files(tmp_path, capsys):
    path = tmp_path / "scores.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines_2019()) + "\n")
    table = read_scores(path)
    assert table.label == LABELS and table.attack == ATTACK_COL
    # Told by its bytes, not its name; a gzip key works too.
    renamed = tmp_path / "scores.tsv"
    renamed.write_bytes(path.read_bytes())
    assert read_scores(renamed).utt == UTTS
    key = tmp_path / "key.tsv.gz"
    with gzip.open(key, "wt") as fh:
        fh.write("filename\tcm-label\n" + "".join(f"{u}\t{lab}\n" for u, lab in zip(UTTS, LABELS)))
    bare = tmp_path / "bare.tsv"
    write_scores(bare, UTTS, SCORES)
    assert read_scores(bare, key=key).label == LABELS


def test_truncated_gzip_is_a_one_line_error(tmp_path):
    path = tmp_path / "scores.txt.gz"
    path.write_bytes(gzip.compress(("\n".join(lines_2019() * 50) + "\n").encode())[:-30])
    with pytest.raises(ProtocolError, match="gzip"):
        read_scores(path)


def test_unknown_layout_names_the_accepted_formats(tmp_path, capsys):
    path = tmp_path / "odd.txt"
    path.write_text("a b c d e f g\n")
    assert main(["metrics", str(path)]) == 2
    err = capsys.readouterr().err
    assert "odd.txt:1" in err and "asvspoof2019" in err and "asvspoof5" in err and "--format" in err


def test_forced_format_reads_an_ambiguous_line_and_refuses_a_mismatch(tmp_path):
    path = tmp_path / "scores.txt"
    # Fits both `utt score label attack` and `utt attack key score` (an attack id that is a number).
    path.write_text("u1 1.5 bonafide 7\nu2 -0.5 spoof 8\n")
    with pytest.raises(ProtocolError, match="ambiguous"):
        read_scores(path)
    table = read_scores(path, score_format="spoofrl-attack")
    assert table.label == ["bonafide", "spoof"] and list(table.score) == [1.5, -0.5]
    with pytest.raises(ProtocolError, match="--format asvspoof5"):
        read_scores(path, score_format="asvspoof5")


def test_spoofrl_headerless_files_still_read_as_before(tmp_path):
    path = tmp_path / "scores.txt"
    path.write_text("a 1.0 bonafide\nb 0.5 spoof\n")
    assert read_scores(path).label == ["bonafide", "spoof"]
    path.write_text("a 1.0\nb 0.5\n")
    assert read_scores(path, require_labels=False).utt == ["a", "b"]
