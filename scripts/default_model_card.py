"""Measure a trained default-model candidate and write its MODEL_CARD.md (step 4 of train_default_model.sh).

    python scripts/default_model_card.py WORK SEED PRESET [REAL_MANIFEST]

WORK holds run/ (trained and calibrated) and bench/ (the design-2 benchmark it was trained on). Measured:
1. EER, minDCF, actDCF and CLLR of the calibrated scores on every held-out subset of the benchmark;
2. the share of each TTS engine's and each vocoder's spoofs called spoof at the model's threshold (LLR 0);
3. the real-speech check: the raw recordings (as `spoofrl data fetch` unpacked them, not the benchmark's
   re-packaged copies) of speakers that no training or calibration subset holds, run through `spoofrl
   detect`'s engine (voice-activity check, chunking, calibrated LLR): the share called bona fide.
Results go to WORK/eval.json and WORK/MODEL_CARD.md.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from spoofrl.data.manifest import BONAFIDE, SPOOF, read_manifest
from spoofrl.inference import score_utterances
from spoofrl.metrics import evaluate
from spoofrl.metrics.scorefile import write_scores
from spoofrl.models import count_parameters, load_model

EVAL_SUBSETS = ("target_eval", "ood_attack", "ood_source", "ood_channel", "ood_mix")
THRESHOLD = 0.0                                 # detect's default: bona fide when LLR >= 0
CLIPS_PER_SOURCE = 150                          # real-speech check: a fixed random sample of each source


def run_subsets(run: Path) -> tuple[list[str], list[str]]:
    """(training subsets, dev subsets) of the run: its config's data.train_subsets and data.dev_subsets."""
    from spoofrl.config import load_yaml
    data = load_yaml(run / "config.yaml")["data"]
    return list(data["train_subsets"]), list(data["dev_subsets"])


def held_out_scores(model, cal: dict, manifest: Path, work: Path) -> tuple[list[tuple], list[tuple]]:
    """(metric rows per subset, (utterance, llr) pairs of every held-out file)."""
    rows, scored = [], []
    present = {u.subset for u in read_manifest(manifest)}
    for subset in [s for s in EVAL_SUBSETS if s in present]:  # small presets hold only some subsets
        utts = read_manifest(manifest, subsets=[subset])
        raw = score_utterances(model, utts, device="cpu", desc=subset)
        write_scores(work / f"scores_{subset}.tsv", [u.utt for u in utts], raw, [u.label for u in utts],
                     [u.attack for u in utts], [u.condition for u in utts])
        llr = [cal["a"] * float(x) + cal["b"] for x in raw]
        bona = [s for s, u in zip(llr, utts) if u.label == BONAFIDE]
        spoof = [s for s, u in zip(llr, utts) if u.label != BONAFIDE]
        m = evaluate(bona, spoof)
        rows.append((subset, m["eer"], m["min_dcf"], m["act_dcf"], m["cllr"], len(bona), len(spoof)))
        scored += list(zip(utts, llr))
    return rows, scored


def spoof_shares(scored: list[tuple]) -> dict[str, dict[str, tuple[int, float]]]:
    """Share called spoof (LLR < threshold) of the held-out spoofs of each TTS engine and each vocoder
    (a TTS-through-vocoder file counts for both)."""
    groups: dict[str, dict[str, list[bool]]] = {"tts engine": defaultdict(list), "vocoder": defaultdict(list)}
    for utt, llr in scored:
        if utt.label != SPOOF:
            continue
        called = llr < THRESHOLD
        engine, vocoder = utt.extra.get("tts_engine", "-"), utt.extra.get("vocoder", "-")
        if engine not in ("", "-"):
            groups["tts engine"][engine].append(called)
        if vocoder not in ("", "-"):
            groups["vocoder"][vocoder].append(called)
    return {kind: {name: (len(v), sum(v) / len(v)) for name, v in sorted(g.items())} for kind, g in groups.items()}


def unseen_speaker_clips(real_manifest: Path, bench_manifest: Path, seen_subsets: list[str]) -> list:
    """A fixed sample of the raw recordings of speakers absent from the training and calibration subsets."""
    seen = {u.extra.get("speaker") for u in read_manifest(bench_manifest, subsets=seen_subsets)}
    by_source = defaultdict(list)
    for utt in read_manifest(real_manifest):
        if utt.extra.get("speaker") not in seen:
            by_source[utt.source].append(utt)
    rng = random.Random(0)
    sample = []
    for source in sorted(by_source):
        clips = sorted(by_source[source], key=lambda u: u.utt)
        sample += rng.sample(clips, min(CLIPS_PER_SOURCE, len(clips)))
    return sample


