import pytest

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
