import re
from pathlib import Path

import numpy as np
import soundfile as sf

from spoofrl.cli import COMMANDS, build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def _parsers(parser, path=()):
    """(command path, parser) of every subcommand, at every depth (`data import`, ...)."""
    for name, sub in _subcommands(parser).items():
        yield path + (name,), sub
        yield from _parsers(sub, path + (name,))


def _squeezed(text: str) -> str:
    """Text without whitespace: argparse re-wraps help strings (and may break lines after a hyphen)."""
    return "".join(text.split())


def _undocumented(parser) -> list[str]:
    """What `parser.format_help()` fails to document: an option string absent from the text (as a whole word:
    '--out' inside '--output' does not count), an argument without a help string, or a help string that the
    text does not show. Arguments hidden on purpose (help=SUPPRESS) are skipped."""
    import argparse
    text = parser.format_help()
    flat = _squeezed(text)
    problems = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        for opt in action.option_strings:
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                problems.append(f"{opt}: not in the help text")
        name = "/".join(action.option_strings) or action.dest
        if not action.option_strings and action.choices and not action.help:
            # a positional documented by its choices in the description (`spoofrl config KIND`)
            missing = [c for c in action.choices if c not in (parser.description or "")]
            if missing:
                problems.append(f"{name}: no help string, and the description does not name {missing}")
            continue
        if not (action.help or "").strip():
            problems.append(f"{name}: empty help string")
        elif _squeezed(parser._get_formatter()._expand_help(action)) not in flat:
            problems.append(f"{name}: its help string is not shown")
        if not action.option_strings and (action.metavar or action.dest) not in text:
            problems.append(f"{name}: positional not named in the help text")
    return problems


# the statement of what a score means, in the help of the commands that print, read or transform scores
SCORE_MEANING = re.compile(r"higher( score)? = more bona fide", re.I)
STATES_SCORE_MEANING = ["demo", "experiment", "train", "detect", "explain", "calibrate", "serve", "metrics", "models",
                        "export"]


def test_every_command_has_help():
    parser = build_parser()
    commands = _subcommands(parser)
    assert list(commands) == COMMANDS  # registered, and in the order `spoofrl --help` promises
    top = parser.format_help()
    assert _undocumented(parser) == []
    assert SCORE_MEANING.search(" ".join(top.split())) and "log-likelihood ratio" in top
    # every subcommand has a one-line summary in `spoofrl --help`
    summaries = {a.dest: a.help for a in next(a for a in parser._actions if a.__class__.__name__ ==
                                                 "_SubParsersAction")._choices_actions}
    for name in COMMANDS:
        assert (summaries.get(name) or "").strip(), name
        assert re.search(rf"^\s+{name}\s+\S", top, re.M), name
    seen = set()
    for path, sub in _parsers(parser):
        name = " ".join(path)
        seen.add(name)
        text = sub.format_help()
        assert text.startswith(f"usage: spoofrl {name}"), name
        assert sub.description and _squeezed(sub.description)[:60] in _squeezed(text), name
        assert _undocumented(sub) == [], name
        children = _subcommands(sub)
        if children:  # `spoofrl data`: lists each of its subcommands with a summary
            actions = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
            for child in actions._choices_actions:
                assert child.help and re.search(rf"^\s+{child.dest}\s+\S", text, re.M), (name, child.dest)
        if path[0] in STATES_SCORE_MEANING and len(path) == 1:
            assert SCORE_MEANING.search(" ".join(text.split())), f"{name}: does not say what a score means"
    assert {"data import", "data synth"} <= seen and set(COMMANDS) <= seen


def test_help_check_finds_undocumented_options():
    """The check above is not vacuous: an option without help, one hidden from the text, and a positional
    whose choices the description does not explain are each reported."""
    import argparse
    p = argparse.ArgumentParser(prog="x", description="does things")
    p.add_argument("--documented", help="a real help string")
    p.add_argument("--bare")
    p.add_argument("kind", choices=["a", "b"])
    assert _undocumented(p) == ["--bare: empty help string",
                                "kind: no help string, and the description does not name ['a', 'b']"]
    p.description = "KIND is a or b"
    assert _undocumented(p) == ["--bare: empty help string"]
    q = argparse.ArgumentParser(prog="x")
    q.add_argument("--out", help="%(prog)s writes here")
    full = q.format_help()
    assert _undocumented(q) == [] and "x writes here" in full
    # a text that shows only '--output' and lost the help string: '--out' inside '--output' does not count
    q.format_help = lambda: full.replace("--out", "--output").replace("x writes here", "")
    assert _undocumented(q) == ["--out: not in the help text", "--out: its help string is not shown"]


