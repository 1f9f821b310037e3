#!/usr/bin/env bash
# GPT-2 / Llama logits on CUDA (burn cuda backend, f32) vs the transformers + PEFT fixtures.
# Build here, carry, run on the GPU machine (device tool, carry ["carry"]):
#   CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=target-cuda cargo build --release \
#     --no-default-features --features cuda --example logits
#   mkdir -p carry && cp target-cuda/release/examples/logits carry/logits-cuda && strip carry/logits-cuda
#   bash benches/gpu_parity.sh          (on the GPU machine; $OUT collects the outputs)
set -u
F=tests/fixtures
run() { # name model adapter(or -) merge(0/1) io key
  local extra=""; [ "$3" != "-" ] && extra="--adapter $F/$3"; [ "$4" = 1 ] && extra="$extra --merge"
  ./carry/logits-cuda --model-path $F/$2 $extra --input-ids $F/$5/io.safetensors --out $OUT/$1.safetensors 2>$OUT/$1.err || { echo "$1 FAILED"; tail -3 $OUT/$1.err; return; }
  python3 - "$OUT/$1.safetensors" "$F/$5/io.safetensors" "$6" "$1" <<'PY'
import sys
from safetensors.numpy import load_file
a = load_file(sys.argv[1])["logits"]; b = load_file(sys.argv[2])[sys.argv[3]]
print(f"{sys.argv[4]:<22} max |diff| vs transformers/PEFT = {abs(a - b).max():.3e}  shape {list(a.shape)}")
PY
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
run gpt2_a gpt2_a - 0 gpt2_a logits
run gpt2_b gpt2_b - 0 gpt2_b logits
run llama_a llama_a - 0 llama_a logits
run gpt2_a_lora gpt2_a gpt2_a_lora 0 gpt2_a_lora logits
run gpt2_a_lora_merged gpt2_a gpt2_a_lora 1 gpt2_a_lora logits_merged
run llama_a_lora llama_a llama_a_lora 0 llama_a_lora logits
run llama_a_lora_merged llama_a llama_a_lora 1 llama_a_lora logits_merged
