"""`annotate_manifest`: the clips of a manifest -> one JSON line each, with an evidence-grounded rationale.

The job behind `spoofrl data rationales`. It fits (or loads) a bona fide reference profile, measures every
clip's evidence against it, writes a rationale for it (`write_rationale`) and appends one JSON line:

    {"utt", "path", "label", "subset", "attack", "seed", "rationale", "completion", "claims", "evidence"}

`completion` is exactly what SFT trains on (the rationale and the <answer>); `claims` lists what each
sentence claims with the evidence items it cites; `evidence` is the clip's full item list (what
`ft_grounded` checks a model's rationale against during RL).

Resumable: the lines already in the output are kept and their clips skipped. Deterministic for a seed,
whatever the number of workers and however often it is resumed: each clip's paraphrases are drawn from a
generator seeded by (seed, subset, file name). A clip that cannot be read or measured is named on one line and
listed in `<out>.errors.tsv`; the others are still written.
"""
from __future__ import annotations

import csv
import json
import logging
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from spoofrl.audio import load_audio
from spoofrl.data.manifest import BONAFIDE, Utterance, csv_records, read_manifest
from spoofrl.errors import AudioError, ProtocolError, SpoofrlError
from spoofrl.evidence import (
    EvidenceConfig,
    EvidenceError,
    ReferenceProfile,
    evidence,
    fit_reference,
)
from spoofrl.evidence.frames import prepare_wave
from spoofrl.explain.rationale import write_rationale
from spoofrl.log import progress
from spoofrl.workers import pool_initializer

LOG = logging.getLogger("spoofrl.explain")
ERROR_COLUMNS = ["utt", "subset", "path", "manifest_line", "stage", "error"]


@dataclass(frozen=True)
class ClipError:
    """A clip that could not be used: which, where in the manifest, at which stage, and why."""
    utt: str
    subset: str
    path: str
    line: int | None
    stage: str     # "reference" (fitting the profile) or "annotate"
    reason: str

    def message(self) -> str:
        where = f" (manifest line {self.line})" if self.line is not None else ""
        role = " as a reference clip" if self.stage == "reference" else ""
        return f"skipped {self.path}{where}{role}: {self.reason}"


@dataclass
class AnnotateReport:
    out: Path
    reference_path: Path | None
    reference_source: str
    written: int = 0
    resumed: int = 0
    errors: list[ClipError] = field(default_factory=list)
    claims_per_clip: list[int] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def errors_path(self) -> Path:
        return errors_path(self.out)

    def summary(self) -> list[str]:
        lines = [f"{self.written} clips written to {self.out}" + (f" ({self.resumed} already there)"
                                                                   if self.resumed else ""),
                 f"reference: {self.reference_source}"]
        if self.claims_per_clip:
            counts = np.asarray(self.claims_per_clip)
            lines.append(f"claims per clip: {counts.mean():.2f} (min {counts.min()}, max {counts.max()})")
            lines.append("kinds stated: " + ", ".join(f"{k} {n}" for k, n in self.kinds.most_common()))
        per_clip = self.seconds / self.written if self.written else 0.0
        lines.append(f"time: {self.seconds:.1f} s in all, {per_clip * 1000:.0f} ms per clip written (reference fit "
                     f"included)")
        skipped = sum(1 for e in self.errors if e.stage == "annotate")
        unused = len(self.errors) - skipped
        if self.errors:
            parts = [f"{skipped} clips skipped"] + ([f"{unused} reference clips left out"] if unused else [])
            lines.append(f"{', '.join(parts)}: listed in {self.errors_path} (rerun to retry them)")
        return lines


def reference_path(out: Path) -> Path:
    return Path(out).with_suffix(".reference.json")


def errors_path(out: Path) -> Path:
    return Path(out).with_suffix(".errors.tsv")


