from pathlib import Path

import numpy as np
import soundfile as sf

from spoofrl.cli import COMMANDS, build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = _subcommands(parser)
    assert set(COMMANDS) <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert name in text and len(text) > 80, name
        for child_name, child in _subcommands(sub).items():
            assert len(child.format_help()) > 80, f"{name} {child_name}"


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
