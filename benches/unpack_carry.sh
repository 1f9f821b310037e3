#!/usr/bin/env bash
# Unpacks the carried GPU binaries (carry/<call>/<name>-cuda.xz, <name>-wgpu.xz, packed by
# benches/gpu_prepare.sh or by hand) into carry/run/<name>-cuda|wgpu, skipping those already
# there. Run from the repository root on the GPU machine; used by benches/gpu_session.sh and
# benches/kernel_choice_ab.sh.
set -u
mkdir -p carry/run
for f in carry/*/*-cuda.xz carry/*/*-wgpu.xz; do
  [ -e "$f" ] || continue
  b=carry/run/$(basename "$f" .xz)
  [ -x "$b" ] || { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$b" && chmod +x "$b"; }
done
