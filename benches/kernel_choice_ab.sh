#!/usr/bin/env bash
# A/B of the kernel choices a non-autotuned CUDA build makes (vendor/PATCHES.md), on the GPU
# machine: the median GPT-2 124M training step (8 x 1024 tokens, LoRA r 8) for every pair of
# LORA_BURN_MATMUL (unfused matmul kernel) x LORA_BURN_FUSED_MATMUL (matmul with fused
# element-wise ops, or `fallback`: unfused matmul + a separate element-wise kernel), one process
# per pair. Prints one line per pair and, last, "BEST <matmul> <fused> <ms>".
#
# On a GPU host that builds for itself:
#   CUDARC_CUDA_VERSION=13000 cargo build --release --no-default-features --features cuda-base \
#     --example train_bench
#   TB=target/release/examples/train_bench CONFIGS=all:none:f32 bash benches/kernel_choice_ab.sh
# Run from anywhere; relative paths are taken from the repository root. Without TB, the
# `cuda-base` train_bench of the bundle packed by benches/gpu_prepare.sh is used (bundle/run/,
# unpacked there first by benches/unpack_bundle.sh).
set -u
cd "$(dirname "$0")/.."
TB=${TB:-bundle/run/train_bench-cuda}
[ -x "$TB" ] || bash benches/unpack_bundle.sh
[ -x "$TB" ] || { echo "kernel_choice_ab: no train_bench at $TB (set TB=...)" >&2; exit 2; }
CONFIGS=${CONFIGS:-all:none:f32}
# CPU smoke test: TB=target/release/examples/train_bench MODEL=tiny BATCH=2 SEQ=32
MODEL=${MODEL:-gpt2-124m} BATCH=${BATCH:-8} SEQ=${SEQ:-1024}
best="" best_ms=""
for m in specialized_tma_mma simple_tma_mma_multi_rows; do
  for f in simple_multirows_mma simple_multirows_cmma fallback; do
    ms=$(LORA_BURN_MATMUL=$m LORA_BURN_FUSED_MATMUL=$f timeout 90 "$TB" --config "$MODEL" \
      --batch "$BATCH" --seq "$SEQ" --warmup 3 --steps 10 --configs "$CONFIGS" 2>&1 |
      sed -n 's/.*median step \([0-9.]*\) ms.*/\1/p' | head -1)
    echo "matmul=$m fused=$f: ${ms:-FAILED} ms ($CONFIGS)"
    if [ -n "$ms" ] && { [ -z "$best_ms" ] || python3 -c "import sys; sys.exit(0 if $ms < $best_ms else 1)"; }; then
      best="$m $f" best_ms=$ms
    fi
  done
done
echo "BEST $best $best_ms"
