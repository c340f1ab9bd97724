#!/usr/bin/env bash
# One prepared script for a lent GPU machine (< 8 min on one H100 / H200), writing everything under ${OUT}:
#   1. installs what is missing (torch is never replaced),
#   2. the CUDA parity tests (`pytest -m gpu`: fp32 with TF32 off, asserted),
#   3. bench/gpu_check.py: the bf16 parity deviation (recorded) and violetv2-base pre-training at 4 frames,
#      224 px, SIF, bf16, batch 20 and the largest batch that fits, eager / activation checkpointing /
#      torch.compile: clips/s, step split (data, teacher, forward, backward), peak memory, MFU
#      -> gpu_check.json + gpu_check.md.
#   bash bench/gpu_check.sh             (OUT defaults to /tmp/gpu_check)
#   bash bench/gpu_check.sh --dry-run   (CPU, tiny preset: checks the script itself in a few seconds)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}; mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
python3 -c 'import torch' 2>/dev/null || python3 -m pip install -q torch
python3 -c 'import lightning, transformers, av, einops, webdataset, kornia, safetensors, pytest' 2>/dev/null \
  || python3 -m pip install -q -e '.[test]' 2>&1 | tail -2
if [ "${1:-}" = "--dry-run" ]; then
  python3 bench/gpu_check.py --dry-run --out "$out" 2>&1 | tee "$out/gpu_check.log"
  exit "${PIPESTATUS[0]}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/pytest_gpu.txt" | tail -3
# the rest of the 8 minutes goes to the measurements (each stops at its budget and records what it skipped)
left=$(( 440 - ($(date +%s) - start) ))
timeout $(( left + 30 )) python3 bench/gpu_check.py --out "$out" --budget-s $(( left > 60 ? left - 30 : 30 )) 2>&1 \
  | tee "$out/gpu_check.log" | tail -25
echo "gpu_check: $(( $(date +%s) - start )) s; results in $out"
