#!/usr/bin/env bash
# Unpacks the bundle's GPU binaries (bundle/<part>/<name>-cuda.xz, <name>-wgpu.xz, packed by
# benches/gpu_prepare.sh) into bundle/run/<name>-cuda|wgpu, skipping those already there; uses
# Python's lzma, so the GPU host needs no xz. Run from the repository root on the GPU host; used
# by benches/gpu_run.sh and benches/kernel_choice_ab.sh.
set -u
mkdir -p bundle/run
for f in bundle/*/*-cuda.xz bundle/*/*-wgpu.xz; do
  [ -e "$f" ] || continue
  b=bundle/run/$(basename "$f" .xz)
  [ -x "$b" ] || { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$b" && chmod +x "$b"; }
done
