#!/usr/bin/env bash
# Kill a real fine-tune with SIGKILL at random moments, resume it from its last complete
# checkpoint, and compare the final adapter with an uninterrupted run's, byte for byte.
#
#   benches/kill_resume.sh [TRIALS] [-- extra finetune flags]
#
# Builds the finetune example (CPU backend), runs it once uninterrupted into
# $WORK/full, then TRIALS times: starts the same run into $WORK/trial-<i>, kills it (kill -9)
# after a random delay of 2-47% of the uninterrupted run's time past its first checkpoint, resumes with
# `--resume <last checkpoint>`, and compares adapter_config.json, adapter_model.safetensors and
# heldout_logits.safetensors with `cmp`. Prints one line per trial and a summary; exits
# non-zero on any difference. $WORK defaults to a fresh temporary directory.
# Fetches the inputs on first use, as the README's first command does.
set -euo pipefail
TRIALS=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
cd "$(dirname "$0")/.."
# $FINETUNE: an already built finetune binary (else it is built here).
if [ -n "${FINETUNE:-}" ]; then
  BIN=$FINETUNE
else
  cargo build --release --example finetune >&2
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/finetune
fi
WORK=${WORK:-$(mktemp -d)}
FLAGS=(--steps 12 --batch-size 4 --max-length 64 --eval-size 50 --eval-batch-size 25
       --no-eval-before --checkpoint-every 1 "${EXTRA[@]}")
FILES=(adapter_config.json adapter_model.safetensors heldout_logits.safetensors)

t0=$(date +%s.%N)
"$BIN" "${FLAGS[@]}" --output-dir "$WORK/full" > "$WORK/full.log" 2>&1
full_secs=$(echo "$(date +%s.%N) - $t0" | bc)
echo "uninterrupted run: ${full_secs%.*} s ($WORK/full)"

same=0
for i in $(seq 1 "$TRIALS"); do
  out="$WORK/trial-$i"
  "$BIN" "${FLAGS[@]}" --output-dir "$out" > "$out.log" 2>&1 &
  pid=$!
  until ls -d "$out"/checkpoint-* >/dev/null 2>&1 || ! kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  # A random moment in the training part of the expected run time (loading and the final
  # evaluation take the rest).
  delay=$(awk -v s="$full_secs" -v r="$RANDOM" 'BEGIN { printf "%.1f", 0.02 * s + 0.45 * s * r / 32767 }')
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  last=$(ls -d "$out"/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -1)
  "$BIN" "${FLAGS[@]}" --output-dir "$out" --resume "$out/checkpoint-$last" > "$out.resume.log" 2>&1
  ok=yes
  for f in "${FILES[@]}"; do cmp -s "$WORK/full/$f" "$out/$f" || ok=no; done
  echo "trial $i: killed after ${delay} s past the first checkpoint, resumed from checkpoint-$last: identical=$ok"
  [ "$ok" = yes ] && same=$((same + 1))
done
echo "summary: $same of $TRIALS killed runs resumed to byte-identical adapters"
[ "$same" = "$TRIALS" ]
