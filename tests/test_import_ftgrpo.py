"""`spoofrl data import ftgrpo`: the FT-GRPO paper's ms-swift label files -> manifest + rationale targets."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.importers import import_corpus
from spoofrl.data.manifest import read_manifest
from spoofrl.errors import ProtocolError
from spoofrl.training.tasks.generation import read_rationales

SYSTEM = ("As an expert in audio deepfake detection, you can identify real and deepfake audio.\n"
          "Format example:\n<think>\n<Frequency Domain>[...]\n<Time Domain>[...]\n</think>\n"
          "<answer>[real/fake]</answer>")
THINK_FAKE = ("<think>\n<Frequency Domain>Energy above 7 kHz is unnaturally flat.\n"
              "<Time Domain>The pauses carry a constant hiss.\n</think>")
THINK_REAL = ("<think>\n<Frequency Domain>Harmonics decay naturally.\n"
              "<Time Domain>Breaths between words are natural.\n</think>")


def _audio(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * np.random.default_rng(seed).standard_normal(800)).astype(np.float32), 16000)
    return path


def _sft(audio: str, think: str, answer: str, system: str | None = SYSTEM) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": "<audio>Is this audio real or fake?"},
        {"role": "assistant", "content": f"{think}\n<answer>{answer}</answer>"}]
    return {"messages": messages, "audios": [audio]}


def _grpo(audio: str, solution: str) -> dict:
    return {"messages": [{"role": "user", "content": "<audio>Is this audio real or fake?"}], "audios": [audio],
            "solution": solution}


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture
def corpus(tmp_path):
    """Audio under root/LA (relative paths in the records, one absolute), a .jsonl train file, a .json dev array."""
    root = tmp_path / "data"
    for i, name in enumerate(["LA_T_1", "LA_T_2", "LA_T_3", "LA_D_1", "LA_D_2"]):
        _audio(root / "LA" / f"{name}.wav", i)
    train = _jsonl(tmp_path / "label" / "19la_train.jsonl", [
        _sft("LA/LA_T_1.wav", THINK_FAKE, "fake"),
        _sft("LA/LA_T_2.wav", THINK_REAL, "Real"),
        _sft(str(root / "LA" / "LA_T_3.wav"), THINK_FAKE, "FAKE", system="another prompt"),
    ])
    dev = tmp_path / "label" / "19la_dev.json"
    dev.write_text(json.dumps([_grpo("LA/LA_D_1.wav", "<answer>fake</answer>"), _grpo("LA/LA_D_2.wav", "real")],
                              indent=2))
    return root, train, dev


def _import(root: Path, out: Path, *protocols: Path, extra: tuple[str, ...] = ()) -> int:
    args = ["data", "import", "ftgrpo", "--root", str(root), "--out", str(out)]
    for p in protocols:
        args += ["--protocol", str(p)]
    return main(args + list(extra))


def test_manifest_rationales_and_system_prompt(corpus, capsys):
    root, train, dev = corpus
    out = root / "manifests" / "ftgrpo.csv"
    assert _import(root, out, train, dev) == 0
    printed = capsys.readouterr().out
    rows = {Path(r.path).name: r for r in read_manifest(out)}
    assert {n: (r.label, r.attack, r.source, r.subset) for n, r in rows.items()} == {
        "LA_T_1.wav": ("spoof", "unknown", "ftgrpo", "train"), "LA_T_2.wav": ("bonafide", "-", "ftgrpo", "train"),
        "LA_T_3.wav": ("spoof", "unknown", "ftgrpo", "train"), "LA_D_1.wav": ("spoof", "unknown", "ftgrpo", "dev"),
        "LA_D_2.wav": ("bonafide", "-", "ftgrpo", "dev")}
    assert all(Path(r.path).is_absolute() for r in rows.values())   # not under the manifest's folder: absolute
    assert all(r.audio_path.is_file() for r in rows.values())

    rationales = out.with_name("ftgrpo.rationales.jsonl")
    records = read_rationales(str(rationales))
    assert set(records) == {(r.path, r.subset) for r in rows.values()}
    fake = records[(rows["LA_T_1.wav"].path, "train")]
    assert fake["completion"] == f"{THINK_FAKE}\n<answer>spoof</answer>"
    assert fake["rationale"] == THINK_FAKE and fake["claims"] == [] and fake["evidence"] == []
    assert fake["label"] == "spoof" and Path(fake["path"]) == (root / "LA" / "LA_T_1.wav")
    assert fake["origin"] == f"{train}:1"
    assert records[(rows["LA_T_2.wav"].path, "train")]["completion"].endswith("<answer>bonafide</answer>")
    assert records[(rows["LA_T_3.wav"].path, "train")]["completion"].endswith("<answer>spoof</answer>")
    answer_only = records[(rows["LA_D_1.wav"].path, "dev")]
    assert answer_only["completion"] == "<answer>spoof</answer>" and answer_only["rationale"] == ""
    assert records[(rows["LA_D_2.wav"].path, "dev")]["completion"] == "<answer>bonafide</answer>"
    assert [json.loads(line)["utt"] for line in rationales.read_text().splitlines()] == [
        rows[n].path for n in ("LA_T_1.wav", "LA_T_2.wav", "LA_T_3.wav", "LA_D_1.wav", "LA_D_2.wav")]

    system = out.with_name("ftgrpo.system.txt").read_text()
    assert system == SYSTEM.replace("[real/fake]", "[bonafide/spoof]") + "\n"   # only the answer tag's words
    assert "identify real and deepfake" in system
    assert out.with_name("ftgrpo.prompt.txt").read_text() == "<audio>Is this audio real or fake?\n"
    assert "system prompt of 2 of 5 records; 1 other" in printed and "generation.system" in printed
    assert "5 targets (3 with a <think> rationale, 2 answer only" in printed


def test_items_train_on_the_rationales_unchanged(corpus, tmp_path):
    from spoofrl.training.config import GenerationConfig
    from spoofrl.training.tasks.generation import Items
    root, train, dev = corpus
    out = root / "m.csv"
    assert _import(root, out, train, dev) == 0
    cfg = GenerationConfig(rationales=str(out.with_suffix(".rationales.jsonl")))
    utts = read_manifest(out, ["train"])
    items = Items.of(utts, cfg, str(out), read_rationales(cfg.rationales), need_rationales=True)
    assert items.targets[0] == f"{THINK_FAKE}\n<answer>spoof</answer>"
    assert items.columns["evidence"] == [[], [], []]
    assert utts[0].path == "LA/LA_T_1.wav"   # under the manifest's folder: relative


def test_subset_name_legacy_keys_and_bare_answers(tmp_path):
    root = tmp_path / "root"
    _audio(root / "a.wav")
    _audio(root / "b.wav", 1)
    _audio(root / "c.wav", 2)
    labels = _jsonl(tmp_path / "labels.jsonl", [
        {"query": "<audio>real or fake?", "response": "fake", "audios": "a.wav"},      # ms-swift query/response
        {"messages": [{"role": "user", "content": "<audio>?"}, {"role": "assistant", "content": "real"}],
         "audios": ["b.wav"], "solution": "<answer>real</answer>"},
        {"audios": ["c.wav"], "solution": "Fake"}])                                       # no conversation
    with pytest.raises(ProtocolError, match="cannot tell the split"):
        import_corpus("ftgrpo", root, protocols=[labels])
    out = tmp_path / "m.csv"
    assert _import(root, out, labels, extra=("--subset-name", "posttrain")) == 0
    assert [(r.label, r.subset) for r in read_manifest(out)] == [("spoof", "posttrain"), ("bonafide", "posttrain"),
                                                                 ("spoof", "posttrain")]
    records = read_rationales(str(tmp_path / "m.rationales.jsonl"))
    assert [r["completion"] for r in records.values()] == ["<answer>spoof</answer>", "<answer>bonafide</answer>",
                                                           "<answer>spoof</answer>"]
    assert not (tmp_path / "m.system.txt").exists()


def test_missing_audio_is_counted_and_listed(corpus, capsys):
    root, train, dev = corpus
    (root / "LA" / "LA_D_2.wav").unlink()
    out = root / "m.csv"
    assert _import(root, out, train, dev) == 2
    err = capsys.readouterr().err.splitlines()[-1]   # after the INFO line saying it searched by file name
    assert "error:" in err and "1 of 5 audio files missing" in err and "LA_D_2.wav" in err
    assert not out.exists() and "LA_D_2.wav" in out.with_name("m.csv.missing.txt").read_text()


GOOD = _sft("LA/LA_T_1.wav", THINK_FAKE, "fake")


@pytest.mark.parametrize("bad, reason", [
    ('{"messages": [', "not a JSON record"),
    ({"messages": GOOD["messages"]}, "record without audio"),
    ({**GOOD, "audios": ["LA/LA_T_1.wav", "LA/LA_T_2.wav"]}, "record with 2 audios"),
    (_sft("LA/LA_T_2.wav", THINK_FAKE, "maybe"), "unknown label 'maybe'"),
    (_grpo("LA/LA_T_2.wav", "<answer>unsure</answer>"), "unknown label 'unsure' in 'solution'"),
    ({**_sft("LA/LA_T_2.wav", THINK_FAKE, "x"), "messages": GOOD["messages"][:2] + [
        {"role": "assistant", "content": THINK_FAKE}]}, "missing answer: the assistant turn has no <answer>"),
    ({"messages": GOOD["messages"][:2], "audios": ["LA/LA_T_2.wav"]}, "missing answer: no assistant turn"),
    ({**_sft("LA/LA_T_2.wav", THINK_FAKE, "fake"), "solution": "real"}, "answers spoof but 'solution' says bonafide"),
    (GOOD, "listed twice \\(first at .*19la_train.jsonl:1\\)"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_jsonl_record_is_one_line_naming_file_and_line(corpus, capsys, bad, reason):
    root, train, _ = corpus
    with train.open("a") as fh:
        fh.write("\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")   # a blank line, then line 5
    assert _import(root, root / "m.csv", train) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{train}:5: " in err
    assert re.search(reason, err), err


@pytest.mark.parametrize("bad, reason", [
    ({"audios": ["LA/LA_D_2.wav"], "messages": "fake"}, "record 2: 'messages' must be a list"),
    ({"audios": ["LA/LA_D_2.wav"]}, "record 2: missing answer: no assistant turn and no 'solution'"),
    ({"messages": GOOD["messages"], "audios": []}, "record 2: record without audio"),
    (_grpo("LA/LA_D_2.wav", "half"), "record 2: unknown label 'half'"),
])
def test_bad_json_array_record_names_line_and_record(corpus, capsys, bad, reason):
    root, _, dev = corpus
    dev.write_text(json.dumps([_grpo("LA/LA_D_1.wav", "fake"), bad], indent=2))
    line = dev.read_text().split("\n").index("  {") + 1   # the line the second record starts on
    line = dev.read_text().split("\n").index("  {", line) + 1
    assert _import(root, root / "m.csv", dev) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dev}:{line}: {reason}" in err


def test_malformed_json_array_names_line(corpus, capsys):
    root, _, dev = corpus
    dev.write_text('[\n  {"audios": ["LA/LA_D_1.wav"], "solution": "fake"},\n  {"audios": ]\n]\n')
    assert _import(root, root / "m.csv", dev) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dev}:3: not valid JSON in record 2" in err
    dev.write_text('[{"audios": ["LA/LA_D_1.wav"], "solution": "fake"},]')
    assert _import(root, root / "m.csv", dev) == 2
    assert f"{dev}:1: trailing comma after record 1" in capsys.readouterr().err


def test_no_label_file_or_empty_file(corpus, tmp_path, capsys):
    root, _, _ = corpus
    assert _import(root, tmp_path / "m.csv") == 2
    assert "pass each with --protocol" in capsys.readouterr().err
    empty = tmp_path / "x_train.jsonl"
    empty.write_text("\n")
    assert _import(root, tmp_path / "m.csv", empty) == 2
    assert "empty label file" in capsys.readouterr().err
