"""The one-line time budget `make demo` prints at its end (scripts/time_budget.py)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "time_budget.py"


def _load():
    spec = importlib.util.spec_from_file_location("time_budget", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_budget_adds_the_steps_and_judges_the_goal(tmp_path):
    budget = _load()
    line = budget.budget_line(200.0, {"fetch_seconds": 100.0, "synth_seconds": 150.0, "experiment_seconds": 170.0})
    assert line.startswith("time budget: install 200 s + fetch 100 s + benchmark 150 s + experiment 170 s")
    assert "= 10.3 min (OVER" in line
    assert "(within" in budget.budget_line(0.0, {"experiment_seconds": 120.0})


def test_an_install_from_before_this_make_run_counts_zero(tmp_path):
    budget = _load()
    stamp = tmp_path / ".install.stamp"
    stamp.write_text("install_seconds=210\n")
    made = stamp.stat().st_mtime
    assert budget.install_seconds(stamp, since=made - 5) == 210.0
    assert budget.install_seconds(stamp, since=made + 5) == 0.0
    assert budget.install_seconds(tmp_path / "absent", since=0) == 0.0


def test_main_reads_the_demo_timing(tmp_path, capsys):
    budget = _load()
    (tmp_path / "demo_timing.json").write_text(json.dumps({"fetch_seconds": 3, "synth_seconds": 60,
                                                           "experiment_seconds": 40}))
    assert budget.main([str(tmp_path), str(tmp_path / "none"), "0"]) == 0
    assert "install 0 s + fetch 3 s + benchmark 60 s + experiment 40 s = 1.7 min (within" in capsys.readouterr().out
    os.remove(tmp_path / "demo_timing.json")
    assert budget.main([str(tmp_path), str(tmp_path / "none"), "0"]) == 1
