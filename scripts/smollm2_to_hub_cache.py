#!/usr/bin/env python3
"""Convert the fetched SmolLM2-135M-Instruct GGUF into a Hugging Face hub-cache checkpoint.

For users without a Hugging Face format checkpoint on disk: after this, every example takes
`--model-path HuggingFaceTB/SmolLM2-135M-Instruct`, offline, as `from_pretrained` would.

    python3 scripts/smollm2_to_hub_cache.py [--gguf FILE] [--cache DIR] [--max-shard-size 100MB]

- reads the GGUF that `cargo run --release --example finetune` fetches
  ($LORA_BURN_CACHE or ~/.cache/lora-burn, file smollm2/SmolLM2-135M-Instruct.Q4_1.gguf);
- loads model and tokenizer with transformers' GGUF support
  (`from_pretrained(dir, gguf_file=...)`: Q4_1 dequantized), saves them with `save_pretrained`
  in bfloat16 with a small `max_shard_size` (so the checkpoint is sharded:
  model.safetensors.index.json + shards), tokenizer.json, tokenizer_config.json and the chat
  template;
- lays the files out as huggingface_hub's cache does (`file_download.py`): under the hub cache
  (`--cache`, else $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
  ~/.cache/huggingface/hub), `models--HuggingFaceTB--SmolLM2-135M-Instruct/blobs/<sha256>` holds
  each file, `snapshots/<commit>/<name>` links to `../../blobs/<sha256>`, and `refs/main` names
  the commit (here a hash of the file list, so reruns give the same snapshot).

Needs torch, transformers (with gguf) and safetensors. Prints the snapshot folder.
"""

import argparse
import hashlib
import os
import shutil
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf():
    cache = os.environ.get("LORA_BURN_CACHE") or os.path.expanduser("~/.cache/lora-burn")
    return os.path.join(cache, "smollm2", GGUF_NAME)


def default_hub_cache():
    """huggingface_hub constants.py: HF_HUB_CACHE, else HF_HOME/hub (HF_HOME defaults to
    $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(xdg, "huggingface", "hub")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def chat_template_of(gguf_path):
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0]
        + " Takes a few minutes (the GGUF is dequantized on the CPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--gguf",
        default=default_gguf(),
        help="the SmolLM2 GGUF that `cargo run --release --example finetune` fetched",
    )
    p.add_argument(
        "--cache",
        default=default_hub_cache(),
        help="the hub cache to write into ($HF_HUB_CACHE, else $HF_HOME/hub, else "
        "$XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub)",
    )
    p.add_argument(
        "--max-shard-size",
        default="100MB",
        help="largest safetensors shard, as save_pretrained takes it (small, so the "
        "checkpoint is sharded)",
    )
    args = p.parse_args()
    if not os.path.isfile(args.gguf):
        raise SystemExit(
            f"{args.gguf}: no such file; run `cargo run --release --example finetune` once "
            "(it fetches the GGUF) or pass --gguf FILE"
        )
    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    if tok.chat_template is None:
        tok.chat_template = chat_template_of(args.gguf)
    loaded = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.bfloat16)
    # The loaded model is marked as GGUF-quantized, which save_pretrained refuses: the same
    # (dequantized) weights in a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()

    repo = os.path.join(args.cache, "models--" + REPO_ID.replace("/", "--"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, max_shard_size=args.max_shard_size)
        tok.save_pretrained(tmp)
        files = sorted(os.listdir(tmp))
        digests = {f: sha256(os.path.join(tmp, f)) for f in files}
        commit = hashlib.sha1(
            "".join(f"{f}\0{digests[f]}\n" for f in files).encode()
        ).hexdigest()
        blobs = os.path.join(repo, "blobs")
        snap = os.path.join(repo, "snapshots", commit)
        os.makedirs(blobs, exist_ok=True)
        if os.path.isdir(snap):
            shutil.rmtree(snap)
        os.makedirs(snap)
        for f in files:
            blob = os.path.join(blobs, digests[f])
            if not os.path.exists(blob):
                shutil.move(os.path.join(tmp, f), blob)
            os.symlink(os.path.join("..", "..", "blobs", digests[f]), os.path.join(snap, f))
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    print(f"{REPO_ID}: {len(files)} files ({', '.join(files)})")
    print(snap)


if __name__ == "__main__":
    main()
