"""Write the MODEL_CARD.md of the bundled explainer (step 2 of scripts/train_explainer.sh).

    python scripts/explainer_card.py WORK SEED OUT.md

WORK is the output folder of `spoofrl experiment explain --arms ft_grpo_grounded` (results.json, and the run in
alm/arms/ft_grpo_grounded/seed<SEED>/): every number is read from that run's score files and per-clip explanation
files (spoofrl.detect.explanations.summarise through the experiment's report), on the in-domain test subset
(target_eval) and the four OOD subsets of the built-in benchmark.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from spoofrl.alm.io import load_alm
from spoofrl.config import load_yaml

ARM = "ft_grpo_grounded"
FILES = ("alm.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
         "config.yaml", "evidence_reference.json")


def pct(x) -> str:
    return "–" if x is None else f"{x * 100:.1f}"


def main(work: Path, seed: int, out: Path) -> None:
    results = json.loads((work / "results.json").read_text())
    arm = results["detectors"]["alm"]["arms"][ARM]
    runs = [r for r in arm["runs"] if r["seed"] == seed]
    if not runs:
        raise SystemExit(f"{work}: no finished {ARM} run of seed {seed} in results.json")
    run = runs[0]
    folder = work / "alm" / "arms" / ARM / f"seed{seed}" / "stage1"
    model = load_alm(folder, device="cpu")
    params = sum(p.numel() for p in model.parameters())
    size = sum((folder / f).stat().st_size for f in FILES if (folder / f).is_file())
    cfg = load_yaml(folder / "config.yaml")
    sft = load_yaml(work / "alm" / "arms" / "ft_sft" / f"seed{seed}" / "stage1" / "config.yaml")
    rewards = ", ".join(f"{r['name']} {r['weight']:g}" for r in cfg["objective"]["rewards"])
    training = {s["arm"]: s for s in run["training"]}

    rows = ["| test subset | clips | accuracy % | EER % | minDCF | format % | grounding precision % | "
            "hallucination % | unverifiable % | claims / clip | tokens |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    names = {results["in_domain"]: "target_eval (in-domain)", **{n: f"ood_{n}" for n in results["ood"]}}
    for name in results["test_sets"]:
        m = run["sets"][name]
        e = m["explain"]
        clips = sum(1 for line in (work / m["explanations"]).read_text().splitlines() if line.strip())
        rows.append(f"| {names[name]} | {clips} | {pct(e['accuracy'])} | {m['eer'] * 100:.2f} | {m['min_dcf']:.3f} | "
                    f"{pct(e['format_rate'])} | {pct(e['grounding_precision'])} | {pct(e['hallucination_rate'])} | "
                    f"{pct(e['unverifiable_rate'])} | {e['claims_per_clip'] or 0:.2f} | {e['rationale_tokens']:.1f} |")
    ood = run["ood_avg"]
    oe = ood["explain"]
    rows.append(f"| OOD average | | {pct(oe['accuracy'])} | {ood['eer'] * 100:.2f} | {ood['min_dcf']:.3f} | "
                f"{pct(oe['format_rate'])} | {pct(oe['grounding_precision'])} | {pct(oe['hallucination_rate'])} | "
                f"{pct(oe['unverifiable_rate'])} | {oe['claims_per_clip'] or 0:.2f} | {oe['rationale_tokens']:.1f} |")

    answers, completions, n_all = {"spoof": 0, "bonafide": 0, None: 0}, set(), 0
    for name in results["test_sets"]:
        for line in (work / run["sets"][name]["explanations"]).read_text().splitlines():
            record = json.loads(line)
            answers[record["answer"] if record["answer"] in ("spoof", "bonafide") else None] += 1
            completions.add(record["completion"])
            n_all += 1
    behaviour = (f"Over the {n_all} held-out clips it answers spoof {answers['spoof']} times, bona fide "
                 f"{answers['bonafide']} times and gives no valid answer {answers[None]} times, with "
                 f"{len(completions)} distinct completions.")
    if max(answers.values()) >= 0.95 * n_all:
        behaviour += (" Two thirds of every test subset are spoofs; an "
                      "accuracy equal to the share of the class it always names means it answers one class "
                      "whatever the clip: "
                      "**it has not learned to detect**; its rationales are nearly fixed texts in the trained "
                      "format, and their grounding precision says how often those few fixed claims hold for a "
                      "clip, not that it reads the audio.")

    example = None
    for line in (work / run["sets"][results["in_domain"]]["explanations"]).read_text().splitlines():
        record = json.loads(line)
        if record["label"] == "spoof" and record["answer"] == "spoof" and record["n_claims"]:
            example = record
            break

    text = f"""# The bundled explainer (`src/spoofrl/assets/explainer/`)

