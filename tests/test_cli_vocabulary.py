"""One CLI vocabulary: every command spells one idea one way (docs/cli.md), the old spellings still parse, to the
same place, with one warning line naming the new spelling, and every flag has help text.

The walk covers the whole parser (build_parser, every subcommand at every depth), so a new command or flag that
picks another spelling of a known idea fails here."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spoofrl.cli import build_parser
from spoofrl.cli.common import REMOVED_IN, DeprecatedAlias, DeprecatedSpelling

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

# Spellings of one idea. An output option is a file or a folder by its metavar (DIR = a folder).
SYNONYMS = {
    "report format": {"--format", "--json", "--csv", "--markdown", "--output-format", "--report-format", "--fmt"},
    "output file": {"--output", "-o", "--out", "--onnx", "--output-file", "--out-file"},
    "output folder": {"--out", "--output", "-o", "--out-dir", "--output-dir", "--outdir"},
    "model": {"--model", "--model-dir", "--run-dir", "--checkpoint", "--ckpt"},
    "device": {"--device", "--gpu", "--cuda", "--cpu"},
    "batch size": {"--batch-size", "--bs", "--batch", "--batchsize"},
    "threads": {"--threads", "--cpu-threads", "--num-threads", "--nthreads"},
    "workers": {"--workers", "--jobs", "-j", "--num-workers", "--nproc", "--processes"},
    "seed": {"--seed", "--random-seed", "--rng-seed"},
    "config overrides": {"--set", "--override", "--overrides", "--opt", "--option"},
    "subsets read": {"--subset", "--subsets", "--split", "--splits"},
}
# The one spelling of each idea (docs/cli.md) and the dest it fills.
SPELLING = {
    "report format": ({"--format"}, "format"),
    "output file": ({"--output", "-o"}, "output"),
    "output folder": ({"--out"}, "out"),
    "model": ({"--model"}, "model"),
    "device": ({"--device"}, "device"),
    "batch size": ({"--batch-size"}, "batch_size"),
    "threads": ({"--threads"}, "threads"),
    "workers": ({"--workers"}, "workers"),
    "seed": ({"--seed"}, "seed"),
    "config overrides": ({"--set"}, "overrides"),
    "subsets read": ({"--subset"}, "subsets"),
}
OUTPUT_IDEAS = ("output file", "output folder")


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command, parser) of the top level and of every subcommand at every depth."""
    yield " ".join(("spoofrl",) + path), parser
    for name, sub in _children(parser).items():
        yield from walk(sub, path + (name,))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def is_folder(action: argparse.Action) -> bool:
    return "DIR" in str(action.metavar or "").upper()


def ideas_of(action: argparse.Action) -> list[str]:
    """The ideas of the vocabulary an option spells (an output option is a file or a folder, not both)."""
    found = [idea for idea, words in SYNONYMS.items() if words & set(action.option_strings)]
    if any(idea in OUTPUT_IDEAS for idea in found):
        found = [i for i in found if i not in OUTPUT_IDEAS] + ["output folder" if is_folder(action) else "output file"]
    return found


@pytest.fixture(scope="module")
def parsers():
    return list(walk(build_parser()))


def misspellings(parsers) -> dict[str, dict[str, list[str]]]:
    """{idea: {spelling: commands}} of every spelling of an idea other than the one docs/cli.md gives."""
    found: dict[str, dict[str, list[str]]] = {}
    for command, parser in parsers:
        for action in options(parser):
            if isinstance(action, DeprecatedAlias):
                continue
            for idea in ideas_of(action):
                spelled = set(action.option_strings) & SYNONYMS[idea]
                if spelled != SPELLING[idea][0]:
                    found.setdefault(idea, {}).setdefault("/".join(sorted(spelled)), []).append(command)
    return found


def test_no_two_commands_spell_the_same_idea_differently(parsers):
    assert misspellings(parsers) == {}


def test_one_spelling_fills_one_dest_everywhere(parsers):
    """The same flag means the same thing in every command (metrics' --format once named the score layout)."""
    wrong = []
    for command, parser in parsers:
        for action in options(parser):
            if isinstance(action, DeprecatedAlias):   # fills its replacement's dest (checked below)
                continue
            for idea in ideas_of(action):
                words, dest = SPELLING[idea]
                if words & set(action.option_strings) and action.dest != dest:
                    wrong.append(f"{command} {'/'.join(action.option_strings)} -> {action.dest} (not {dest})")
    assert wrong == []


