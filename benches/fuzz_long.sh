#!/usr/bin/env bash
# The long fuzz run (docs/reliability.md, "Fuzzing"): every target of crates/lora-fuzz for
# SECONDS (default 600) in parallel, one process per target, then one markdown table.
#
#   bash benches/fuzz_long.sh [SECONDS] [SEED]
#   OUT=fuzz-long JOBS=8 bash benches/fuzz_long.sh 900 7
#
# Each process writes its failing inputs to $OUT/<target>/ (an oversized allocation stops its
# process and leaves the input in $OUT/<target>/oversize.bin) and its report to $OUT/<target>.log.
# Copy every failing input to tests/fixtures/fuzz/<target>/ (the regression test replays them)
# and fix the reader. JOBS (default: all targets at once) limits the processes running together.
# Needs the real inputs in the cache for the GGUF and IMDB seeds (lora-data's fetch).
set -euo pipefail
SECONDS_PER_TARGET="${1:-600}"
SEED="${2:-1}"
OUT="${OUT:-fuzz-long}"
cd "$(dirname "$0")/.."
cargo build --release -p lora-fuzz --bin fuzz
BIN="${CARGO_TARGET_DIR:-target}/release/fuzz"
mkdir -p "$OUT"
mapfile -t TARGETS < <("$BIN" --list | awk '{print $1}')
JOBS="${JOBS:-${#TARGETS[@]}}"
echo "fuzzing ${#TARGETS[@]} targets for ${SECONDS_PER_TARGET}s each, seed $SEED, $JOBS at a time; output in $OUT/" >&2
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  ( "$BIN" --target "$t" --seconds "$SECONDS_PER_TARGET" --seed "$SEED" --out "$OUT" \
      >"$OUT/$t.log" 2>&1; echo "exit $?" >>"$OUT/$t.log" ) &
done
wait
echo "| target | seeds | executions | ok | exec/s | minutes | corpus | max alloc (bytes) | failures | status |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  log="$OUT/$t.log"
  row=$(awk -v t="$t" '$1 == t && NF >= 9 {print}' "$log" | tail -n 1)
  status=$(grep -E '^exit ' "$log" | tail -n 1 | awk '{print ($2 == 0) ? "ok" : "FAILED (exit " $2 ")"}')
  if grep -q 'requested one allocation' "$log"; then status="FAILED: oversized allocation ($OUT/$t/oversize.bin)"; fi
  if [ -n "$row" ]; then
    echo "$row" | awk -v s="$status" '{printf "| %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 / 60, $7, $8, $9, s}'
  else
    echo "| $t | | | | | | | | | $status |"
  fi
done
for t in "${TARGETS[@]}"; do
  grep -E '^  (panic|hang):' "$OUT/$t.log" | sed "s/^/$t: /" || true
done
