"""Names in text reports cannot drive the terminal: a file name holding an escape sequence (retitle the window,
clear the screen), a newline, a C1 control or a bidi override is printed escaped by `spoofrl detect` (table, CSV)
and `spoofrl explain` (text), while the JSON reports keep the exact name (json.dumps escapes it)."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.detect.report import printable
from test_detect import SR, crafted_model_dir, low_tone

# \e]0;...\a retitles the window, \e[2J clears the screen, \n splits a block, \x9b is a one-byte CSI,
# U+202E shows the rest backwards, \x7f is DEL.
HOSTILE = "a\x1b]0;owned\x07\x1b[2J\nsecond line\x9b\u202egnp\x7f.wav"
SHOWN = "a\\x1b]0;owned\\x07\\x1b[2J\\nsecond line\\x9b\\u202egnp\\x7f.wav"
# Everything a terminal acts on or that reorders text, except the report's own line breaks.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("text, shown", [
    (HOSTILE, SHOWN),
    ("tab\there\r", "tab\\there\\r"),
    ("\u2066isolate\u2069 \u200f", "\\u2066isolate\\u2069 \\u200f"),
    ("bytes \udcff", "bytes \\udcff"),     # an undecodable byte of a file name (stdout cannot encode it)
    ("café 日本語 — ok.wav", "café 日本語 — ok.wav"),    # scripts and accents are printed as they are
])
def test_printable_escapes_controls_and_keeps_the_rest(text, shown):
    assert printable(text) == shown


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return crafted_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture
def hostile_file(tmp_path) -> Path:
    path = tmp_path / HOSTILE
    sf.write(str(path), low_tone(1.0), SR, format="WAV")
    return path


def detect(capsys, *args: str) -> str:
    assert main(["detect", "--score-without-speech", *args]) == 0
    return capsys.readouterr().out


def test_detect_table_prints_the_name_escaped_on_one_line(hostile_file, model_dir, capsys):
    out = detect(capsys, str(hostile_file), "--model", str(model_dir))
    assert not UNSAFE.search(out)
    row = next(line for line in out.splitlines() if SHOWN in line)
    assert row.startswith(printable(str(hostile_file))) and row.rstrip().endswith("bonafide")


def test_detect_csv_prints_the_name_escaped(hostile_file, model_dir, capsys):
    out = detect(capsys, str(hostile_file), "--model", str(model_dir), "--format", "csv")
    assert not UNSAFE.search(out) and len(out.splitlines()) == 2     # the header and one row
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["path"] == printable(str(hostile_file))


def test_detect_json_keeps_the_exact_name_in_ascii(hostile_file, model_dir, capsys):
    out = detect(capsys, str(hostile_file), "--model", str(model_dir), "--format", "json")
    assert out.isascii() and not UNSAFE.search(out)
    assert json.loads(out)["files"][0]["path"] == str(hostile_file)


class FakeExplainer:
    """What `spoofrl explain` needs of an explainer, without an audio LLM."""

    reference = None
    max_completion_length = 16
    model = type("Model", (), {"device": "cpu"})()

    def info(self) -> dict:
        return {"name": "fake", "path": "/models/fake", "kind": "spoofrl-alm", "sample_rate": SR,
                "evidence_reference": None, "claims_checked": False, "max_completion_length": 16}


@pytest.fixture
def explained(monkeypatch, hostile_file):
    """`spoofrl explain` with the model replaced: the hostile file is judged spoof, with a rationale that holds
    escape sequences too (a model can write them), and a second file failed with its name in the error."""
    from spoofrl.cli import cmd_explain
    from spoofrl.detect import explainer
    from spoofrl.detect.explain_report import FileExplanation

    def explain_files(_, inputs, *args):
        judged = FileExplanation(inputs[0].path, verdict="spoof", score=-1.5, seconds=1.0,
                                 rationale="band\x1b[31m energy\u202e low\nsecond paragraph",
                                 notes=[f"note on {inputs[0].path}"])
        failed = FileExplanation(inputs[0].path + ".copy", error=f"could not decode {inputs[0].path}")
        return [judged, failed], False
    monkeypatch.setattr(explainer, "load_explainer", lambda *a: FakeExplainer())
    monkeypatch.setattr(cmd_explain, "explain_files", explain_files)
    return hostile_file


def test_explain_text_prints_names_and_rationale_escaped(explained, capsys):
    assert main(["explain", str(explained)]) == 1      # one file failed
    out = capsys.readouterr().out
    assert not UNSAFE.search(out)
    lines = out.splitlines()
    name = printable(str(explained))
    assert name in lines and f"{name}.copy" in lines                 # each block's head is one line
    assert f"  error: could not decode {name}" in lines and f"  note: note on {name}" in lines
    assert "    band\\x1b[31m energy\\u202e low" in lines and "    second paragraph" in lines


def test_explain_json_keeps_the_exact_name_in_ascii(explained, capsys):
    assert main(["explain", str(explained), "--format", "json"]) == 1
    out = capsys.readouterr().out
    assert out.isascii() and not UNSAFE.search(out)
    report = json.loads(out)
    assert [f["path"] for f in report["files"]] == [str(explained), str(explained) + ".copy"]
    assert report["files"][0]["rationale"] == "band\x1b[31m energy\u202e low\nsecond paragraph"


def test_metrics_table_prints_attack_names_escaped(tmp_path, capsys):
    """The attack names of `metrics --by attack` come from the score file: escaped in the table, exact in JSON."""
    attack = "A01\x1b]0;owned\x07\x1b[2J\u202e"
    rows = [("b1", 2.0, "bonafide", "-"), ("b2", 1.0, "bonafide", "-"), ("s1", -1.0, "spoof", attack),
            ("s2", 1.5, "spoof", attack)]
    scores = tmp_path / "scores.tsv"
    scores.write_text("utt\tscore\tlabel\tattack\n" + "".join(f"{u}\t{s}\t{lab}\t{a}\n" for u, s, lab, a in rows))
    assert main(["metrics", str(scores), "--by", "attack"]) == 0
    out = capsys.readouterr().out
    assert not UNSAFE.search(out) and any(line.startswith(printable(attack)) for line in out.splitlines())
    assert main(["metrics", str(scores), "--by", "attack", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and attack in json.loads(out)["breakdown"]