def test_user_error_is_one_line_without_traceback(capsys):
    rc = main(["config", "frontend", "no-such-frontend"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unknown front-end 'no-such-frontend'" in err and "logmel" in err


def test_config_documents_options(capsys):
    assert main(["config", "frontend", "logmel", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| `n_mels` | int | `80` | number of mel bands |" in out


def test_training_docs_carry_the_current_option_table(capsys):
    """docs/training.md ends with `spoofrl config train --markdown`: a new or changed option shows up there."""
    assert main(["config", "train", "--markdown"]) == 0
    table = capsys.readouterr().out
    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert docs.rstrip().endswith(table.rstrip()), "regenerate the table: spoofrl config train --markdown"


def test_config_shows_one_section_and_names_unknown_ones(capsys):
    assert main(["config", "train", "objective"]) == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert "objective.beta" in keys and all(k == "objective" or k.startswith("objective.") for k in keys)
    assert main(["config", "train", "objectiv"]) == 2
    err = capsys.readouterr().err
    assert "no section 'objectiv'" in err and "objective" in err


MISSING = "no/such/thing"


def _commands_with_a_missing_file(tmp: Path) -> list[list[str]]:
    missing = str(tmp / MISSING)
    scores = tmp / "s.tsv"
    scores.write_text("utt\tscore\tlabel\na\t1\tbonafide\nb\t0\tspoof\n")
    return [
        ["metrics", missing],
        ["metrics", str(scores), "--key", missing],
        ["data", "import", "folders", "--root", missing, "--out", str(tmp / "m.csv")],
        ["data", "import", "asvspoof2019-la", "--root", str(tmp), "--protocol", missing, "--out", str(tmp / "m.csv")],
        ["train", missing + ".yaml"],
        ["train", "sft", "--manifest", missing + ".csv", "--out", str(tmp / "run")],
        ["experiment", missing + ".yaml"],
        ["detect", str(scores), "--model", missing],
        ["calibrate", missing],
        ["serve", "--model", missing],
        ["vocode", "--in", missing, "--out", str(tmp / "voc")],
        ["export", missing, "--onnx", str(tmp / "x.onnx")],
    ]


def test_every_command_names_a_missing_file_on_one_line(tmp_path, capsys):
    for argv in _commands_with_a_missing_file(tmp_path):
        rc = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line]
        assert rc == 2, (argv, err)
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert MISSING in lines[0] and lines[0].startswith(f"spoofrl {argv[0]}"), (argv, err)


def test_os_errors_are_user_errors_naming_the_path(tmp_path, capsys):
    (tmp_path / "corpus" / "real").mkdir(parents=True)
    sf.write(str(tmp_path / "corpus" / "real" / "a.wav"), np.full(800, 0.1, np.float32), 16000)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where the output folder should be")
    rc = main(["data", "import", "folders", "--root", str(tmp_path / "corpus"), "--out", str(blocker / "m.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("spoofrl data import: error: ") and str(blocker) in err
    assert err.count("\n") == 1 and "internal error" not in err


def test_user_errors_survive_pickling_with_their_fields():
    """Worker pools send exceptions between processes; an error that fails to unpickle hangs the pool."""
    import pickle

    from spoofrl.errors import AudioError, ConfigError, ProtocolError

    audio = pickle.loads(pickle.dumps(AudioError("/data/a.wav", "all samples are zero")))
    assert isinstance(audio, AudioError)
    assert (audio.path, audio.reason, str(audio)) == ("/data/a.wav", "all samples are zero",
                                                      "/data/a.wav: all samples are zero")
    proto = pickle.loads(pickle.dumps(ProtocolError("p.txt", "expected 5 columns", 7, "LA_0079 x")))
    assert (proto.path, proto.line, proto.text) == ("p.txt", 7, "LA_0079 x")
    assert str(proto) == "p.txt:7: expected 5 columns (line: 'LA_0079 x')"
    assert str(pickle.loads(pickle.dumps(ConfigError("bad key")))) == "bad key"


def test_python_dash_m_runs_the_command():
    """`make demo` calls `python -m spoofrl`, which works where the console script is not on PATH."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "spoofrl", "config", "train", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no section 'nope'" in proc.stderr and "Traceback" not in proc.stderr
