#!/usr/bin/env bash
# The CUDA checks of spoofrl, as one short script for a lent GPU machine (the `device` tool; about 5 minutes on
# one H200). That machine has PyTorch, transformers, peft, tokenizers, sacrebleu and safetensors but no network:
# spoofrl runs from src/ (PYTHONPATH, no install), and packages it lacks (soundfile at least) travel as wheels
# in .whl/ (../.library/device/README.md, "nvidia-h200"). Writes its logs and numbers under $OUT (default
# gpu-checks/); record them in BENCHMARKS.md.
#   run: command="bash scripts/gpu_checks.sh", carry=[".whl"]
set -u -o pipefail
OUT=${OUT:-gpu-checks}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SPOOFRL_NO_PROGRESS=1
python3 - <<'PY' 2>&1 | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "bf16", torch.cuda.is_bf16_supported())
PY
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device"; exit 1; }
status=0
step() {   # step NAME COMMAND...: run it, its output in $OUT/NAME.txt, go on when it fails
  local name=$1; shift
  echo "== $name: $*"
  timeout 150 "$@" 2>&1 | tee "$OUT/$name.txt" | tail -25 || { echo "!! $name failed"; status=1; }
}
step pytest_cuda python3 -m pytest -q -rs -p no:cacheprovider tests/test_models_components.py -k cuda
step training python3 benchmarks/check_cuda_training.py --out /tmp/check-cuda
step alm_small python3 benchmarks/bench_alm_train.py --device cuda --model small --batch 8 --G 8 --tokens 64 --steps 4
step alm_qwen2_audio python3 benchmarks/bench_alm_train.py --device cuda --model qwen2_audio --steps 4
step detectors python3 benchmarks/bench_train.py --device cuda --presets logmel-linear resnet-logmel ssl-tiny-ffn-fusion --steps 10
cp /tmp/check-cuda/results.json "$OUT/training.json" 2>/dev/null
exit $status