def real_speech_check(run: Path, clips: list) -> dict:
    """`spoofrl detect` (default options) on the clips: verdict counts overall and per source."""
    from spoofrl.detect.engine import DetectOptions, detect_files
    from spoofrl.detect.model import load_detection_model
    if not clips:
        return {"clips": 0, "speakers": 0, "total": {}, "per_source": {}}
    loaded = load_detection_model(run, device="cpu")
    results = detect_files(loaded, [str(u.audio_path) for u in clips], DetectOptions(show_progress=False))
    per_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    speakers = defaultdict(set)
    for utt, res in zip(clips, results):
        per_source[utt.source][res.verdict] += 1
        speakers[utt.source].add(utt.extra.get("speaker"))
    total: dict[str, int] = defaultdict(int)
    for counts in per_source.values():
        for verdict, n in counts.items():
            total[verdict] += n
    return {"clips": len(clips), "speakers": sum(len(s) for s in speakers.values()), "total": dict(total),
            "per_source": {s: {"counts": dict(c), "speakers": len(speakers[s])} for s, c in sorted(per_source.items())}}


def share(counts: dict, verdict: str, scored_only: bool) -> float:
    n = counts.get(BONAFIDE, 0) + counts.get(SPOOF, 0) if scored_only else sum(counts.values())
    return counts.get(verdict, 0) / n if n else float("nan")


def describe_frontend(fe: dict) -> str:
    """One line naming the front-end and its size, e.g. 'lfcc (40 coefficients + deltas)'."""
    if fe["name"] == "lfcc":
        extra = {0: "", 1: " + deltas", 2: " + deltas + delta-deltas"}[fe.get("delta_order", 0)]
        return f"lfcc ({fe.get('n_lfcc')} coefficients of {fe.get('n_filters')} linear filters{extra})"
    if fe["name"] == "logmel":
        return f"logmel ({fe.get('n_mels')} bands)"
    return fe["name"]


def describe_backend(be: dict) -> str:
    """One line naming the back-end, e.g. 'LCNN (max-feature-map) + 2 BLSTM layers'."""
    if be["name"] == "lcnn":
        return "LCNN (max-feature-map)" + (" + 2 BLSTM layers" if be.get("lstm") else "") + " -> linear"
    if be["name"] == "ffn":
        return f"frame-wise FFN {be.get('hidden')} -> {be.get('pooling')} pooling -> linear"
    return be["name"]


def _percent(x: float) -> str:
    return "-" if x != x else f"{x:.1%}"  # NaN: no clip of the source was scored


def real_check_text(check: dict) -> str:
    if not check["clips"]:
        return "Not measured: the real-speech manifest holds no recordings of speakers outside the training subsets."
    t = check["total"]
    called = share(t, BONAFIDE, scored_only=True)
    verdict = "meets" if called >= 0.9 else f"misses it by {(0.9 - called) * 100:.1f} points"
    lines = [f"{check['clips']} raw recordings of {check['speakers']} speakers that no training or calibration "
             f"subset holds ({CLIPS_PER_SOURCE} per source at most, a fixed random sample), scored with `spoofrl "
             f"detect`'s defaults: **{called:.1%} of the scored clips called bona fide** (target >= 90 %: it "
             f"{verdict}); {t.get('no-speech', 0)} clips were `no-speech` (too little speech to score), "
             f"{t.get('error', 0)} errors.", "",
             "| source | speakers | clips | bona fide | spoof | no-speech | called bona fide (of scored) |",
             "|---|---|---|---|---|---|---|"]
    for source, info in check["per_source"].items():
        c = info["counts"]
        lines.append(f"| {source} | {info['speakers']} | {sum(c.values())} | {c.get(BONAFIDE, 0)} | "
                     f"{c.get(SPOOF, 0)} | {c.get('no-speech', 0)} | {_percent(share(c, BONAFIDE, True))} |")
    return "\n".join(lines)


def shares_text(shares: dict) -> str:
    lines = []
    for kind, table in shares.items():
        lines += [f"| {kind} | spoofs | called spoof |", "|---|---|---|"]
        lines += [f"| {name} | {n} | {s:.1%} |" for name, (n, s) in table.items()]
        lines.append("")
    return "\n".join(lines)


def _quoted(subsets: list[str]) -> str:
    return " + ".join(f"`{s}`" for s in subsets)