def clip_seed(seed: int, row: Utterance) -> list[int]:
    """A clip's own seed: the same for a seed whatever the order, the workers, the resumes, and wherever the
    files are (the file's name, not its folder: an experiment's manifests hold absolute paths, which would
    make its rationales, and every model trained on them, depend on its --out). Clips of one name in two
    folders share a seed, which only means the same draws of wording."""
    return [int(seed), zlib.crc32(f"{row.subset}\0{Path(row.utt).name}".encode())]


def manifest_lines(manifest: Path) -> dict[tuple[str, str], int]:
    """(path as written, subset) -> the manifest line it is on, to name a bad clip's line."""
    records = csv_records(manifest, "manifest")
    header = next(records, None)
    if header is None:
        return {}
    names = [h.strip() for h in header[1]]
    if "path" not in names:
        return {}
    p, s = names.index("path"), names.index("subset") if "subset" in names else None
    lines = {}
    for lineno, cells in records:
        if len(cells) == len(names):
            subset = (cells[s].strip() if s is not None else "") or "-"
            lines.setdefault((cells[p].strip(), subset), lineno)
    return lines


# ------------------------------------------------------------------------------------------ resuming


def finished_records(out: Path, seed: int) -> set[tuple[str, str]]:
    """(utt, subset) of the clips already written. A line cut short by an interrupted run is dropped (the
    file is rewritten without it); lines written with another seed are an error (mixing seeds would make
    the file depend on its history)."""
    if not out.is_file():
        return set()
    kept, done, dropped = [], set(), 0
    for lineno, text in enumerate(out.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            key = (str(record["utt"]), str(record["subset"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            dropped += 1
            continue
        if record.get("seed") != seed:
            raise ProtocolError(out, f"written with --seed {record.get('seed')}, not {seed}; rerun with that seed "
                                     f"to resume it, or write to another --out", lineno)
        kept.append(text)
        done.add(key)
    if dropped:
        LOG.warning("%s: dropped %d unfinished line(s) of an interrupted run; their clips are redone", out, dropped)
        out.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return done


# ------------------------------------------------------------------------------------------ the reference


def _reference_waves(rows: list[Utterance], sr: int, lines, errors: list[ClipError], cfg):
    """Waves of the usable bona fide reference clips; the others are named and recorded."""
    for row in progress(rows, desc="reference", unit="clip"):
        try:
            wave = load_audio(row.audio_path, sr)
            prepare_wave(wave, sr, cfg)
        except SpoofrlError as err:
            errors.append(_clip_error(row, lines, "reference", err))
            LOG.warning(errors[-1].message())
            continue
        yield wave


def build_reference(manifest: Path, subsets: list[str] | None, lines, errors: list[ClipError]) -> ReferenceProfile:
    """A reference profile fitted on the bona fide rows of `subsets` (all subsets when None)."""
    cfg = EvidenceConfig()
    rows = [r for r in read_manifest(manifest, subsets) if r.label == BONAFIDE]
    where = f"subsets {', '.join(subsets)}" if subsets else "the manifest"
    if not rows:
        raise ProtocolError(manifest, f"no bona fide rows in {where} to fit the reference profile on; pass "
                                      f"--reference-subsets or --reference")
    try:
        return fit_reference(_reference_waves(rows, cfg.sample_rate, lines, errors, cfg), cfg)
    except EvidenceError as err:
        raise SpoofrlError(f"{manifest}: cannot fit the bona fide reference on {where}: {err}") from None


# ------------------------------------------------------------------------------------------ one clip

_WORKER: dict = {}


def _init_worker(reference: dict, seed: int, max_claims: int) -> None:
    _WORKER.update(reference=ReferenceProfile.from_dict(reference), seed=seed, max_claims=max_claims)


def _clip_error(row: Utterance, lines, stage: str, err: SpoofrlError) -> ClipError:
    reason = err.reason if isinstance(err, AudioError) else str(err)
    return ClipError(row.utt, row.subset, str(row.audio_path), lines.get((row.path, row.subset)), stage, reason)


def annotate_clip(row: Utterance, reference: ReferenceProfile, seed: int, max_claims: int = 3) -> dict:
    """The JSON record of one clip (raises SpoofrlError when it cannot be read or measured)."""
    sr = reference.config.sample_rate
    wave = load_audio(row.audio_path, sr)
    items = evidence(wave, sr, reference)
    rationale = write_rationale(items, row.label, np.random.default_rng(clip_seed(seed, row)), max_claims=max_claims)
    return {"utt": row.utt, "path": str(row.audio_path), "label": row.label, "subset": row.subset,
            "attack": row.attack, "seed": seed, "rationale": rationale.text, "completion": rationale.completion,
            "claims": [c.to_dict() for c in rationale.claims], "evidence": [i.to_dict() for i in items]}


def _annotate_job(job: tuple[Utterance, int | None]):
    row, line = job
    try:
        return annotate_clip(row, _WORKER["reference"], _WORKER["seed"], _WORKER["max_claims"])
    except SpoofrlError as err:
        return _clip_error(row, {(row.path, row.subset): line}, "annotate", err)
    except Exception as err:  # a bug: say which clip triggered it
        err.add_note(f"while annotating {row.audio_path}")
        raise


# ------------------------------------------------------------------------------------------ the job


def _results(jobs, reference: ReferenceProfile, seed: int, max_claims: int, workers: int):
    init = (reference.to_dict(), seed, max_claims)
    if workers <= 1:
        _init_worker(*init)
        yield from map(_annotate_job, jobs)
        return
    # workers die with this process: a killed `data rationales` must not leave them waiting for tasks
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), **pool_initializer(_init_worker, init)) as pool:
        yield from pool.map(_annotate_job, jobs, chunksize=4)


def annotate_manifest(manifest: str | Path, out: str | Path, *, subsets: list[str] | None = None,
                      reference_subsets: list[str] | None = None, reference: str | Path | None = None,
                      seed: int = 0, workers: int = 1, max_claims: int = 3) -> AnnotateReport:
    """Write `out` (JSON lines) for the clips of `subsets` (all when None); see the module docstring."""
    started = time.perf_counter()
    manifest, out = Path(manifest), Path(out)
    rows = read_manifest(manifest, subsets)
    lines = manifest_lines(manifest)
    done = finished_records(out, seed)
    errors: list[ClipError] = []
    if reference is not None:
        profile, ref_path, source = ReferenceProfile.load(reference), None, str(reference)
    elif done and reference_path(out).is_file():  # resuming: the profile the finished lines were written with
        ref_path = reference_path(out)
        profile, source = ReferenceProfile.load(ref_path), f"{ref_path} (fitted by the earlier run)"
    else:
        ref_path = reference_path(out)
        profile = build_reference(manifest, reference_subsets or subsets, lines, errors)
        profile.save(ref_path)
        source = f"{ref_path} (fitted on {profile.n_clips} bona fide clips)"
    report = AnnotateReport(out, ref_path, source, resumed=len(done), errors=errors)
    todo = [(row, lines.get((row.path, row.subset))) for row in rows if (row.utt, row.subset) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as fh:
        results = _results(todo, profile, seed, max_claims, workers)
        for result in progress(results, desc="rationales", total=len(todo), unit="clip"):
            if isinstance(result, ClipError):
                errors.append(result)
                LOG.warning(result.message())
                continue
            fh.write(json.dumps(result, ensure_ascii=False) + "\n")
            fh.flush()
            report.written += 1
            report.claims_per_clip.append(len(result["claims"]))
            report.kinds.update(c["kind"] for c in result["claims"])
    _write_errors(out, errors)
    report.seconds = time.perf_counter() - started
    return report


def _write_errors(out: Path, errors: list[ClipError]) -> None:
    """The clips skipped by this run (a rerun retries them, so an earlier run's list is replaced)."""
    path = errors_path(out)
    if not errors:
        path.unlink(missing_ok=True)
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(ERROR_COLUMNS)
        for e in errors:
            writer.writerow([e.utt, e.subset, e.path, "" if e.line is None else e.line, e.stage,
                             " ".join(e.reason.split())])