An audio LLM that answers "bona fide or spoof?" by first writing a frequency-domain and a time-domain analysis of
the clip (FT-GRPO's format, arXiv 2601.02983), then its verdict:

```
<think>
<Frequency Domain> ...
<Time Domain> ...
</think>
<answer>bonafide|spoof</answer>
```

**What it is: a demonstration**, trained in minutes on 2 CPU cores on spoofrl's built-in benchmark (design 2, the
`small` preset: real human recordings from Debian packages vs their vocoded copies, rule-based TTS (espeak-ng,
flite) and TTS through vocoders; docs/benchmark.md). It has never heard neural TTS or voice conversion, modern
codecs beyond the benchmark's, or real-world deepfakes: **do not use it to judge real audio.** Its numbers below
say how well the training recipe works on that benchmark, not how well any detector would do in the wild.

- Model: `spoofrl.alm.SmallAlm` built from scratch ({params / 1e6:.2f} M parameters; {size / 1e6:.1f} MB for the
  files here), log-mel front end, {cfg['model']['alm'].get('lm_layers', '?')}-layer Qwen2-style language model,
  byte-level BPE tokenizer ({cfg['model']['tokenizer'].get('vocab_size', '?')} entries) trained on the prompts and
  rationales. Load it with `spoofrl.alm.load_alm("src/spoofrl/assets/explainer")`; explain clips with
  `spoofrl.detect.explanations.explain_waves(model, waves, prompt, max_completion_length=
  {cfg['objective']['max_completion_length']}, evidence=...)` (the prompt is `generation.prompt` in config.yaml).
- Training (scripts/train_explainer.sh; the `ft_grpo_grounded` arm of configs/experiments/explain.yaml, seed
  {seed}): FT-SFT ({sft['schedule']['steps']} steps of configs/train/explain-sft.yaml on the `posttrain` +
  `target_train` clips with the rationales of `spoofrl data rationales`; best of {sft['schedule']['steps']} steps by
  greedy-answer accuracy on `posttrain_dev` + `target_dev`: step {training.get('ft_sft', {}).get('best_step', '?')}),
  then GRPO ({cfg['schedule']['steps']} steps of configs/train/explain-grpo.yaml, G = {cfg['objective']['num_generations']},
  beta {cfg['objective']['beta']:g}, rewards {rewards}; best step
  {training.get(ARM, {}).get('best_step', '?')}).
- `evidence_reference.json`: the bona fide reference profile its training rationales were measured against
  (fitted on the training clips' bona fide rows); check a rationale's claims against a clip's evidence measured
  with it (`spoofrl.evidence.evidence(wave, 16000, ReferenceProfile.load(...))`, docs/explain.md).

## Measured on the benchmark's held-out subsets

Greedy decoding. Accuracy: the `<answer>` equals the label. EER / minDCF from the score log p(`<answer>bonafide
</answer>`) - log p(`<answer>spoof</answer>`), each teacher-forced after the model's own greedy rationale.
Format: well-formed FT completions. Grounding precision / hallucination / unverifiable: shares of the rationales'
claims that the rule-based checker finds true / false / cannot check against the clip's measured evidence.
Tokens: completion length (EOS included). One run (seed {seed}); the study's table over 3 seeds is in BENCHMARKS.md
("Explainable detection study").

{chr(10).join(rows)}

{behaviour}

"True" means "as measured against this bona fide reference profile", not "perceptually true"; the checker reads
the vocabulary of docs/explain.md only.
"""
    if example is not None:
        verdicts = "; ".join(f"{c.get('verdict')}: {(c.get('claim') or {}).get('text', '').strip()}" for c in example["claims"])
        text += f"""
## An example (in-domain spoof clip, called spoof)

```
{example['completion']}
```

Claims checked: {verdicts}
"""
    text += """
## What it is not

- Not a detector for real-world deepfakes: trained and tested only on the built-in benchmark's attacks
  (vocoders, rule-based TTS, their packaging and channels), with no neural TTS or voice conversion.
- Its rationales follow the templated register of spoofrl's rationale writer; "grounded" is a rule-based check
  against one reference profile, not a perceptual or forensic judgement.
- Not a working detector even on the benchmark: small (0.4 M parameters) and briefly trained (minutes on 2
  CPU cores), it answers one class whatever the clip (see above); the bundled detector
  (src/spoofrl/assets/default-model/MODEL_CARD.md) is the one that detects. It is here to show the
  explainable-detection recipe end to end (format, verdict score, claims checked against evidence), and as a
  starting point to load and fine-tune.
"""
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
