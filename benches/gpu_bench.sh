#!/usr/bin/env bash
# Side-by-side GPU training benchmark: ours (examples/train_bench.rs, logic in
# crates/lora-recipes/src/bench/; burn CUDA) vs PyTorch + PEFT
# (benches/peft_bench.py), GPT-2 124M shape, random weights, batch 8 x 1024, LoRA r=8 on c_attn
# and on all linear layers, LoRA and QLoRA (NF4), f32 / tf32 / bf16. Prints ONE markdown table.
#
# On a GPU host with Rust and python3 (torch, transformers, peft; bitsandbytes for PEFT's QLoRA rows):
#   CUDARC_CUDA_VERSION=13000 cargo build --release --no-default-features --features cuda-base \
#     --example train_bench
#   BIN=target/release/examples/train_bench bash benches/gpu_bench.sh
# With binaries built on another host: `benches/gpu_run.sh speed` on the GPU host runs this script
# on the bundle's train_bench (see benches/gpu_prepare.sh).
#
# Steps: (1) ceilings (copy GB/s, matmul TFLOP/s f32/tf32/bf16) with python; (2) our binary, all
# configurations of one precision per process (kernels compile once per process: ~15 s before the
# first step with cuda-base on an H200, docs/benchmarks.md); (3) the PEFT
# configurations in one python process; nvidia-smi memory.used is polled every 100 ms around
# (2) and (3) alike, and each configuration's peak is the max inside its own time window; (4) the
# table (peft_bench.py table). Works without nvidia-smi (peak MiB then n/a).
#
# Configurations (8 of ours, 10 of PEFT of which 4 QLoRA ones that need bitsandbytes; ~2 min in
# all on one H200 with cuda-base):
#   ours  {c_attn, all} x {LoRA, QLoRA nf4} x {f32, bf16}. burn's CUDA "f32" runs its matmuls
#         on TF32 tensor cores (cubek-matmul adjust_dtypes), so ours has no true-f32 row: its f32
#         run is compared with PEFT's tf32 ("tf32 (ours: f32, tf32 matmul)").
#   PEFT  {c_attn, all} x LoRA x {f32 (IEEE), tf32, bf16 autocast}, and {c_attn, all} x QLoRA x
#         {tf32, bf16}, which need bitsandbytes: without it the table says
#         "n/a (no bitsandbytes)" (install it to fill them).
# QLoRA/LoRA step ratios come from ours' nf4 vs none rows at equal targets and precision.
#
# Environment (defaults in brackets): BIN [bundle/run/train_bench-cuda], PY [python3], LOGS [out/gpu_bench],
# DEVICE [cuda], MODEL [gpt2-124m], BATCH [8], SEQ [1024], WARMUP [3], STEPS [10],
# OURS_CONFIGS, OURS_ARGS (more train_bench flags, e.g. "--lm-loss full"), PEFT_CONFIGS, OURS_TIMEOUT [330], PEFT_TIMEOUT [150], GPU_INDEX [0] (the GPU nvidia-smi
# polls; on a machine of several GPUs also set CUDA_VISIBLE_DEVICES to it).
# CPU smoke test (python3 with torch, transformers, peft): cargo build --release --example train_bench;
# BIN=target/release/examples/train_bench PY=python3 \
#   DEVICE=cpu MODEL=tiny BATCH=2 SEQ=32 WARMUP=1 STEPS=2 LOGS=/tmp/gb bash benches/gpu_bench.sh
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bundle/run/train_bench-cuda}
PY=${PY:-python3}
LOGS=${LOGS:-out/gpu_bench}
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-gpt2-124m}
BATCH=${BATCH:-8}
SEQ=${SEQ:-1024}
WARMUP=${WARMUP:-3}
STEPS=${STEPS:-10}
OURS_CONFIGS=${OURS_CONFIGS:-c_attn:none:f32,c_attn:nf4:f32,all:none:f32,all:nf4:f32,c_attn:none:bf16,all:none:bf16,c_attn:nf4:bf16,all:nf4:bf16}
PEFT_CONFIGS=${PEFT_CONFIGS:-c_attn:none:bf16,all:none:bf16,c_attn:none:tf32,all:none:tf32,c_attn:none:f32,all:none:f32,c_attn:nf4:bf16,all:nf4:bf16,c_attn:nf4:tf32,all:nf4:tf32}
OURS_TIMEOUT=${OURS_TIMEOUT:-330}
PEFT_TIMEOUT=${PEFT_TIMEOUT:-150}
mkdir -p "$LOGS"
rm -f "$LOGS"/ours.jsonl "$LOGS"/peft.jsonl "$LOGS"/ceilings.jsonl "$LOGS"/smi_*.csv "$LOGS"/table.md
T0=$(date +%s)

