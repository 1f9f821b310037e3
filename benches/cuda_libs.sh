# Sourced by the GPU scripts (benches/gpu_run.sh, your own shell: `source benches/cuda_libs.sh`).
# The CUDA backend runs its dense products through cuBLASLt (vendor/PATCHES.md), loaded at run
# time as libcublasLt.so.<major> from the library path. Without a CUDA toolkit on that path, this
# adds the lib folder of the nvidia-cublas wheel that PyTorch installs, when python3 finds one;
# without either, the products run on CubeCL's kernels (one line on stderr says so).
if ! ldconfig -p 2>/dev/null | grep -q libcublasLt; then
  LT_DIR=$(python3 -c "
import glob, os, sys
hits = [p for s in sys.path if os.path.isdir(s)
        for p in glob.glob(os.path.join(s, 'nvidia', '**', 'libcublasLt.so*'), recursive=True)]
print(os.path.dirname(hits[0]) if hits else '')" 2>/dev/null)
  if [ -n "$LT_DIR" ]; then
    export LD_LIBRARY_PATH=$LT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "cuBLASLt from $LT_DIR"
  fi
fi
