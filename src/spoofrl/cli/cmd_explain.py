"""`spoofrl explain PATH...`: an audio LLM's verdict on each file, its rationale, and every claim checked."""
from __future__ import annotations

import argparse
import sys
import textwrap

from spoofrl.cli.common import (add_batch_size_option, add_deprecated_alias, add_device_option, add_format_option,
                                add_model_option, add_output_option, check_output_file, write_report)
from spoofrl.detect.explain_report import (ERROR, MAX_SECONDS_LIMIT, NO_REFERENCE, SCORE_MEANING, VERDICTS,
                                           FileExplanation, explain_files, report_dict, summary_counts)
from spoofrl.detect.report import printable

_SCORE_LINES = SCORE_MEANING.replace("; ", ";\n             ")   # the help's score entry, on two lines
DESCRIPTION = f"""\
Explain why an audio LLM judges audio files bona fide or spoof. For each file the model writes, greedily,
its rationale (FT-GRPO's format: <think> a <Frequency Domain> and a <Time Domain> analysis </think>) and its
answer. Reported per file:

  verdict    the model's answer: bonafide or spoof ('unanswered' when it wrote no valid answer)
  score      {_SCORE_LINES}
             (0: both answers equally likely; not calibrated)
  rationale  the text of its <think> part
  claims     each claim of the rationale checked against evidence measured on the clip (spoofrl.evidence,
             z-scored against the bona fide reference profile the model was trained with, the model folder's
             evidence_reference.json): true, false or unverifiable, with the evidence items it cites (kind,
             band in Hz or time span in s, value with its unit, z-score). A model without that profile is
             explained, but its claims are not checked.

PATH may be files, folders (searched recursively for audio files) or quoted globs ('data/**/*.flac'), in
any format spoofrl reads, downmixed and resampled to the model's rate. Only the first --max-seconds of each
file are explained (the report says so for longer files). Files that cannot be explained get verdict
'error' with the reason; the others are still explained.

Without --model the default explainer bundled with spoofrl is used (when this installation has one).

Ctrl-C stops; the files finished so far are still reported (the others get verdict 'error').

Exit status: 0 every file explained ('unanswered' included); 1 some files failed (verdict 'error');
2 nothing could be run (bad option, bad model folder, no bundled explainer); 130 interrupted."""


def register(sub):
    p = sub.add_parser("explain", help="why a clip is judged fake: an audio LLM's verdict, score, rationale and "
                                       "its claims checked against measured evidence",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders (recursive) or quoted globs")
    add_model_option(p, "a generation run folder or audio LLM folder (a spoofrl ALM with alm.json, or a Hugging "
                     "Face one with config.json or adapter_config.json; its config.yaml gives the prompt, its "
                     "evidence_reference.json what claims are checked against); default: the bundled explainer")
    fmt = add_format_option(p, ("text", "json"), "text (default; readable) or json (one document: model, files with "
                            "verdict, score, rationale, checked claims and the clip's measured evidence, summary)")
    add_deprecated_alias(p, "--json", fmt, const="json")
    add_deprecated_alias(p, "--out", add_output_option(p))
    p.add_argument("--max-seconds", type=float, default=30.0, metavar="S",
                   help="explain at most the first S seconds of each file (default 30)")
    add_batch_size_option(p, 8, "files explained per forward pass (default 8; lower it when memory is short)")
    p.add_argument("--max-completion-length", type=int, default=None, metavar="N",
                   help="most tokens of a rationale and answer (default: the run's objective.max_completion_length)")
    add_device_option(p)
    p.set_defaults(func=run)


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _where(item: dict) -> str:
    """Where an evidence item lies, as the claims name it: a band for spectral kinds, a time span for events and
    the clip statistics measured on part of it (pauses, voiced frames)."""
    from spoofrl.explain.rationale import TIME_KINDS
    band, span = item.get("band_hz"), item.get("span_s")
    if item["kind"] in TIME_KINDS and span is not None:
        return f"{span[0]:.2f}-{span[1]:.2f} s"
    if band is not None:
        return f"{band[0]:g}-{band[1]:g} Hz"
    return "whole clip"


def evidence_line(item: dict) -> str:
    """One cited evidence item: kind, band or time span, value with unit, z."""
    value = _number(item.get("value"), ".4g")
    z = _number(item.get("z"), "+.1f")
    return f"{item['kind']:<22} {_where(item):<18} {value} {item.get('unit') or ''}".rstrip() + f"   z {z}"


def _wrapped(text: str, indent: str) -> list[str]:
    """The model's text, each of its lines wrapped and indented (escaped: a model can write control characters)."""
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(printable(paragraph), 100, initial_indent=indent, subsequent_indent=indent + "  ")
                     or [indent])
    return lines


