#!/usr/bin/env bash
# Base-weight bytes, peak process memory and training speed of SmolLM2-135M LoRA fine-tuning on
# the CPU with an f32 base vs int8 vs NF4 vs NF4 + double quantization (QLoRA). Each row is a
# short run of the default recipe (STEPS steps, batch 8, ≤128 tokens), measured with
# /usr/bin/time -v in the same invocation of this script, so the rows compare.
#   benches/quant_memory.sh [STEPS]      (needs a release build: cargo build --release --examples)
set -euo pipefail
steps=${1:-6}
bin=${CARGO_TARGET_DIR:-target}/release/examples/finetune
[ -x "$bin" ] || { echo "build first: cargo build --release --examples" >&2; exit 1; }
printf '| base | base linear weights | peak RSS | train tok/s | step time vs none |\n|---|---|---|---|---|\n'
ref=
for q in none int8 nf4 nf4-dq; do
  log=$(mktemp)
  run_dir=$(mktemp -d)
  /usr/bin/time -v "$bin" --quant "$q" --steps "$steps" --eval-size 16 --no-eval-before \
    --output-dir "$run_dir" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rm -rf "$run_dir"
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MB", $2/1024}' "$log")
  base=$(grep -o 'base linear weights: .*' "$log" | head -n1 | sed 's/base linear weights: //; s/, max.*//' || true)
  tps=$(grep -o 'training: .* tok/s' "$log" | awk '{print $4}' || true)
  [ -n "$ref" ] || ref=$tps
  ratio=$(awk -v r="$ref" -v t="$tps" 'BEGIN { if (t > 0) printf "%.2f", r / t; else print "-" }')
  printf '| %s | %s | %s | %s | %s |\n' "$q" "${base:-f32 (unquantized)}" "$rss" "$tps" "$ratio"
  rm -f "$log"
done
