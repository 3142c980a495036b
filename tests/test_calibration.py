"""Calibration math (score -> LLR by prior-weighted logistic regression) and `spoofrl calibrate`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spoofrl.errors import SpoofrlError
from spoofrl.metrics import bayes_threshold
from spoofrl.metrics import evaluate
from spoofrl.metrics.calibration import (Calibration, fit_calibration, p_spoof_from_llr,
                                         read_calibration, save_calibration)


# The tolerances on fitted slopes and offsets are statistical: the sampling error of a fit to n seeded draws
# (numpy's generators give the same draws on every machine). The fit itself is float64 L-BFGS, whose rounding
# (~1e-12 relative) is far below them; the exact identities (priors, thresholds) use approx's 1e-6 relative.
def gaussian_scores(mu_bona, mu_spoof, sigma, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(mu_bona, sigma, n), rng.normal(mu_spoof, sigma, n)


def true_llr_line(mu_bona, mu_spoof, sigma):
    """For equal-variance Gaussians the exact LLR is linear in the score: slope, offset."""
    slope = (mu_bona - mu_spoof) / sigma ** 2
    offset = -(mu_bona ** 2 - mu_spoof ** 2) / (2 * sigma ** 2)
    return slope, offset


@pytest.mark.parametrize("prior", [0.5, 0.1, 0.9])
def test_gaussian_scores_recover_the_theoretical_llr(prior):
    mu_b, mu_s, sigma = 2.0, -1.0, 1.5
    bona, spoof = gaussian_scores(mu_b, mu_s, sigma, 40000)
    # A miscalibrated system: scores scaled and shifted; the fit must undo it.
    cal = fit_calibration(3 * bona + 5, 3 * spoof + 5, prior=prior)
    slope, offset = true_llr_line(mu_b, mu_s, sigma)
    assert cal.a == pytest.approx(slope / 3, rel=0.03)
    assert cal.b == pytest.approx(offset - slope / 3 * 5, abs=0.08)
    assert cal.prior == prior and cal.n_bonafide == cal.n_spoof == 40000


def test_fit_is_independent_of_class_counts():
    bona, spoof = gaussian_scores(1.0, -1.0, 1.0, 30000, seed=1)
    balanced = fit_calibration(bona, spoof)
    unbalanced = fit_calibration(bona[:3000], spoof)  # 10x fewer bona fide: per-class averages, same answer
    assert unbalanced.a == pytest.approx(balanced.a, rel=0.06)
    assert unbalanced.b == pytest.approx(balanced.b, abs=0.06)


def test_separable_scores_give_a_finite_slope():
    cal = fit_calibration([1.0, 2.0, 3.0], [-1.0, -2.0, -3.0])
    assert 0 < cal.a < 20 and math.isfinite(cal.b)


def test_calibration_lowers_cllr_and_act_dcf_of_overconfident_scores():
    bona, spoof = gaussian_scores(1.0, -1.0, 1.0, 5000, seed=2)
    raw_b, raw_s = 10 * bona + 4, 10 * spoof + 4  # over-confident and shifted
    cal = fit_calibration(raw_b, raw_s)
    before, after = evaluate(raw_b, raw_s), evaluate(cal.llr(raw_b), cal.llr(raw_s))
    assert after["eer"] == pytest.approx(before["eer"])  # monotonic map: ranking unchanged
    assert after["cllr"] < 0.75 < before["cllr"]
    assert after["act_dcf"] < before["act_dcf"]


def test_p_spoof_and_bayes_threshold():
    assert p_spoof_from_llr(0.0, 0.5) == pytest.approx(0.5)
    # Prior odds 1:4 for bona fide and LLR ln 4 -> posterior odds 1:1.
    assert p_spoof_from_llr(math.log(4), 0.2) == pytest.approx(0.5)
    # ASVspoof 5 costs: P(spoof) 0.05, Cmiss 1, Cfa 10 -> -ln 1.9, as the official metric uses.
    assert bayes_threshold(p_spoof=0.05, c_miss=1, c_fa=10) == pytest.approx(-math.log(1.9))
    assert bayes_threshold(0.05, 1, 10) == pytest.approx(bayes_threshold())


def test_bad_inputs_are_refused():
    with pytest.raises(SpoofrlError, match="both classes"):
        fit_calibration([1.0, 2.0], [])
    with pytest.raises(SpoofrlError, match="between 0 and 1"):
        fit_calibration([1.0], [0.0], prior=1.0)
    with pytest.raises(SpoofrlError, match="NaN"):
        fit_calibration([1.0, float("nan")], [0.0])


def test_save_read_round_trip_and_bad_file(tmp_path):
    cal = Calibration(a=0.7, b=-0.2, prior=0.3, n_bonafide=5, n_spoof=7, extra={"dev_eer": 0.1})
    path = save_calibration(cal, tmp_path)
    data = json.loads(path.read_text())
    assert data["n"] == 12 and data["dev_eer"] == 0.1 and data["prior"] == 0.3
    back = read_calibration(tmp_path)
    assert (back.a, back.b, back.prior) == (0.7, -0.2, 0.3)
    assert read_calibration(tmp_path / "nothing-here") is None
    path.write_text('{"a": "x"}')
    with pytest.raises(SpoofrlError, match=str(path).replace(".", r"\.")):
        read_calibration(tmp_path)
    path.write_text('{"a": -0.5, "b": 0.0, "prior": 0.5}')  # would invert every verdict
    with pytest.raises(SpoofrlError, match="slope a=-0.5 must be positive"):
        read_calibration(tmp_path)
    path.write_text("{not json")
    with pytest.raises(SpoofrlError, match="not valid JSON"):
        read_calibration(tmp_path)


# ------------------------------------------------------------------------------------------ the command

def _make_dev_set(folder: Path, n: int = 6) -> Path:
    """Manifest with tone (bona fide) and hiss (spoof) clips in a dev and an eval subset."""
    from test_detect import hiss, low_tone, write

    from spoofrl.data.manifest import Utterance, write_manifest
    rows = []
    for i in range(n):
        for label, make in (("bonafide", low_tone), ("spoof", hiss)):
            name = f"{label}_{i}.wav"
            # Vary loudness and length so scores spread out (the fit needs overlap to be informative).
            x = make(0.6 + 0.1 * i, seed=i) * (0.3 + 0.15 * i)
            if i % 3 == 0:  # a little of the other class mixed in: not perfectly separable
                other = (hiss if label == "bonafide" else low_tone)(len(x) / 16000, seed=100 + i)
                x = x + 0.8 * other[: len(x)]
            write(folder / "audio" / name, x)
            rows.append(Utterance(f"audio/{name}", label, "-" if label == "bonafide" else "A01", "test", "clean", "dev"))
    manifest = folder / "manifest.csv"
    write_manifest(rows, manifest)
    return manifest


@pytest.fixture
def run_dir(tmp_path):
    from test_detect import crafted_model_dir
    return crafted_model_dir(tmp_path / "run")


def test_calibrate_command_writes_calibration_and_detect_uses_it(tmp_path, run_dir, capsys):
    from spoofrl.cli import main
    manifest = _make_dev_set(tmp_path)
    assert main(["calibrate", str(run_dir), "--manifest", str(manifest), "--subset", "dev", "--prior", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "act_dcf on calibrated scores" in out and "target prior P(bona fide) = 0.3" in out
    data = json.loads((run_dir / "calibration.json").read_text())
    assert data["prior"] == 0.3 and data["n"] == 12 and data["a"] > 0
    assert data["fitted_on"] == {"manifest": str(manifest), "subset": "dev",
                                 "scores": str(run_dir / "calibration_dev_scores.tsv")}
    # The raw dev scores are kept: a refit at another prior reuses them and gives the same slope as scoring.
    assert main(["calibrate", str(run_dir), "--scores", data["fitted_on"]["scores"], "--prior", "0.3"]) == 0
    capsys.readouterr()
    # the same float64 scores (written in round-trip form), in the same order, through the same fit in one
    # process: the same slope (1e-9 is only room for the JSON's decimal form); other data would move it by %
    assert read_calibration(run_dir).a == pytest.approx(data["a"], rel=1e-9)
    assert set(data["before"]) == set(data["after"]) == {"eer", "min_dcf", "act_dcf", "cllr"}
    assert data["after"]["cllr"] <= data["before"]["cllr"] + 1e-9  # fitted to minimise (prior-weighted) CLLR-like loss
    assert data["dev_eer"] == data["before"]["eer"]
    # detect now reports LLRs
    assert main(["detect", str(tmp_path / "audio" / "bonafide_0.wav"), "--model", str(run_dir), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["score_type"] == "llr"
    assert report["model"]["calibration"]["prior_bonafide"] == 0.3


def test_calibrate_from_a_score_file(tmp_path, run_dir, capsys):
    from spoofrl.cli import main
    from spoofrl.metrics.scorefile import write_scores
    bona, spoof = gaussian_scores(2.0, -2.0, 2.0, 300, seed=3)
    scores = tmp_path / "dev.tsv"
    write_scores(scores, [f"u{i}" for i in range(600)], np.concatenate([bona, spoof]),
                 ["bonafide"] * 300 + ["spoof"] * 300)
    assert main(["calibrate", str(run_dir), "--scores", str(scores)]) == 0
    cal = read_calibration(run_dir)
    slope, offset = true_llr_line(2.0, -2.0, 2.0)
    assert cal.a == pytest.approx(slope, rel=0.2) and cal.b == pytest.approx(offset, abs=0.3)


def test_calibrate_errors_are_one_line(tmp_path, run_dir, capsys):
    from spoofrl.cli import main
    manifest = _make_dev_set(tmp_path, n=2)
    assert main(["calibrate", str(run_dir), "--manifest", str(manifest), "--subset", "eval"]) == 2
    err = capsys.readouterr().err
    assert "no utterances in subset eval" in err and err.count("\n") == 1
    one_class = tmp_path / "bona_only.csv"
    one_class.write_text("\n".join(line for line in manifest.read_text().splitlines() if ",spoof," not in line))
    assert main(["calibrate", str(run_dir), "--manifest", str(one_class)]) == 2
    assert "found 2 bona fide and 0 spoof" in capsys.readouterr().err
    assert not (run_dir / "calibration_dev_scores.tsv").exists()  # refused before scoring anything
    assert main(["calibrate", str(tmp_path / "nope"), "--manifest", str(manifest)]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["calibrate", str(run_dir)]) == 2
    assert "--manifest" in capsys.readouterr().err


def test_calibrate_on_several_subsets_joined_by_commas(tmp_path, run_dir, capsys):
    from spoofrl.cli import main
    from spoofrl.data.manifest import read_manifest, write_manifest
    manifest = _make_dev_set(tmp_path)
    rows = read_manifest(manifest)
    for i, row in enumerate(rows):  # split the dev set in two subsets, each with both classes
        row.subset = "dev" if i % 4 < 2 else "dev2"
    write_manifest(rows, manifest)
    assert main(["calibrate", str(run_dir), "--manifest", str(manifest), "--subset", "dev,dev2"]) == 0
    data = json.loads((run_dir / "calibration.json").read_text())
    assert data["n"] == 12 and data["fitted_on"]["subset"] == "dev,dev2"
    assert main(["calibrate", str(run_dir), "--manifest", str(manifest), "--subset", "dev2"]) == 0
    assert json.loads((run_dir / "calibration.json").read_text())["n"] == 6