POLL_PID=""
poll_start() { # file
  POLL_PID=""
  : >"$1"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -i "${GPU_INDEX:-0}" --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 100 >"$1" 2>/dev/null &
    POLL_PID=$!
    sleep 0.3
  fi
}
poll_stop() {
  if [ -n "$POLL_PID" ]; then
    sleep 0.3
    kill "$POLL_PID" 2>/dev/null
    wait "$POLL_PID" 2>/dev/null
  fi
  POLL_PID=""
}
trap poll_stop EXIT

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -i "${GPU_INDEX:-0}" --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader | tee "$LOGS/gpu.txt"
else
  echo "no nvidia-smi: peak memory will read n/a" | tee "$LOGS/gpu.txt"
fi

# (1) ceilings
echo "== ceilings ($DEVICE)"
timeout 120 "$PY" benches/peft_bench.py ceilings --device "$DEVICE" --json "$LOGS/ceilings.jsonl" >"$LOGS/ceilings.log" 2>&1 \
  || { echo "ceilings FAILED (rc $?):"; tail -5 "$LOGS/ceilings.log"; }
grep -v '^JSON' "$LOGS/ceilings.log" | tail -2
# Peaks for our MFU: on CUDA our f32 runs TF32 matmuls, so its peak is the TF32 rate.
PEAK=$("$PY" - "$LOGS/ceilings.jsonl" "$DEVICE" <<'PY' 2>/dev/null
import json, sys
j = json.loads(open(sys.argv[1]).readline())
f = j["matmul_tflops_tf32"] if sys.argv[2].startswith("cuda") else j["matmul_tflops_f32"]
print(f"f32={f:.3f},bf16={j['matmul_tflops_bf16']:.3f}")
PY
)
echo "peaks passed to ours: ${PEAK:-none}"

# (2) ours: one process per precision, f32 first. A failed kernel launch leaves burn's CUDA
# server "in an invalid state" for the rest of its process (one failing configuration would hang
# every later one), so precisions do not share a process.
echo "== ours: $BIN ($OURS_CONFIGS)"
if [ -x "$BIN" ]; then
  poll_start "$LOGS/smi_ours.csv"
  for prec in f32 bf16; do
    group=$(echo "$OURS_CONFIGS" | tr ',' '\n' | awk -F: -v p="$prec" '$3 == p' | paste -sd, -)
    [ -z "$group" ] && continue
    echo "   ($prec: $group)"
    timeout "$OURS_TIMEOUT" "$BIN" --config "$MODEL" --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --steps "$STEPS" \
      --configs "$group" --json "$LOGS/ours.jsonl" ${PEAK:+--peak-tflops "$PEAK"} ${OURS_ARGS:-} >>"$LOGS/ours.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && { echo "ours ($prec) exited with rc $rc (124 = timeout); last lines:"; tail -5 "$LOGS/ours.log"; }
  done
  poll_stop
else
  echo "ours: $BIN is not an executable file; skipped"
fi

# (3) PEFT, one process
echo "== PEFT ($PEFT_CONFIGS)"
poll_start "$LOGS/smi_peft.csv"
timeout "$PEFT_TIMEOUT" "$PY" benches/peft_bench.py run --device "$DEVICE" --config "$MODEL" --batch "$BATCH" --seq "$SEQ" \
  --warmup "$WARMUP" --steps "$STEPS" --configs "$PEFT_CONFIGS" --json "$LOGS/peft.jsonl" >"$LOGS/peft.log" 2>&1
rc=$?
poll_stop
[ $rc -ne 0 ] && { echo "PEFT exited with rc $rc (124 = timeout); last lines:"; tail -5 "$LOGS/peft.log"; }

# (4) one table
echo "== total $(($(date +%s) - T0)) s; raw JSON and logs in $LOGS"
echo
"$PY" benches/peft_bench.py table --ours "$LOGS/ours.jsonl" --peft "$LOGS/peft.jsonl" --ceilings "$LOGS/ceilings.jsonl" \
  --smi-ours "$LOGS/smi_ours.csv" --smi-peft "$LOGS/smi_peft.csv" --out "$LOGS/table.md"
