"""Official ASVspoof metrics: reference cases, tie handling, DCF/CLLR definitions, bootstrap."""
import math

import numpy as np
import pytest

from spoofrl.errors import SpoofrlError
from spoofrl.metrics import (act_dcf, bayes_threshold, bootstrap_eer_ci, bootstrap_eers, cllr, compute_eer,
                             det_curve, error_rates, evaluate, min_dcf)

REF_BONA = [0.9, 0.8, 0.7, 0.55, 0.3]
REF_SPOOF = [0.6, 0.4, 0.35, 0.2, 0.1, 0.05]


def test_reference_case_1_eer_threshold():
    eer, thr = compute_eer(REF_BONA, REF_SPOOF)
    assert eer == pytest.approx(0.18333333333333335, abs=1e-12)  # (1/5 + 1/6) / 2
    assert thr == pytest.approx(0.40)


def test_reference_case_1_all_metrics():
    m = evaluate(REF_BONA, REF_SPOOF)
    assert set(m) == {"eer", "threshold", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof"}
    assert m["eer"] == pytest.approx(11 / 60)
    assert m["threshold"] == pytest.approx(0.40)
    assert m["min_dcf"] == pytest.approx(0.5)
    assert m["act_dcf"] == pytest.approx(1.0)
    assert m["cllr"] == pytest.approx(0.91914, abs=5e-6)   # the reference value, given to 5 decimals
    assert (m["n_bonafide"], m["n_spoof"]) == (5, 6)


def test_reference_case_2_ties_follow_official_sweep_not_convex_hull():
    eer, thr = compute_eer([1, 2, 2, 3], [0, 2, 2, 1])
    assert eer == pytest.approx(0.5)  # a ROC convex hull would give 0.375
    assert thr == pytest.approx(2.0)


def test_sweep_candidates_and_rates():
    frr, far, thr = error_rates([1, 2, 2, 3], [0, 2, 2, 1])
    # Stable sort, bona fide first on ties: 0s 1b 1s 2b 2b 2s 2s 3b.
    assert thr.tolist() == pytest.approx([-0.001, 0, 1, 1, 2, 2, 2, 2, 3])
    assert frr.tolist() == pytest.approx([0, 0, .25, .25, .5, .75, .75, .75, 1])
    assert far.tolist() == pytest.approx([1, .75, .75, .5, .5, .5, .25, 0, 0])
    frr2, far2 = det_curve([1, 2, 2, 3], [0, 2, 2, 1])
    assert np.array_equal(frr, frr2) and np.array_equal(far, far2)


def test_first_argmin_is_taken():
    # Sorted: 1s 2b 3s 4b 5s. |FRR-FAR| = 1/6 both after "2b" (FRR 1/2, FAR 2/3) and after "3s"
    # (FRR 1/2, FAR 1/3); the official tools keep the first, giving (1/2 + 2/3) / 2 at threshold 2.
    eer, thr = compute_eer([2.0, 4.0], [1.0, 3.0, 5.0])
    assert eer == pytest.approx(7 / 12)
    assert thr == 2.0


def test_perfect_and_inverted_separation():
    assert compute_eer([5, 6, 7], [1, 2, 3])[0] == 0.0
    assert compute_eer([1, 2, 3], [5, 6, 7])[0] == 1.0


def test_eer_matches_brute_force_definition_on_random_data():
    rng = np.random.default_rng(3)
    bona = np.round(rng.normal(1, 1, 200), 1)  # rounding makes many ties
    spoof = np.round(rng.normal(0, 1, 300), 1)
    scores = np.concatenate([bona, spoof])
    labels = np.concatenate([np.ones(200), np.zeros(300)])
    order = sorted(range(500), key=lambda i: scores[i])  # Python sort is stable
    best = None
    for k in range(501):  # k = number of trials at or below the candidate threshold
        below = order[:k]
        frr = sum(labels[i] for i in below) / 200
        far = (300 - sum(1 - labels[i] for i in below)) / 300
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    assert compute_eer(bona, spoof)[0] == pytest.approx(best[1], abs=1e-12)


def test_min_dcf_definition_and_overrides():
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(2, 1, 300), rng.normal(0, 1, 400)
    frr, far, thr = error_rates(bona, spoof)
    for p, cm, cf in [(0.05, 1, 10), (0.5, 1, 1), (0.1, 2, 3)]:
        expected = np.min(cm * (1 - p) * frr + cf * p * far) / min(cm * (1 - p), cf * p)
        value, at = min_dcf(bona, spoof, p_spoof=p, c_miss=cm, c_fa=cf)
        assert value == pytest.approx(expected)
        assert evaluate(bona, spoof, p_spoof=p, c_miss=cm, c_fa=cf)["min_dcf"] == pytest.approx(expected)
    # Equal costs and priors: minDCF = min(FRR + FAR) <= 2 * EER.
    assert min_dcf(bona, spoof, p_spoof=0.5, c_miss=1, c_fa=1)[0] <= 2 * compute_eer(bona, spoof)[0] + 1e-12


def test_act_dcf_uses_bayes_threshold():
    assert bayes_threshold() == pytest.approx(-math.log(1.9))
    # Scores straddling -ln 1.9 = -0.642: bona fide -0.7 is a miss, spoof -0.6 a false alarm.
    bona, spoof = [-0.7, 2.0, 3.0, 4.0], [-0.6, -3.0]
    miss, fa = 1 / 4, 1 / 2
    expected = (0.95 * miss + 0.5 * fa) / 0.5
    assert act_dcf(bona, spoof) == pytest.approx(expected)
    # A spoof score exactly at the threshold counts as a false alarm.
    assert act_dcf([5.0], [bayes_threshold()]) == pytest.approx(1.0)


def test_cllr_values():
    assert cllr([0.0], [0.0]) == pytest.approx(1.0)  # uninformative LLR = 1 bit
    assert cllr([50.0] * 3, [-50.0] * 3) < 1e-15   # log2(1 + e^-50) = 2.8e-22; float64 keeps it
    assert cllr([1000.0], [1000.0]) == pytest.approx(0.5 * 1000 / math.log(2))  # no overflow
    assert math.isfinite(cllr([-1e6], [1e6]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(SpoofrlError, match="no spoof scores"):
        compute_eer([1.0], [])
    with pytest.raises(SpoofrlError, match="NaN"):
        evaluate([1.0, float("nan")], [0.0])
    with pytest.raises(SpoofrlError, match="p_spoof"):
        evaluate([1.0], [0.0], p_spoof=1.5)


def test_bootstrap_replicates_equal_naive_resampling():
    rng = np.random.default_rng(1)
    bona = np.round(rng.normal(1, 1, 60), 1)
    spoof = np.round(rng.normal(0, 1, 80), 1)
    fast = bootstrap_eers(bona, spoof, n=5, seed=7)
    draw = np.random.default_rng(7)
    for r in range(5):
        ib = draw.integers(0, bona.size, bona.size)
        is_ = draw.integers(0, spoof.size, spoof.size)
        assert fast[r] == pytest.approx(compute_eer(bona[ib], spoof[is_])[0], abs=1e-12)


def test_bootstrap_min_dcf_replicates_equal_naive_resampling():
    from spoofrl.metrics import bootstrap_replicates
    rng = np.random.default_rng(3)
    bona = np.round(rng.normal(1, 1, 60), 1)
    spoof = np.round(rng.normal(0, 1, 80), 1)
    costs = {"p_spoof": 0.05, "c_miss": 1.0, "c_fa": 10.0}
    fast = bootstrap_replicates(bona, spoof, n=5, seed=7, min_dcf_costs=costs)
    assert np.array_equal(fast["eer"], bootstrap_eers(bona, spoof, n=5, seed=7))  # same draws with or without
    draw = np.random.default_rng(7)
    for r in range(5):
        ib = draw.integers(0, bona.size, bona.size)
        is_ = draw.integers(0, spoof.size, spoof.size)
        assert fast["min_dcf"][r] == pytest.approx(min_dcf(bona[ib], spoof[is_], **costs)[0], abs=1e-12)


def test_bootstrap_ci_brackets_eer_and_shrinks_with_data():
    rng = np.random.default_rng(2)
    small = (rng.normal(1, 1, 100), rng.normal(0, 1, 100))
    large = (rng.normal(1, 1, 5000), rng.normal(0, 1, 5000))
    lo_s, hi_s = bootstrap_eer_ci(*small, n=200)
    lo_l, hi_l = bootstrap_eer_ci(*large, n=200)
    eer = compute_eer(*large)[0]
    assert lo_l <= eer <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert bootstrap_eer_ci(*small, n=50, seed=3) == bootstrap_eer_ci(*small, n=50, seed=3)


def _asvspoof5_min_dcf(bona, spoof, p_spoof=0.05, c_miss=1.0, c_fa=10.0):
    """The ASVspoof 5 tool's minDCF scan, written out from its definition: a Python loop over the candidate
    thresholds with p_target = 1 - Pspoof, a strict `<` keeping the first minimum."""
    from spoofrl.metrics import error_rates
    frr, far, thresholds = error_rates(bona, spoof)
    p_target = 1 - p_spoof
    best, best_threshold = float("inf"), None
    for i in range(len(frr)):
        cost = c_miss * frr[i] * p_target + c_fa * far[i] * (1 - p_target)
        if cost < best:
            best, best_threshold = cost, thresholds[i]
    return best / min(c_miss * p_target, c_fa * (1 - p_target)), best_threshold


def test_min_dcf_is_bit_identical_to_the_asvspoof5_tool_on_tied_costs():
    # 19 bona fide and 10 spoof: moving the threshold past k of each changes the cost by exactly 0 in real
    # arithmetic, so the minimum is tied and rounding decides. The expression Cmiss*(1-P)*FRR + Cfa*P*FAR
    # picks -0.5 here; the tool's picks 0.1.
    bona = [1.1, 0.9, 1.6, 1.1, 0.5, 1.4, 2.3, 1.9, 0.3, -0.3, 0.4, 1.0, -1.3, 0.8, -0.2, 0.3, 0.5, 0.7, 1.4]
    spoof = [1.0, -0.1, 1.4, -0.7, 0.4, 0.9, 0.1, -0.7, -0.9, -0.5]
    value, threshold = min_dcf(bona, spoof)
    assert (value, threshold) == _asvspoof5_min_dcf(bona, spoof)
    assert threshold == 0.1 and evaluate(bona, spoof)["min_dcf"] == value
    rng = np.random.default_rng(3)
    for _ in range(200):
        b, s = np.round(rng.normal(1, 1, 19), 1), np.round(rng.normal(0, 1, 10), 1)
        assert min_dcf(b, s) == _asvspoof5_min_dcf(b, s)
