"""Metrics of a whole score table, optionally broken down per attack or condition, as a JSON-ready dict
and as a text table (what `spoofrl metrics` prints)."""
from __future__ import annotations

import logging

import numpy as np

from spoofrl.errors import ProtocolError
from spoofrl.metrics.official import C_FA, C_MISS, P_SPOOF, bootstrap_cis, evaluate
from spoofrl.metrics.scorefile import UNKNOWN, ScoreTable, group_masks

LOG = logging.getLogger(__name__)

METRIC_KEYS = ("eer", "threshold", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof")


def _check_both_classes(table: ScoreTable, is_bona: np.ndarray) -> None:
    n_bona = int(is_bona.sum())
    if n_bona == 0 or n_bona == len(table):
        only = "spoof" if n_bona == 0 else "bona fide"
        raise ProtocolError(table.path, f"all {len(table)} scores are {only}: metrics need both bona fide and "
                                        f"spoof scores")


def _check_breakdown_known(table: ScoreTable, by: str, is_bona: np.ndarray) -> None:
    """A breakdown needs the column: otherwise it would print one group `-` equal to the pooled result."""
    values = np.asarray(getattr(table, by), dtype=object)
    relevant = values[~is_bona] if by == "attack" else values  # bona fide have attack `-` by definition
    if (relevant == UNKNOWN).all():
        rows = "spoof row" if by == "attack" else "row"
        raise ProtocolError(table.path, f"cannot break results down by {by}: every {rows} has {by} '-' (unknown); "
                                        f"add a column {by!r} or use a key (manifest or protocol) that has one")


def _metrics(bona: np.ndarray, spoof: np.ndarray, ci: bool, n_boot: int, alpha: float, seed: int, dcf: dict,
             min_dcf_ci: bool = False) -> dict:
    result = evaluate(bona, spoof, **dcf)
    if ci:
        cis = bootstrap_cis(bona, spoof, n=n_boot, alpha=alpha, seed=seed, min_dcf_costs=dcf if min_dcf_ci else None)
        result.update({f"{name}_ci": list(interval) for name, interval in cis.items()})
    return result


def summarize(table: ScoreTable, by: str | None = None, *, ci: bool = False, n_boot: int = 1000,
              alpha: float = 0.05, seed: int = 0, p_spoof: float = P_SPOOF, c_miss: float = C_MISS,
              c_fa: float = C_FA, min_dcf_ci: bool = False) -> dict:
    """Pooled metrics (keys eer, threshold, min_dcf, act_dcf, cllr, n_bonafide, n_spoof; `eer_ci` with `ci`,
    and `min_dcf_ci` from the same bootstrap replicates when `min_dcf_ci` is also set)
    plus, with `by`, a `breakdown` object {group: metrics}. A group lacking one class (possible by condition)
    gets null metrics and its counts, with a warning, rather than disappearing."""
    is_bona = table.is_bonafide
    _check_both_classes(table, is_bona)
    dcf = {"p_spoof": p_spoof, "c_miss": c_miss, "c_fa": c_fa}
    result = _metrics(table.score[is_bona], table.score[~is_bona], ci, n_boot, alpha, seed, dcf, min_dcf_ci)
    if by is not None:
        _check_breakdown_known(table, by, is_bona)
        breakdown = {}
        for name, mask in group_masks(table, by):
            bona, spoof = table.score[mask & is_bona], table.score[mask & ~is_bona]
            if bona.size == 0 or spoof.size == 0:
                LOG.warning("%s: %s %r has only %s scores; its metrics are undefined", table.path, by, name,
                            "spoof" if bona.size == 0 else "bona fide")
                breakdown[name] = {k: None for k in METRIC_KEYS} | {"n_bonafide": int(bona.size),
                                                                    "n_spoof": int(spoof.size)}
                continue
            breakdown[name] = _metrics(bona, spoof, ci, n_boot, alpha, seed, dcf, min_dcf_ci)
        result["breakdown"] = breakdown
    return result


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(summary: dict, by: str | None = None) -> str:
    """A fixed-width text table: EER in %, the rest as fractions / bits."""
    has_ci = "eer_ci" in summary
    head = [by or "", "n_bona", "n_spoof", "EER%"] + (["EER% CI"] if has_ci else []) + \
           ["threshold", "minDCF", "actDCF", "CLLR"]
    rows = []
    groups = list(summary.get("breakdown", {}).items()) + [("pooled", summary)]
    for name, m in groups:
        row = [name, str(m["n_bonafide"]), str(m["n_spoof"]), _fmt(m["eer"] and m["eer"] * 100, ".3f")]
        if has_ci:
            ci = m.get("eer_ci")
            row.append("n/a" if ci is None else f"[{ci[0] * 100:.3f}, {ci[1] * 100:.3f}]")
        row += [_fmt(m["threshold"], ".6g"), _fmt(m["min_dcf"], ".4f"), _fmt(m["act_dcf"], ".4f"),
                _fmt(m["cllr"], ".4f")]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(head)] + [line(r) for r in rows])
