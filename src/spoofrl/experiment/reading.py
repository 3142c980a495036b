"""A short written reading of the results table that says what the numbers show, and no more.

For each configured pair 'A vs B' it states both arms' mean ± std EER (in-domain and OOD average), the
difference, in how many paired seeds A was lower, and whether the difference is larger than the seed spread
(|difference| > std_A + std_B: a rough screen, not a significance test). With single runs the seed spread is
unknown; then the in-domain bootstrap confidence intervals are compared instead, and no claim is made about
the OOD average.
"""
from __future__ import annotations

from spoofrl.experiment.config import parse_pair
from spoofrl.experiment.results import OOD_AVG, mean_std

CHANCE_EER = 0.45  # an EER this high means the arm did not learn to separate the classes on that set


def _per_seed(info: dict, key: str) -> dict[int, float]:
    """seed -> EER (fraction) of one arm on one column ('ood_avg' or a test set)."""
    out = {}
    for run in info["runs"]:
        value = run[OOD_AVG].get("eer") if key == OOD_AVG else run["sets"][key].get("eer")
        if value is not None:
            out[run["seed"]] = value
    return out


def _pct(stat: dict) -> str:
    text = f"{stat['mean'] * 100:.2f}"
    if stat["std"] is not None:
        text += f" ± {stat['std'] * 100:.2f}"
    return text + " %"


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _ci_overlap(a: dict, b: dict, key: str) -> str | None:
    """With one run each: do the bootstrap CIs of the EER on test set `key` overlap?"""
    ca, cb = a["runs"][0]["sets"][key].get("eer_ci"), b["runs"][0]["sets"][key].get("eer_ci")
    if not ca or not cb:
        return None
    overlap = ca[0] <= cb[1] and cb[0] <= ca[1]
    return ("their bootstrap confidence intervals overlap, so the test set does not separate them"
            if overlap else "their bootstrap confidence intervals do not overlap (test-set sampling only; "
                            "seed-to-seed variation is not measured with one run)")


def compare(a_name: str, a: dict, b_name: str, b: dict, key: str, column: str) -> str | None:
    """One sentence comparing arms A and B on one column (EER); None if either has no value."""
    va, vb = _per_seed(a, key), _per_seed(b, key)
    if not va or not vb:
        return None
    sa, sb = mean_std(va.values()), mean_std(vb.values())
    diff = (sa["mean"] - sb["mean"]) * 100
    direction = "lower" if diff < 0 else "higher" if diff > 0 else "equal"
    text = (f"{column} EER: {a['label']} {_pct(sa)} vs {b['label']} {_pct(sb)} "
            f"({_runs(sa['n'])} vs {_runs(sb['n'])}): {a['label']} is "
            + (f"{abs(diff):.2f} points {direction}" if direction != "equal" else "equal"))
    common = sorted(set(va) & set(vb))
    if len(common) > 1:
        wins = sum(va[s] < vb[s] for s in common)
        text += f", lower in {wins} of {len(common)} paired seeds"
    if sa["std"] is None and sb["std"] is None:
        note = _ci_overlap(a, b, key) if key != OOD_AVG else None
        text += "; " + (note or "single runs, so the seed-to-seed spread is unknown and no conclusion is drawn")
    else:
        spread = ((sa["std"] or 0.0) + (sb["std"] or 0.0)) * 100
        if abs(diff) > spread:
            text += f"; the difference is larger than the seed spread ({spread:.2f} points)"
        else:
            text += f"; the difference is within the seed spread ({spread:.2f} points), so these runs do not " \
                    f"separate the two arms"
    return text + "."


EXPLAIN_READ = [("accuracy", "accuracy", True), ("grounding_precision", "grounding precision", True),
                ("hallucination_rate", "hallucination rate", False), ("format_rate", "format rate", True)]


def _explain_per_seed(info: dict, key: str, metric: str) -> dict[int, float]:
    out = {}
    for run in info["runs"]:
        source = run[OOD_AVG] if key == OOD_AVG else run["sets"][key]
        value = (source.get("explain") or {}).get(metric)
        if value is not None:
            out[run["seed"]] = value
    return out


def compare_explanations(a: dict, b: dict, key: str, column: str) -> list[str]:
    """Sentences comparing two generation arms' explanation metrics (in %) on one column, as `compare` does
    for the EER: means ± std, paired seeds, and the seed-spread screen."""
    lines = []
    for metric, title, higher_better in EXPLAIN_READ:
        va, vb = _explain_per_seed(a, key, metric), _explain_per_seed(b, key, metric)
        if not va or not vb:
            continue
        sa, sb = mean_std(va.values()), mean_std(vb.values())
        diff = (sa["mean"] - sb["mean"]) * 100
        text = (f"{column} {title}: {a['label']} {_pct(sa)} vs {b['label']} {_pct(sb)}: "
                + (f"{abs(diff):.1f} points {'higher' if diff > 0 else 'lower'}" if diff else "equal"))
        common = sorted(set(va) & set(vb))
        if len(common) > 1:
            better = sum((va[s] > vb[s]) if higher_better else (va[s] < vb[s]) for s in common)
            text += f", better in {better} of {len(common)} paired seeds"
        if sa["std"] is None and sb["std"] is None:
            text += "; single runs, no conclusion"
        else:
            spread = ((sa["std"] or 0.0) + (sb["std"] or 0.0)) * 100
            text += ("; larger than the seed spread" if abs(diff) > spread else "; within the seed spread") \
                + f" ({spread:.1f} points)"
        lines.append(text + ".")
    return lines


def chance_warnings(arms: dict, in_domain: str) -> list[str]:
    notes = []
    for info in arms.values():
        stat = info["summary"].get(in_domain, {}).get("eer", {})
        if stat.get("mean") is not None and stat["mean"] >= CHANCE_EER:
            notes.append(f"{info['label']}: in-domain EER {stat['mean'] * 100:.1f} % is near chance (50 %); "
                         f"that arm did not learn to separate bona fide from spoof on the target domain.")
    return notes


def write_reading(results: dict, pairs: list[str]) -> list[str]:
    """The reading, one sentence per list item."""
    lines: list[str] = []
    multi = len(results["detectors"]) > 1
    in_domain = results["in_domain"]
    for detector, det in results["detectors"].items():
        prefix = f"[{detector}] " if multi else ""
        arms = {k: v for k, v in det["arms"].items() if v["runs"]}
        for pair in pairs:
            a, b = parse_pair(pair)
            if a not in arms or b not in arms:
                continue
            for key, column in [(in_domain, "In-domain"), (OOD_AVG, "OOD average")]:
                if key == OOD_AVG and not results["ood"]:
                    continue
                sentence = compare(a, arms[a], b, arms[b], key, column)
                if sentence:
                    lines.append(prefix + sentence)
                lines += [prefix + x for x in compare_explanations(arms[a], arms[b], key, column)]
        lines += [prefix + note for note in chance_warnings(arms, in_domain)]
    if not lines:
        lines.append("No pair of configured arms has finished runs to compare yet.")
    lines.append("Lower EER is better. 'Seed spread' = std_A + std_B over seeds, a rough screen rather than a "
                 "significance test; the study (Wang et al.) averaged 3 runs per setting.")
    return lines
