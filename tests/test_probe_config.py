"""Hostile config files (alias bombs, binary files, huge or deep ones) are one-line ConfigErrors naming the file
and line, and `--resume` of a finished run compares the config it is given with the run's fairly."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from spoofrl.cli import main
from spoofrl.config import MAX_CONFIG_BYTES, MAX_VALUES, apply_overrides, load_yaml, load_yaml_lines
from spoofrl.errors import ConfigError
from spoofrl.training import load_train_config, train
from test_alm_train import low_high_config, write_low_high
from test_train_data import write_toy_corpus
from test_train_run import _one_error_line, small_config


def alias_bomb(levels: int) -> str:
    """A few hundred bytes whose aliases expand to 9**levels values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


# --- the YAML loader --------------------------------------------------------------------------------------------
def test_an_alias_bomb_is_refused_with_the_line_of_the_alias_in_bounded_memory(tmp_path):
    """Loaded in a process limited to 1 GiB of address space: before the refusal, 7 levels took 1.1 GB."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(8))
    assert len(path.read_bytes()) < 500
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from spoofrl.config import load_yaml
        from spoofrl.errors import ConfigError
        try:
            load_yaml({str(path)!r})
        except ConfigError as err:
            print(err)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr[-2000:]
    message = done.stdout.strip()
    assert "\n" not in message and message.startswith(f"{path}:6: ") and "alias" in message, message


def test_aliases_of_a_reasonable_size_still_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {lr: 0.1, betas: [0.9, 0.99]}\nstage1:\n  <<: *b\n  lr: 0.2\nstage2: *b\n")
    data, lines = load_yaml_lines(path)
    assert data["stage1"] == {"lr": 0.2, "betas": [0.9, 0.99]} and data["stage2"]["lr"] == 0.1
    assert lines["stage1.lr"] == 4


def test_a_recursive_alias_is_refused_with_its_line(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("ok: 1\nloop: &a\n  - 1\n  - *a\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: .*alias") as info:
        load_yaml(path)
    assert "\n" not in str(info.value)


def test_deep_nesting_is_refused_with_its_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: 1\nb: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: .*nested deeper than"):
        load_yaml(path)


@pytest.mark.parametrize("content", [os.urandom(64) + b"\xff\xfe", b"\0" * 4096, b"a: 1\nb: \xe9t\xe9\n"],
                         ids=["random", "nul", "latin-1"])
def test_a_binary_file_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{path}(:\d+)?: .*not a (UTF-8 )?text file") as info:
        load_yaml(path)
    assert "\n" not in str(info.value)


def test_the_line_of_a_non_utf8_byte_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"a: 1\nb: \xe9t\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: not a UTF-8 text file"):
        load_yaml(path)


@pytest.mark.parametrize("text, kind", [("- 1\n- 2\n", "a list"), ("just text\n", "a string"), ("3\n", "an int")])
def test_a_top_level_that_is_not_a_mapping_is_named(tmp_path, text, kind):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: expected a mapping .* at the top level, got {kind}$"):
        load_yaml(path)


def test_a_huge_file_is_refused_by_its_size(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("a: 1\n" + "#" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}: .*larger than .* MB"):
        load_yaml(path)


def test_a_file_of_too_many_values_is_refused_at_the_line_it_passes_the_bound(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("a:\n" + "- 1\n" * (MAX_VALUES + 10))
    with pytest.raises(ConfigError, match=rf"^{path}:{MAX_VALUES - 1}: the file has more than {MAX_VALUES} values"):
        load_yaml(path)


def test_an_alias_bomb_in_an_override_is_refused():
    bomb = "{" + ", ".join(alias_bomb(8).strip().splitlines()) + "}"
    with pytest.raises(ConfigError, match=r"override .*alias"):
        apply_overrides({}, [f"x={bomb}"])


# --- the readers of configs, through the CLI --------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=8, n_dev=4)


@pytest.mark.parametrize("content", [os.urandom(256), b"\0" * 1024, alias_bomb(8).encode()],
                         ids=["random", "nul", "bomb"])
def test_train_with_a_hostile_config_is_one_line_exit_2(tmp_path, capsys, content):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content)
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert str(recipe) in _one_error_line(capsys)


@pytest.mark.parametrize("content", [os.urandom(256), b"\0" * 1024, alias_bomb(8).encode()],
                         ids=["random", "nul", "bomb"])
def test_explain_with_a_hostile_model_config_is_one_line_exit_2(tmp_path, capsys, content):
    folder = tmp_path / "explainer"
    folder.mkdir()
    (folder / "alm.json").write_text("{}")
    (folder / "config.yaml").write_bytes(content)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"")
    assert main(["explain", "--model", str(folder), str(clip)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and str(folder / "config.yaml") in err[0], err


def test_a_detector_folder_with_a_binary_config_is_one_line(tmp_path):
    from spoofrl.models.io import read_model_config
    (tmp_path / "config.yaml").write_bytes(os.urandom(256))
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'config.yaml'}"):
        read_model_config(tmp_path)


# --- --resume of a finished run ---------------------------------------------------------------------------------
def _resume_warnings(caplog, cfg, out: Path) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spoofrl"):
        train(cfg, out, resume=True)
    assert any("nothing to do" in r.getMessage() for r in caplog.records)
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_resuming_a_finished_generation_run_with_the_same_config_does_not_warn(tmp_path, caplog):
    """The saved config has model.alm.vocab_size resolved (the tokenizer's size); the one given says 0."""
    data = low_high_config(write_low_high(tmp_path / "data"), 2, schedule={"eval_every": 0})
    out = train(load_train_config(data), tmp_path / "run")
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["alm"]["vocab_size"] > 0
    assert _resume_warnings(caplog, load_train_config(data), out) == []
    changed = _resume_warnings(caplog, load_train_config(data, ["model.alm.lm_ffn=96", "optim.lr=0.01"]), out)
    assert len(changed) == 1 and "differs" in changed[0] and "(trained with -> given: " in changed[0], changed
    assert "model.alm.lm_ffn: 128 -> 96" in changed[0] and "optim.lr: 0.003 -> 0.01" in changed[0], changed
    assert "vocab_size" not in changed[0], changed


def test_resuming_a_finished_run_names_the_differing_model_and_stage_keys(manifest, tmp_path, caplog):
    stages = [{"objective": "sft", "steps": 1}, {"objective": "sft", "options": {"label_smoothing": 0.1}}]
    data = small_config(manifest, schedule={"steps": 2, "eval_every": 0})
    data["stages"] = stages
    out = train(load_train_config(data), tmp_path / "run")
    assert _resume_warnings(caplog, load_train_config(data), out) == []
    other = load_train_config(data, ["model.frontend.n_mels=40", "stages[1].options.label_smoothing=0.2"])
    changed = _resume_warnings(caplog, other, out)
    assert len(changed) == 1, changed
    assert "model.frontend.n_mels: 60 -> 40" in changed[0], changed
    assert "stages[1].options.label_smoothing: 0.1 -> 0.2" in changed[0], changed


def test_resuming_a_started_run_with_another_model_names_the_option(manifest, tmp_path):
    data = small_config(manifest, schedule={"steps": 2, "eval_every": 0})
    out = train(load_train_config(data), tmp_path / "run", stop_after=1)
    assert not (out / "summary.json").exists()
    with pytest.raises(ConfigError, match=r"checkpoint -> given: model.frontend.n_mels: 60 -> 40\)"):
        train(load_train_config(data, ["model.frontend.n_mels=40"]), out, resume=True)


def test_long_differing_values_show_where_they_differ():
    from spoofrl.config import differences
    old, new = "<audio> " + "x" * 200 + " low?", "<audio> " + "x" * 200 + " high?"
    (line,) = differences({"generation.prompt": old}, {"generation.prompt": new})
    saved, now = line.split(": ", 1)[1].split(" -> ")
    assert saved != now and "low?" in saved and "high?" in now, line
