#!/usr/bin/env bash
# Rebuild the explainer bundled in src/spoofrl/assets/explainer/: the built-in audio LLM (spoofrl.alm.SmallAlm)
# trained FT-SFT (cold start on evidence-grounded rationales) then FT-GRPO with the ft_grounded reward, with the
# recipes and data of the explainable-detection study (configs/experiments/explain.yaml, one seed). It is that
# study's ft_grpo_grounded arm run through the experiment runner, so it also:
#   - makes the `small` built-in benchmark of design 2 (`spoofrl data fetch` + `spoofrl data synth`) in
#     $WORK/benchmark and the rationales + evidence of every clip in $WORK/data/rationales.jsonl;
#   - scores and explains every held-out test subset (target_eval, ood_attack/source/channel/mix) into
#     $WORK/alm/arms/ft_grpo_grounded/seed$SEED/scores/ (score files + per-clip explanations).
# Then scripts/explainer_card.py writes MODEL_CARD.md from those files, and the model folder's files are copied.
# With WORK = the study's output folder nothing is retrained (the study's seed-0 run is the model; the shipped one
# was made so, from /tmp/explain-study, BENCHMARKS.md "Explainable detection study"); step 1 then rewrites that
# folder's report for these two arms and one seed: `spoofrl experiment explain --out WORK --report-only` restores
# the whole study's. About 6 minutes on 2 cores from nothing (benchmark ~75 s, rationales ~75 s, FT-SFT ~2.5 min,
# GRPO ~1.5 min, with the scoring of the 330 test clips).
#
#   bash scripts/train_explainer.sh                         # into build/explainer, then copies to the assets
#   WORK=runs/explain bash scripts/train_explainer.sh       # reuse the study's finished run (seed 0)
#   INSTALL=0 bash scripts/train_explainer.sh               # measure only; leave the assets untouched
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-build/explainer}
SEED=${SEED:-0}
INSTALL=${INSTALL:-1}
CONFIG=${CONFIG:-explain}                     # configs/experiments/explain.yaml
ARM=ft_grpo_grounded
ASSETS=src/spoofrl/assets/explainer
export SPOOFRL_NO_PROGRESS=${SPOOFRL_NO_PROGRESS:-1}

echo "== 1/3 benchmark, rationales, FT-SFT -> FT-GRPO (grounded), scoring -> $WORK"
spoofrl experiment "$CONFIG" --out "$WORK" --arms "$ARM" --set "seed_offset=$SEED" --seeds 1 --device cpu

RUN="$WORK/alm/arms/$ARM/seed$SEED/stage1"
echo "== 2/3 model card from $WORK/alm/arms/$ARM/seed$SEED/scores"
python scripts/explainer_card.py "$WORK" "$SEED" "$WORK/MODEL_CARD.md"

if [ "$INSTALL" != 1 ]; then
  echo "== INSTALL=$INSTALL: model in $RUN, card in $WORK/MODEL_CARD.md (assets untouched)"
  exit 0
fi
echo "== 3/3 copying into $ASSETS"
mkdir -p "$ASSETS"
for f in alm.json model.safetensors tokenizer.json tokenizer_config.json chat_template.jinja special_tokens_map.json \
         config.yaml evidence_reference.json; do
  if [ -f "$RUN/$f" ]; then cp "$RUN/$f" "$ASSETS/"; fi
done
cp "$WORK/MODEL_CARD.md" "$ASSETS/"
ls -l "$ASSETS"
du -sh "$ASSETS"
