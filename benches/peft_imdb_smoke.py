"""CPU smoke test of benches/peft_imdb.py: writes a small dump in the format of
`finetune --dump-data` (token ids from transformers' GGUF tokenizer on real IMDB reviews + the
"\\nSentiment:" suffix, right-padded with pad_id 2), then runs the script twice:
(1) 3 training steps of batch 6 over 16 rows (the last batch short, as finetune's); (2) the sanity run with --lr 0 --lora-dropout 0 --check-base, which must
give max |diff| 0 between PEFT's logits and the model's without PEFT (before and after);
(3) two steps of each other method (dora, ia3, prefix tuning with and without projection, prompt
tuning with the TEXT init from token ids).

    python3 benches/peft_imdb_smoke.py [GGUF] [IMDB reviews.json]

(python3 with torch, transformers, peft and gguf; GGUF and reviews.json default to the files the
CPU `finetune` run fetched into $LORA_BURN_CACHE, default ~/.cache/lora-burn.)
"""
import gzip, json, os, shutil, subprocess, sys, tempfile
import numpy as np
from safetensors.numpy import save_file

cache = os.environ.get("LORA_BURN_CACHE", os.path.expanduser("~/.cache/lora-burn"))
gguf = sys.argv[1] if len(sys.argv) > 1 else os.path.join(cache, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
imdb = sys.argv[2] if len(sys.argv) > 2 else os.path.join(cache, "imdb", "reviews.json")
here = os.path.dirname(os.path.abspath(__file__))

from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
reviews = json.load(open(imdb))
rng = np.random.default_rng(0)
pick = rng.choice(len(reviews), 48, replace=False)
max_len, pad = 64, 2
suffix = enc("\nSentiment:")
(neg,), (pos,) = enc(" negative"), enc(" positive")


def rows(idx):
    ids = np.full((len(idx), max_len), pad, np.int32)
    lens = np.zeros(len(idx), np.int32)
    labels = np.zeros(len(idx), np.int32)
    for r, i in enumerate(idx):
        words = reviews[i]["t"].split()
        if r % 2:  # every other review cut to a few words, so that rows have padding
            words = words[: int(rng.integers(2, 30))]
        t = enc(" ".join(words))[: max_len - len(suffix)] + suffix
        ids[r, : len(t)] = t
        lens[r], labels[r] = len(t), reviews[i]["s"]
    return ids, lens, labels


tr, te = rows(pick[:32]), rows(pick[32:])
tensors = {f"{s}_{k}": v for s, d in [("train", tr), ("test", te)] for k, v in zip(["ids", "len", "labels"], d)}
meta = {"pad_id": str(pad), "neg_id": str(neg), "pos_id": str(pos), "max_length": str(max_len),
        "batch_size": "8", "seed": "42"}
with tempfile.TemporaryDirectory() as tmp:
    dump = os.path.join(tmp, "dump.safetensors")
    save_file(tensors, dump, metadata=meta)
    # The same rows with U16 ids, gzipped: the compact form the loader also accepts.
    raw16 = os.path.join(tmp, "dump16.safetensors")
    save_file({k: (v.astype(np.uint16) if k.endswith("_ids") else v) for k, v in tensors.items()}, raw16, metadata=meta)
    with open(raw16, "rb") as src, gzip.open(raw16 + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    print(f"fake dump: train {tr[0].shape}, test {te[0].shape}, lengths {te[1].min()}..{te[1].max()}, "
          f"neg/pos ids {neg}/{pos}", flush=True)
    base = [sys.executable, os.path.join(here, "peft_imdb.py"), "--gguf", gguf,
            "--device", "cpu", "--limit-train", "16", "--limit-test", "16", "--eval-batch-size", "8"]
    runs = [base + ["--data", dump, "--steps", "3", "--batch-size", "6", "--warmup-steps", "1", "--out", os.path.join(tmp, "a.json")],
            base + ["--data", raw16 + ".gz", "--steps", "2", "--lr", "0", "--lora-dropout", "0", "--check-base", "--layers", "all",
                    "--out", os.path.join(tmp, "b.json")]]
    # Every other method for two steps (finite losses; PEFT's own layers, our pooling for prompt tuning).
    methods = [["--method", "dora"], ["--method", "ia3", "--lr", "1e-2"],
               ["--method", "prefix-tuning", "--num-virtual-tokens", "4"],
               ["--method", "prefix-tuning", "--num-virtual-tokens", "4", "--prefix-projection", "--encoder-hidden-size", "32"],
               ["--method", "prompt-tuning", "--num-virtual-tokens", "5", "--prompt-tuning-init-ids", f"{neg},{pos}"]]
    runs += [base + ["--data", dump, "--steps", "2", "--batch-size", "6", "--warmup-steps", "1",
                     "--out", os.path.join(tmp, f"m{i}.json")] + m for i, m in enumerate(methods)]
    for cmd in runs:
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    a = json.load(open(os.path.join(tmp, "a.json")))
    b = json.load(open(os.path.join(tmp, "b.json")))
    # 16 rows, batch 6: batches of 6, 6 and 4 rows; lr warmup 1 step then linear decay over 3.
    assert a["steps"] == 3 and a["examples"] == 16 and a["lrs"] == [0.0, 1e-3, 5e-4], (a["examples"], a["lrs"])
    assert np.isfinite(a["losses"]).all()
    assert b["check"]["before_max_abs_diff"] == 0.0 and b["check"]["after_max_abs_diff"] == 0.0, b["check"]
    assert b["accuracy_before"] == b["accuracy_after"]
    assert b["check"]["mask_vs_no_mask_max_abs_diff"] < 1e-4 and b["check"]["manual_pool_max_abs_diff"] < 1e-4, b["check"]
    for i, m in enumerate(methods):
        r = json.load(open(os.path.join(tmp, f"m{i}.json")))
        assert r["steps"] == 2 and np.isfinite(r["losses"]).all() and r["trainable_params"] > 0, (m, r["losses"])
        print(f"{' '.join(m)}: {r['trainable_params']:,} trainable, losses {r['losses']}")
    print("smoke OK")
