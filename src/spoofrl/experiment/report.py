"""Everything an experiment reports: results.json, results.md, the figures and a self-contained report.html.

report.html embeds its figures as base64 PNG and links the score files relatively: it opens offline, and
stays valid when the output folder is moved.
"""
from __future__ import annotations

import base64
import html
import logging
from datetime import datetime, timezone
from pathlib import Path

import yaml

from spoofrl.config import to_dict
from spoofrl.experiment.config import ExperimentConfig
from spoofrl.experiment.layout import Layout
from spoofrl.experiment.plots import plot_det, plot_histograms, plot_training_curves
from spoofrl.experiment.reading import write_reading
from spoofrl.experiment.results import collect_results, write_results_json
from spoofrl.experiment.tables import (EXPLAIN_CAPTION, METRIC_TITLES, caption, explain_columns, explain_rows,
                                      has_explanations, html_table, results_markdown, table_rows)

LOG = logging.getLogger(__name__)

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
.caption { color: #555; font-size: 0.85em; }
code, pre { background: #f6f6f6; }
pre { padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _arm_description(cfg: ExperimentConfig, arm: str) -> str:
    spec = cfg.arms[arm]
    start = "post-trained model" if spec.init == "posttrained" else "fresh initialisation (no post-training)"
    if spec.after:
        start = f"the final model of arm {cfg.arm_label(spec.after)} (same seed)"
    if not spec.train:
        return f"{start}, scored without fine-tuning"
    stages = spec.stage_list()
    parts = []
    for stage in stages:
        recipe = Path(stage.recipe or cfg.finetune.recipe).stem
        sets = spec.overrides + stage.overrides  # the shared finetune.overrides are listed once, above
        parts.append(recipe + (f" [{', '.join(sets)}]" if sets else ""))
    return f"{start} → " + " → ".join(parts)


def _ci(interval: list | None, scale: float, digits: int) -> str:
    return f" [{interval[0] * scale:.{digits}f}, {interval[1] * scale:.{digits}f}]" if interval else ""


def _run_details(results: dict, detector: str) -> str:
    """Per-run table: EER with its bootstrap CI on every set, and the training summary."""
    sets = results["test_sets"]
    head = (["arm", "seed"] + [f"{s}: EER % [CI]; minDCF [CI]" for s in sets]
            + ["best step", "best dev EER %", "train s (total)"])
    rows = [head]
    for info in results["detectors"][detector]["arms"].values():
        for run in info["runs"]:
            cells = [info["label"], str(run["seed"])]
            for name in sets:
                m = run["sets"][name]
                cells.append(f'<a href="{html.escape(m["scores"])}">{m["eer"] * 100:.2f}</a>'
                             + _ci(m.get("eer_ci"), 100, 1) + f"; {m['min_dcf']:.3f}" + _ci(m.get("min_dcf_ci"), 1, 3))
            last = run["training"][-1] if run["training"] else {}
            dev = last.get("best_dev_eer")
            cells += [str(last.get("best_step", "–")), f"{dev * 100:.2f}" if isinstance(dev, (int, float)) else "–",
                      f"{sum(s.get('seconds', 0) or 0 for s in run['training']):.0f}" if run["training"] else "–"]
            # an arm after another: best step / dev EER are its own last stage's; seconds include the other's
            rows.append(cells)
    # cells may hold links: build the table without escaping them
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:]]
    return "\n".join(out + ["</table>"])


def report_html(cfg: ExperimentConfig, results: dict, reading: list[str], layout: Layout) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(cfg.name)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(cfg.name)}</h1>",
             f"<p class='caption'>spoofrl {html.escape(results['spoofrl_version'])}, {when}. Scores: higher = more "
             f"bona fide. In-domain test set: <b>{html.escape(results['in_domain'])}</b>; out-of-domain: "
             f"{html.escape(', '.join(results['ood']) or 'none')}.</p>",
             "<h2>Arms</h2>",
             f"<p class='caption'>Every fine-tuning stage: recipe <code>{html.escape(cfg.finetune.recipe)}</code>"
             + (f" with <code>{html.escape(', '.join(cfg.finetune.overrides))}</code>" if cfg.finetune.overrides
                else "") + ", then the arm's own settings:</p><ul>"]
    parts += [f"<li><b>{html.escape(cfg.arm_label(a))}</b> (<code>{html.escape(a)}</code>): "
              f"{html.escape(_arm_description(cfg, a))}</li>" for a in results["detectors"][next(iter(
                  results["detectors"]))]["arms"]]
    parts.append("</ul><h2>Results</h2>")
    for detector in results["detectors"]:
        parts.append(f"<h3>Detector <code>{html.escape(detector)}</code></h3>")
        for metric in ("eer", "min_dcf"):
            parts.append(f"<p class='caption'><b>{METRIC_TITLES[metric]}</b>: {html.escape(caption(results, metric))}"
                         f"</p>")
            parts.append(html_table(table_rows(results, detector, metric)))
        if has_explanations(results, detector):
            parts.append(f"<h4>Explanations</h4><p class='caption'>{html.escape(EXPLAIN_CAPTION)}</p>")
            for key, title in explain_columns(results):
                parts += [f"<p><b>{html.escape(title)}</b></p>", html_table(explain_rows(results, detector, key))]
    parts.append("<h2>Reading</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in reading) + "</ul>")
    if results["missing_runs"]:
        parts.append(f"<p><b>Not finished</b> (not in the tables): {html.escape(', '.join(results['missing_runs']))}"
                     f"</p>")
    figures = [(layout.det_png, "DET curves on normal-deviate axes, one curve per arm (one seed each)."),
               (layout.hist_png, "Score distributions of bona fide and spoof trials."),
               (layout.curves_png, "Training curves from each run's metrics.csv (every seed; the first solid). Stages are "
                                "chained: SFT->GRPO shows its SFT run, then its GRPO steps.")]
    parts.append("<h2>Figures</h2>")
    for path, text in figures:
        if path.is_file():
            parts += [f"<p class='caption'>{html.escape(text)}</p>", _img(path, path.name)]
    parts.append("<h2>Runs</h2>")
    for detector in results["detectors"]:
        parts += [f"<h3>{html.escape(detector)}</h3>", _run_details(results, detector)]
    parts.append("<h2>Reproducing the numbers</h2><p>Each EER links to its score file. Recompute any of them "
                 f"with</p><pre>{html.escape(results['metric_settings']['recompute'])}</pre>")
    parts.append("<details><summary>Resolved experiment config</summary><pre>"
                 + html.escape(yaml.safe_dump(to_dict(cfg), sort_keys=False)) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(cfg: ExperimentConfig, layout: Layout, arms: list[str] | None = None) -> dict:
    """Write results.json, results.md, det.png, scores_hist.png, training_curves.png and report.html.

    Returns the results dict (with the reading under 'reading')."""
    results = collect_results(cfg, layout, arms)
    reading = write_reading(results, cfg.report.compare)
    results["reading"] = reading
    write_results_json(results, layout.results_json)
    layout.results_md.write_text(results_markdown(results, reading))
    plot_det(results, layout, layout.det_png, cfg.report.det_seed)
    plot_histograms(results, layout, layout.hist_png, cfg.report.det_seed)
    plot_training_curves(results, layout, layout.curves_png)
    layout.report_html.write_text(report_html(cfg, results, reading, layout))
    LOG.info("report written: %s", layout.report_html)
    return results