def test_every_flag_and_argument_has_help_text(parsers):
    missing = []
    for command, parser in parsers:
        for action in parser._actions:
            if isinstance(action, (DeprecatedAlias, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
        for child in next((a._choices_actions for a in parser._actions
                           if isinstance(a, argparse._SubParsersAction)), []):
            if not (child.help or "").strip():
                missing.append(f"{command} {child.dest}")
    assert missing == []


def deprecated_aliases(parsers):
    return [(command, parser, action) for command, parser in parsers for action in options(parser)
            if isinstance(action, DeprecatedAlias)]


def warned(record) -> list[str]:
    """The deprecation messages of a pytest.warns record."""
    return [str(w.message) for w in record if issubclass(w.category, DeprecatedSpelling)]


def test_every_deprecated_alias_fills_its_replacements_dest_and_warns_once(parsers):
    aliases = deprecated_aliases(parsers)
    assert len(aliases) >= 6      # explain --out/--json, metrics --json, config/models --markdown, export --onnx, ...
    for command, parser, alias in aliases:
        replacement = next(a for a in options(parser) if alias.replaces in a.option_strings)
        assert not isinstance(replacement, DeprecatedAlias) and replacement.dest == alias.dest, (command, alias)
        value = None if alias.nargs == 0 else (alias.choices[0] if alias.choices else "7")
        if value is not None and alias.type is not None:
            value = alias.type(value)
        namespace = argparse.Namespace()
        with pytest.warns(DeprecatedSpelling) as record:
            alias(parser, namespace, value, alias.option_strings[0])
        expected = alias.const if alias.nargs == 0 else value
        assert getattr(namespace, replacement.dest) == expected, (command, alias.option_strings)
        (message,) = warned(record)
        assert "\n" not in message and message.startswith(f"{command}: warning: {alias.option_strings[0]} ")
        assert f"use {alias.new_spelling} " in message and f"spoofrl {REMOVED_IN}" in message


def test_deprecated_aliases_are_hidden_from_help_and_listed_in_docs(parsers):
    docs = DOCS.read_text()
    for command, parser, alias in deprecated_aliases(parsers):
        old = alias.option_strings[0]
        assert not re.search(rf"(?<![\w-]){re.escape(old)}(?![\w-])", parser.format_help()), (command, old)
        row = next((line for line in docs.splitlines() if f"`{old}`" in line and command.split(" ", 1)[1] in line),
                   None)
        assert row is not None and REMOVED_IN in row, f"docs/cli.md lists no row for {command} {old}"


PARSED_THE_OLD_WAY = [
    (["explain", "a.wav", "--out", "r.txt"], {"output": "r.txt"}, "use --output"),
    (["explain", "a.wav", "--json"], {"format": "json"}, "use --format json"),
    (["metrics", "s.tsv", "--json"], {"format": "json"}, "use --format json"),
    (["metrics", "s.tsv", "--format", "asvspoof5"], {"score_format": "asvspoof5", "format": "table"},
     "use --score-format"),
    (["config", "train", "--markdown"], {"format": "markdown"}, "use --format markdown"),
    (["models", "--describe", "logmel", "--markdown"], {"format": "markdown"}, "use --format markdown"),
    (["export", "run", "--onnx", "m.onnx"], {"output": "m.onnx"}, "use --output"),
    (["vocode", "--in", "x", "--out", "y", "--subset", "dev"], {"subset_name": "dev"}, "use --subset-name"),
]


@pytest.mark.parametrize("argv, parsed, says", PARSED_THE_OLD_WAY, ids=lambda v: " ".join(v) if
                         isinstance(v, list) else None)
def test_old_spellings_still_parse_with_one_warning(argv, parsed, says):
    with pytest.warns(DeprecatedSpelling) as record:
        args = build_parser().parse_args(argv)
    assert {key: getattr(args, key) for key in parsed} == parsed
    (message,) = warned(record)
    assert message.startswith(f"spoofrl {argv[0]}: warning:") and says in message


def test_the_command_prints_the_warning_as_one_stderr_line(tmp_path):
    """What a user of the `spoofrl` command sees (entry(), as the console script and `python -m spoofrl` run it):
    the result, and one plain line on stderr naming the new spelling."""
    scores = tmp_path / "s.tsv"
    scores.write_text("utt\tscore\tlabel\na\t1.0\tbonafide\nb\t-1.0\tspoof\n")
    done = subprocess.run([sys.executable, "-m", "spoofrl", "metrics", str(scores), "--json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and '"eer": 0.0' in done.stdout
    assert done.stderr == (f"spoofrl metrics: warning: --json is deprecated, use --format json (--json goes away "
                           f"in spoofrl {REMOVED_IN})\n")


PARSED_THE_NEW_WAY = [
    (["explain", "a.wav", "--format", "json", "-o", "r.json"], {"format": "json", "output": "r.json"}),
    (["metrics", "s.tsv", "--format", "json", "--score-format", "asvspoof5", "--output", "m.json"],
     {"format": "json", "score_format": "asvspoof5", "output": "m.json"}),
    (["config", "train", "--format", "markdown"], {"format": "markdown"}),
    (["export", "run", "-o", "m.onnx"], {"output": "m.onnx"}),
    (["vocode", "--in", "x", "--out", "y", "--subset-name", "dev"], {"subset_name": "dev"}),
    (["calibrate", "run", "--subset", "dev,eval"], {"subsets": ["dev", "eval"]}),
]


@pytest.mark.parametrize("argv, parsed", PARSED_THE_NEW_WAY, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_new_spellings_parse_without_warning(argv, parsed, capsys):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedSpelling)
        args = build_parser().parse_args(argv)
    assert {key: getattr(args, key) for key in parsed} == parsed
    assert capsys.readouterr().err == ""


def test_metrics_format_refuses_what_is_neither_a_report_nor_a_score_format(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["metrics", "s.tsv", "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_the_check_finds_a_second_spelling():
    """The walk is not vacuous: report format spelled --json, an output file spelled --out and a folder spelled
    --out-dir are found; a folder spelled --out is right."""
    p = argparse.ArgumentParser(prog="x")
    sub = p.add_subparsers()
    q = sub.add_parser("q")
    q.add_argument("--json", action="store_true", help="json")
    q.add_argument("--out", metavar="FILE", help="a file")
    q.add_argument("--out-dir", metavar="DIR", help="a folder")
    sub.add_parser("r").add_argument("--out", metavar="DIR", help="a folder")
    assert misspellings(list(walk(p))) == {"report format": {"--json": ["spoofrl q"]},
                                           "output file": {"--out": ["spoofrl q"]},
                                           "output folder": {"--out-dir": ["spoofrl q"]}}
