#!/usr/bin/env bash
# One prepared script for a lent GPU machine: parity on CUDA, then backbone and target timings (bf16 autocast).
#   bash bench/gpu_check.sh            (writes its logs to ${OUT:-/tmp/gpu_check})
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}; mkdir -p "$out"
python3 -c 'import torch' 2>/dev/null || python3 -m pip install -q torch
python3 -m pip install -q -e '.[test]' 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
PYTHONPATH=src python3 -m pytest -q -m gpu tests/test_parity.py 2>&1 | tee "$out/parity_cuda.txt" | tail -3
PYTHONPATH=src python3 bench/backbone.py --presets tiny violetv2-base --batch 1 2 --repeats 5 2>&1 | tee "$out/backbone.txt"
PYTHONPATH=src python3 bench/backbone.py --presets violetv2-base --batch 2 --repeats 5 --checkpointing 2>&1 | tee "$out/backbone_ckpt.txt"