def _claims_table(r: FileExplanation) -> list[str]:
    lines = [f"  claims: {r.n_claims} ({r.n_true} true, {r.n_false} false, {r.n_unverifiable} unverifiable)"]
    if r.claims:
        lines.append(f"    {'#':>2}  {'verdict':<13} claim")
    for number, verdict in enumerate(r.claims, 1):
        first = f"    {number:>2}  {verdict['verdict']:<13} "
        claim = textwrap.wrap(f"\"{printable(verdict['claim']['text'])}\"", 100 - len(first)) or ['""']
        under = " " * len(first)      # the lines below a claim start where its text does
        lines.append(first + claim[0])
        lines.extend(under + more for more in claim[1:])
        lines.append(f"{under}why: {printable(verdict['reason'])}")
        lines.extend(f"{under}cites: {evidence_line(item)}" for item in verdict["evidence"])
    return lines


def _file_block(r: FileExplanation) -> list[str]:
    head = f"  verdict: {r.verdict}   score: {_number(r.score, '.3f')}"
    if r.seconds is not None:
        head += f"   ({r.seconds:.2f} s explained)"
    lines = [printable(r.path), head]
    if r.error:
        return lines + [f"  error: {printable(r.error)}"]
    lines += [f"  note: {printable(note)}" for note in r.notes]
    lines.append("  rationale:")
    lines += _wrapped(r.rationale or "(none)", "    ")
    if r.claims_checked:
        lines += _claims_table(r)
    return lines


def format_text(explainer, results: list[FileExplanation]) -> str:
    """The readable report: the model, then per file verdict, score, rationale and the claims table."""
    info = explainer.info()
    lines = [f"model: {printable(info['name'])}  [{printable(info['path'])}]  ({info['kind']}, "
             f"{info['sample_rate']} Hz)", f"score: {SCORE_MEANING}"]
    ref = info["evidence_reference"]
    lines.append(f"claims: checked against {printable(ref['path'])} (a bona fide reference of {ref['n_clips']} "
                 f"clips)" if ref else NO_REFERENCE)
    for r in results:
        lines += [""] + _file_block(r)
    counts = summary_counts(results)
    lines += ["", f"{counts['files']} file(s): " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the command

def _check_options(args) -> None:
    """Refuse unusable options before the model is loaded."""
    from spoofrl.errors import SpoofrlError
    if not 0 < args.max_seconds <= MAX_SECONDS_LIMIT:     # also refuses NaN
        raise SpoofrlError(f"--max-seconds must be above 0 and at most {MAX_SECONDS_LIMIT:g}, got {args.max_seconds:g}")
    if args.batch_size < 1:
        raise SpoofrlError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_completion_length is not None and args.max_completion_length < 1:
        raise SpoofrlError(f"--max-completion-length must be >= 1, got {args.max_completion_length}")
    check_output_file(args.output, "--output")


def _check_against_reference(explainer, max_seconds: float) -> None:
    """The evidence measures clips up to its config's max_seconds: a longer --max-seconds could not be checked."""
    from spoofrl.errors import SpoofrlError
    limit = explainer.reference.config.max_seconds if explainer.reference is not None else None
    if limit is not None and max_seconds > limit:
        raise SpoofrlError(f"--max-seconds {max_seconds:g}: the model's evidence reference measures clips of at most "
                           f"{limit:g} s; give at most that")


def _render(explainer, results: list[FileExplanation], settings: dict, fmt: str) -> str:
    import json
    if fmt == "json":
        # allow_nan=False: bare NaN is not JSON (report_dict has turned every non-finite number into null)
        return json.dumps(report_dict(explainer, results, settings), indent=2, allow_nan=False) + "\n"
    return format_text(explainer, results)


def _tell(message: str) -> None:
    print(f"spoofrl explain: {message}", file=sys.stderr)


def run(args) -> int:
    from spoofrl.detect.inputs import expand_inputs
    from spoofrl.detect.explainer import load_explainer
    _check_options(args)
    inputs = expand_inputs(args.paths)
    explainer = load_explainer(args.model, args.device)
    _check_against_reference(explainer, args.max_seconds)
    if explainer.reference is None:
        _tell(NO_REFERENCE)
    max_length = args.max_completion_length or explainer.max_completion_length
    settings = {"max_seconds": args.max_seconds, "batch_size": args.batch_size, "max_completion_length": max_length,
                "device": str(explainer.model.device)}
    results, interrupted = explain_files(explainer, inputs, args.max_seconds, args.batch_size, max_length)
    write_report(_render(explainer, results, settings, args.format), args.output, "--output")
    clipped = sum(r.clipped for r in results)
    if clipped:
        _tell(f"{clipped} file(s) longer than --max-seconds {args.max_seconds:g}: only their first "
              f"{args.max_seconds:g} s were explained")
    failed = sum(r.verdict == ERROR for r in results)
    if interrupted:
        _tell(f"interrupted; the report holds the {len(results) - failed} file(s) explained before Ctrl-C")
        return 130
    if failed:
        _tell(f"{failed} of {len(results)} file(s) could not be explained (verdict 'error')")
        return 1
    return 0
