"""Official ASVspoof metrics (EER, minDCF, actDCF, CLLR, DET, bootstrap CI), score files and calibration.

Higher score = more bona fide, everywhere.
"""
from spoofrl.metrics.official import (C_FA, C_MISS, P_SPOOF, act_dcf, bayes_threshold, bootstrap_cis,
                                      bootstrap_eer_ci, bootstrap_eers, bootstrap_replicates, cllr, compute_eer, det_curve, error_rates, evaluate,
                                      min_dcf)

__all__ = ["P_SPOOF", "C_MISS", "C_FA", "compute_eer", "evaluate", "bootstrap_cis", "bootstrap_eer_ci", "bootstrap_eers",
           "bootstrap_replicates",
           "det_curve", "error_rates", "min_dcf", "act_dcf", "cllr", "bayes_threshold"]
