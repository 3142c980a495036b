"""The results table (rows = arms; columns = in-domain, each OOD set, OOD average), as Markdown, text and HTML."""
from __future__ import annotations

import html

from spoofrl.experiment.results import OOD_AVG

METRIC_TITLES = {"eer": "EER (%)", "min_dcf": "minDCF"}


def fmt_stat(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    """'mean ± std' (just 'mean' for a single run; '–' when there is no run)."""
    if not stat or stat.get("mean") is None:
        return "–"
    text = f"{stat['mean'] * scale:.{digits}f}"
    if stat.get("std") is not None:
        text += f" ± {stat['std'] * scale:.{digits}f}"
    return text


def table_columns(results: dict) -> list[tuple[str, str]]:
    """(key in an arm summary, column title)."""
    cols = [(results["in_domain"], f"{results['in_domain']} (in-domain)")]
    cols += [(name, name) for name in results["ood"]]
    if results["ood"]:
        cols.append((OOD_AVG, "OOD avg"))
    return cols


def table_rows(results: dict, detector: str, metric: str = "eer") -> list[list[str]]:
    """Header row then one row per arm: label, runs, then each column's mean ± std."""
    scale, digits = (100.0, 2) if metric == "eer" else (1.0, 3)
    columns = table_columns(results)
    rows = [["arm", "runs"] + [title for _, title in columns]]
    for arm, info in results["detectors"][detector]["arms"].items():
        summary = info["summary"]
        rows.append([info["label"], str(len(info["runs"]))] +
                    [fmt_stat(summary.get(key, {}).get(metric, {}), scale, digits) for key, _ in columns])
    return rows


# (metric, column title, scale, digits) of the explain table; 'eer' is the score file's.
EXPLAIN_COLUMNS = [("accuracy", "accuracy %", 100.0, 1), ("eer", "EER %", 100.0, 2),
                   ("format_rate", "format %", 100.0, 1), ("grounding_precision", "grounding precision %", 100.0, 1),
                   ("hallucination_rate", "hallucination %", 100.0, 1),
                   ("unverifiable_rate", "unverifiable %", 100.0, 1), ("claims_per_clip", "claims / clip", 1.0, 2),
                   ("rationale_tokens", "tokens", 1.0, 1)]
EXPLAIN_CAPTION = ("Greedy decoding. accuracy: the <answer> equals the label; EER from the score log p(<answer>bonafide"
                   "</answer>) - log p(<answer>spoof</answer>), each after the model's own greedy rationale (the "
                   "score files); format: share of well-formed FT completions (<think> with both sections, then "
                   "<answer>); grounding precision / hallucination / unverifiable: share of the rationales' claims "
                   "the checker finds true / false / cannot check against the clip's measured evidence (claims "
                   "pooled over the set's clips; – = no claims); tokens: completion length, EOS included. Mean ± "
                   "sample std over seeds; OOD avg = mean over the OOD sets of each run, then over seeds.")


def has_explanations(results: dict, detector: str) -> bool:
    return any("explain" in (info["summary"].get(results["in_domain"]) or {})
               for info in results["detectors"][detector]["arms"].values())


def explain_columns(results: dict) -> list[tuple[str, str]]:
    """(key in an arm summary, title) of the explain tables: in-domain, the OOD average, each OOD set."""
    cols = [(results["in_domain"], f"{results['in_domain']} (in-domain)")]
    if results["ood"]:
        cols.append((OOD_AVG, "OOD avg"))
    return cols + [(name, f"OOD {name}") for name in results["ood"]]


def explain_rows(results: dict, detector: str, key: str) -> list[list[str]]:
    """One explain table (test set or 'ood_avg' `key`): a row per arm, a column per explanation metric."""
    rows = [["arm", "runs"] + [title for _, title, _, _ in EXPLAIN_COLUMNS]]
    for info in results["detectors"][detector]["arms"].values():
        column = info["summary"].get(key) or {}
        cells = []
        for metric, _, scale, digits in EXPLAIN_COLUMNS:
            stat = column.get(metric) if metric == "eer" else (column.get("explain") or {}).get(metric)
            cells.append(fmt_stat(stat or {}, scale, digits))
        rows.append([info["label"], str(len(info["runs"]))] + cells)
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    """Fixed-width table for the terminal."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])


def html_table(rows: list[list[str]]) -> str:
    head, *body = rows
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"]
    for r in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def caption(results: dict, metric: str) -> str:
    n_ood = len(results["ood"])
    what = "EER in %" if metric == "eer" else "normalised minDCF (ASVspoof 5 costs)"
    text = (f"{what}, mean ± sample std over seeds (a single value: one run); lower is better. "
            f"'runs' = finished runs (seeds).")
    if n_ood:
        text += f" OOD avg = mean over the {n_ood} out-of-domain sets of each run, then over seeds."
    return text


def results_markdown(results: dict, reading: list[str]) -> str:
    """The whole results.md."""
    lines = [f"# {results['experiment']}: results", ""]
    for detector in results["detectors"]:
        lines += [f"## Detector `{detector}`", ""]
        for metric in ("eer", "min_dcf"):
            lines += [f"**{METRIC_TITLES[metric]}**: {caption(results, metric)}", "",
                      markdown_table(table_rows(results, detector, metric)), ""]
        if has_explanations(results, detector):
            lines += ["### Explanations", "", EXPLAIN_CAPTION, ""]
            for key, title in explain_columns(results):
                lines += [f"**{title}**", "", markdown_table(explain_rows(results, detector, key)), ""]
    lines += ["## Reading", ""] + [f"- {line}" for line in reading] + [""]
    if results["missing_runs"]:
        lines += [f"Not finished (not in the table): {', '.join(results['missing_runs'])}.", ""]
    lines += ["Every number is recomputable from the saved score files (paths in results.json):",
              "", f"    {results['metric_settings']['recompute']}", ""]
    return "\n".join(lines)