def write_card(work: Path, seed: str, preset: str, model, cal: dict, summary: dict, rows: list, shares: dict,
               check: dict, train: list[str], dev: list[str]) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    cfg = model.cfg
    target_note = ("other clips of the speakers of `target_train`, which it trained on" if "target_train" in train
                   else "speakers it never heard")
    table = "\n".join(f"| {s} | {e:.2%} | {mn:.3f} | {ad:.3f} | {c:.3f} | {nb} | {ns} |"
                      for s, e, mn, ad, c, nb, ns in rows)
    card = f"""# spoofrl default model

This is the model `spoofrl detect` and `spoofrl serve` use when no `--model` is given. It was trained on
spoofrl's built-in benchmark, design 2 (`spoofrl data fetch && spoofrl data synth --design real --preset
{preset}`): bona fide = real human recordings from Debian packages (game dialogue, telephone prompts,
children's-software words; ~25 languages in its training subset), spoofs = those recordings through
copy-synthesis vocoders and codecs, rule-based TTS engines (espeak-ng, flite) speaking their transcripts, and
TTS through the vocoders, each given its recording's packaging. It has never heard modern neural TTS or voice
conversion: it is a demonstration of the tool, **not a production deepfake detector**; on such deepfakes its
scores are not evidence.

- Architecture: {describe_frontend(cfg.frontend)} -> {describe_backend(cfg.backend)};
  {count_parameters(model):,} parameters; input {cfg.sample_rate} Hz mono.
- Training: `spoofrl train configs/train/posttrain.yaml` (SFT, RawBoost) on {_quoted(train)}, model selected by
  EER on {_quoted(dev)} (best step {summary.get('best_step')} of {summary.get('steps')}), seed {seed}.
- Calibration: `llr = {cal['a']:.4f} * raw {'-' if cal['b'] < 0 else '+'} {abs(cal['b']):.4f}` fitted on {_quoted(dev)} at P(bona fide) = {cal['prior']:g};
  scores reported by `detect` are these LLRs (higher = more bona fide; verdict bona fide when LLR >= 0).
- Recipe: `scripts/train_default_model.sh` (SEED={seed}){f', code at commit {commit}' if commit else ''}.

## Real human speech from unseen speakers

{real_check_text(check)}

## Measured EERs

Dev ({_quoted(dev)}, {cal['n_bonafide']} bona fide + {cal['n_spoof']} spoof): EER {cal['dev_eer']:.2%};
actDCF {cal['before']['act_dcf']:.3f} before / {cal['after']['act_dcf']:.3f} after calibration.

Held-out subsets (never used for training, model selection or calibration), calibrated scores, whole files;
minDCF/actDCF with ASVspoof 5 costs:

| subset | EER | minDCF | actDCF | CLLR | bona fide | spoof |
|---|---|---|---|---|---|---|
{table}

`target_eval`: Dutch speakers and other vocoder settings / espeak-ng voices / channels ({target_note});
`ood_attack`: unseen
vocoders (hnm, celp) and TTS engines (espeak-ng Klatt, festival); `ood_source`: unseen speakers and languages
(French, Italian, Russian); `ood_channel`: unseen codecs (gsm, mu-law, aac); `ood_mix`: all at once (see the
benchmark's README.md).

## Spoofs called spoof, per TTS engine and per vocoder

Held-out spoofs of the subsets above at LLR 0 (a TTS-through-vocoder file counts under both its engine and
its vocoder):

{shares_text(shares)}"""
    (work / "MODEL_CARD.md").write_text(card)
    return card


def main(argv: list[str]) -> None:
    work, seed, preset = Path(argv[0]), argv[1], argv[2]
    from spoofrl.synth.real_generate import default_real_manifest
    real_manifest = Path(argv[3]) if len(argv) > 3 and argv[3] else default_real_manifest()
    run, manifest = work / "run", work / "bench" / "manifest.csv"
    model = load_model(run, "cpu")
    cal = json.loads((run / "calibration.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    rows, scored = held_out_scores(model, cal, manifest, work)
    shares = spoof_shares(scored)
    train, dev = run_subsets(run)
    check = real_speech_check(run, unseen_speaker_clips(real_manifest, manifest, train + dev))
    keys = ["subset", "eer", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof"]
    (work / "eval.json").write_text(json.dumps({"subsets": [dict(zip(keys, r)) for r in rows],
                                                "spoof_shares": shares, "real_speech": check}, indent=1))
    print(write_card(work, seed, preset, model, cal, summary, rows, shares, check, train, dev))


if __name__ == "__main__":
    main(sys.argv[1:])
