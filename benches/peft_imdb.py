"""The `finetune` IMDB recipe (SmolLM2-135M, SEQ_CLS) in transformers + PEFT, on the very same
token ids, for a side-by-side accuracy / wall-time comparison with ours.

    python3 benches/peft_imdb.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --data dump.safetensors \
        --layers top-half --lr 1e-3 --warmup-steps 10 --steps 100000 --time-budget 420 \
        --precision tf32 --device cuda --out out/peft_imdb.json

(use the same --r/--lora-alpha/--lora-dropout/--layers/--lr/--warmup-steps/--steps/
--time-budget/--grad-accum/--pad-multiple as the finetune run that wrote the dump). CPU smoke
test: benches/peft_imdb_smoke.py.

Inputs
- `--gguf`: the SmolLM2-135M-Instruct GGUF; transformers reads it through the `gguf` package
  (`AutoModelForSequenceClassification.from_pretrained(dir, gguf_file=name)`), dequantizing every
  tensor to f32 with `gguf.quants.dequantize` (Q4_1 blocks, Q8_0 `token_embd`), as we do.
- `--data`: the file `finetune --dump-data FILE` writes: `train_ids` I32 [n_train, max_len]
  (right-padded with `pad_id`), `train_len` I32 [n_train], `train_labels` I32 [n_train], and the
  same three for `test_`; metadata strings `pad_id`, `neg_id`, `pos_id`, `max_length`,
  `batch_size`, `seed`.

Recipe, mirroring the finetune recipe (crates/lora-recipes/src/classify.rs) and the training loop
(crates/lora-train/src/run.rs, schedule.rs)
- Model: LlamaForSequenceClassification; logits of the last real token (right padding, index
  length-1: transformers takes the rightmost token != pad_token_id; we check that this is
  length-1 for every row) through `score` [hidden -> 2], no bias, initialised from the tied
  embedding rows of `neg_id` (label 0) and `pos_id` (label 1), trained fully (modules_to_save).
- LoRA: r, lora_alpha, lora_dropout on q/k/v/o/gate/up/down_proj of `--layers`
  (PEFT layers_to_transform), PEFT's default init (A kaiming-uniform, B zero).
- AdamW (torch): betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 on every trainable parameter
  (burn's AdamW decays all of them), global grad-norm clipping at 1.0 (clip_grad_norm_),
  lr of step s (0-based) = transformers' linear warmup / linear decay
  (`linear_warmup_lr`), and with `--time-budget B` the decay after warmup is
  min(by steps, 1 - elapsed/B), training stopping before a step once elapsed >= B (`budget_lr`,
  elapsed = training time spent before the step).
- Data order (finetune: `make_batches` over the dumped rows, then `train_batches[i % n]`):
  batch b = rows [b*B, min((b+1)*B, n_train)) (the last one may be short); micro-batch k of
  optimizer step s (0-based) is batch (s*grad_accum + k) mod ceil(n_train/B); each batch is cut
  to its longest row, rounded up to `--pad-multiple` as finetune's `pad_batches_to_multiple`
  (crates/lora-data/src/imdb/batch.rs). Loss: cross-entropy, mean over the batch
  (divided by grad_accum). Tokens counted: real tokens (sum of lengths), as `Batch::num_tokens`.

Differences that cannot be mirrored: random streams (LoRA A init, dropout masks), kernel
summation order, and no attention mask by default (right padding + causal attention: real
positions never see padding, so the pooled logits are the same; `--attention-mask` passes it).
"""
import time

T0 = time.perf_counter()  # total wall time starts before the heavy imports

import argparse
import gzip
import json
import os
import shutil
import tempfile
import platform
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequantization progress bar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct GGUF file")
    ap.add_argument("--data", required=True, help="safetensors file from finetune --dump-data")
    ap.add_argument("--method", choices=["lora", "dora", "ia3", "prefix-tuning", "prompt-tuning", "bottleneck"],
                    default="lora", help="finetune --method; bottleneck runs AdapterHub `adapters` 1.3 "
                                         "(its own venv with transformers 4.57) instead of PEFT")
    ap.add_argument("--bn-config", choices=["seq_bn", "double_seq_bn"], default="seq_bn", help="bottleneck architecture")
    ap.add_argument("--reduction-factor", type=float, default=16.0, help="bottleneck: hidden / bottleneck size")
    ap.add_argument("--non-linearity", default=None, help="bottleneck: relu, swish, gelu, tanh (default: the config's)")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--layers", default="top-half", help='"all", "top-half", "15-29" or "28,29"')
    ap.add_argument("--num-virtual-tokens", type=int, default=20, help="prefix / prompt tuning")
    ap.add_argument("--prefix-projection", action="store_true", help="prefix tuning: Embedding-Linear-Tanh-Linear")
    ap.add_argument("--encoder-hidden-size", type=int, default=None, help="prefix projection width (default: hidden)")
    ap.add_argument("--prompt-tuning-init-ids", default=None,
                    help="prompt tuning TEXT init: comma-separated token ids of the init text (finetune prints them)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=150, help="optimizer steps (upper bound with --time-budget)")
    ap.add_argument("--time-budget", type=float, default=None, help="training wall-clock budget, seconds")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the dump's batch_size")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--pad-multiple", type=int, default=1,
                    help="pad each batch's length up to a multiple of this (finetune --pad-multiple)")
    ap.add_argument("--precision", choices=["f32", "tf32", "bf16"], default="f32",
                    help="bf16 = torch.autocast(bfloat16) over f32 weights")
    ap.add_argument("--seed", type=int, default=None, help="default: the dump's seed")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--limit-train", type=int, default=None, help="use only the first N train rows")
    ap.add_argument("--limit-test", type=int, default=None, help="use only the first N test rows")
    ap.add_argument("--no-eval-before", action="store_true")
    ap.add_argument("--attention-mask", action="store_true", help="pass attention_mask (off: causal + right padding)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (off by default; untried on GPU)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--check-base", action="store_true",
                    help="sanity: compare PEFT's logits on the first test batch (before and after "
                         "training) with the model without PEFT; meaningful with --lr 0 --lora-dropout 0")
    ap.add_argument("--out", default=None, help="JSON summary (written atomically)")
    a = ap.parse_args(argv)
    for name in ["r", "steps", "grad_accum", "eval_batch_size", "log_every", "pad_multiple"]:
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.warmup_steps < 0 or a.lr < 0 or not (0.0 <= a.lora_dropout < 1.0):
        ap.error("need --warmup-steps >= 0, --lr >= 0, 0 <= --lora-dropout < 1")
    if a.time_budget is not None and not a.time_budget > 0:
        ap.error(f"--time-budget must be > 0, got {a.time_budget}")
    return a


# ---- schedule: crates/lora-train/src/schedule.rs `linear_warmup_lr` / `budget_lr` ----

def linear_warmup_lr(base_lr, step, warmup, total):
    if step < warmup:
        return base_lr * step / max(1, warmup)
    rem = max(0, total - step)
    return base_lr * max(0.0, rem / max(1, total - warmup))


def budget_lr(base_lr, step, warmup, total, elapsed, budget):
    by_steps = linear_warmup_lr(base_lr, step, warmup, total)
    if budget is not None and step >= warmup:
        return min(by_steps, base_lr * max(0.0, 1.0 - elapsed / budget))
    return by_steps


def parse_layers(spec, n_layers):
    if spec == "all":
        return None
    if spec == "top-half":
        return list(range(n_layers // 2, n_layers))
    out = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if lo > hi:
                raise SystemExit(f"--layers: bad range {part!r}")
            out.extend(range(lo, hi + 1))
        else:
            try:
                out.append(int(part))
            except ValueError:
                raise SystemExit(f"--layers: bad layer index {part!r}")
    bad = [i for i in out if not 0 <= i < n_layers]
    if bad:
        raise SystemExit(f"--layers: indices {bad} outside 0..{n_layers - 1}")
    return out


# ---- data ----

def load_dump(path, limit_train, limit_test):
    """Reads the dump (any integer dtype for ids, e.g. U16; a `.gz` file is decompressed first)."""
    if path.endswith(".gz"):
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
            tmp.flush()
            return load_dump(tmp.name, limit_train, limit_test)
    need_meta = ["pad_id", "neg_id", "pos_id", "max_length", "batch_size", "seed"]
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
        missing = [k for k in need_meta if k not in meta]
        if missing:
            raise SystemExit(f"{path}: metadata lacks {missing} (expected {need_meta})")
        keys = set(f.keys())
        d = {}
        for split, lim in [("train", limit_train), ("test", limit_test)]:
            for k in ["ids", "len", "labels"]:
                name = f"{split}_{k}"
                if name not in keys:
                    raise SystemExit(f"{path}: tensor {name!r} missing (has {sorted(keys)})")
                t = f.get_tensor(name)
                if t.dtype.kind not in "iu":
                    raise SystemExit(f"{path}: {name} has dtype {t.dtype}, expected an integer type")
                d[name] = (t if lim is None else t[:lim]).astype(np.int64)
    meta = {k: int(meta[k]) for k in need_meta} | {k: v for k, v in meta.items() if k not in need_meta}
    for split in ["train", "test"]:
        ids, ln, lab = d[f"{split}_ids"], d[f"{split}_len"], d[f"{split}_labels"]
        n = ids.shape[0]
        if n == 0 or ids.ndim != 2 or ln.shape != (n,) or lab.shape != (n,):
            raise SystemExit(f"{path}: {split} shapes ids {ids.shape} len {ln.shape} labels {lab.shape}"
                             " (expected [n, max_len], [n], [n] with n >= 1)")
        if ln.min() < 1 or ln.max() > ids.shape[1]:
            raise SystemExit(f"{path}: {split}_len outside 1..{ids.shape[1]}")
        if not np.isin(lab, [0, 1]).all():
            raise SystemExit(f"{path}: {split}_labels must be 0 or 1")
        # transformers pools the rightmost token != pad_id: it must be index length-1.
        not_pad = ids != meta["pad_id"]
        rightmost = np.where(not_pad.any(1), ids.shape[1] - 1 - np.argmax(not_pad[:, ::-1], 1), 0)
        bad = np.nonzero(rightmost != ln - 1)[0]
        if len(bad):
            i = bad[0]
            raise SystemExit(f"{path}: {split} row {i}: last non-pad token at {rightmost[i]} but length "
                             f"{ln[i]} (pad_id {meta['pad_id']}); {len(bad)} such rows")
    return d, meta


# ---- model ----

def load_model(gguf_path, meta, device):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # the load report only says that `score` is new: we set it below
    t = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(
        os.path.dirname(os.path.abspath(gguf_path)), gguf_file=os.path.basename(gguf_path),
        num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = meta["pad_id"]
    model.config.use_cache = False
    emb = model.get_input_embeddings().weight  # tied with the output embedding in this GGUF
    with torch.no_grad():
        model.score.weight.copy_(emb[[meta["neg_id"], meta["pos_id"]]])  # [2, hidden]
    model.to(device)
    return model, time.perf_counter() - t


def autocast(args):
    if args.precision == "bf16":
        return torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16)
    return torch.autocast(device_type=torch.device(args.device).type, enabled=False)


def forward(model, ids, lens, args):
    """ids: LongTensor [b, L] on the device, already cut to the batch's longest row; lens: the rows'
    lengths (numpy). Prompt tuning prepends virtual tokens through inputs_embeds, so transformers
    cannot find the last real token from input_ids (it would pool the last position, a pad for
    short rows): pool the hidden state at V + length - 1 ourselves, as finetune does."""
    if args.method == "prompt-tuning":
        return prompt_tuning_logits(model, ids, lens, args)
    kw = {}
    if args.attention_mask:
        kw["attention_mask"] = (ids != model_pad(model)).long()
    with autocast(args):
        return model(input_ids=ids, use_cache=False, **kw).logits.float()  # [b, 2]


def prompt_tuning_logits(model, ids, lens, args):
    """PEFT prompt tuning (peft_model.py PeftModelForSequenceClassification: virtual token
    embeddings before the word embeddings) with the pooling at the last real token."""
    b = ids.shape[0]
    prompts = model.get_prompt(batch_size=b)  # [b, V, hidden]
    words = model.word_embeddings(ids)
    emb = torch.cat([prompts.to(words.dtype), words], dim=1)
    inner = model.base_model  # LlamaForSequenceClassification
    with autocast(args):
        h = inner.model(inputs_embeds=emb, use_cache=False).last_hidden_state  # after the final norm
        rows = torch.arange(b, device=ids.device)
        last = torch.from_numpy(np.asarray(lens) - 1 + prompts.shape[1]).to(ids.device)
        return inner.score(h[rows, last]).float()


def peft_config(args, layers):
    """The PEFT config of --method, with the finetune recipe's targets and `score` trained fully."""
    import peft
    common = dict(task_type="SEQ_CLS")
    if args.method in ("lora", "dora"):
        return peft.LoraConfig(r=args.r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                               target_modules=TARGETS, layers_to_transform=layers, modules_to_save=["score"],
                               bias="none", use_dora=args.method == "dora", **common)
    if args.method == "ia3":
        # IA3Config has no layers_to_transform: the layers go into a regex, as finetune writes it.
        targets, ff = TARGETS, ["down_proj"]
        if layers is not None:
            idx = "|".join(str(i) for i in layers)
            targets = rf"model\.layers\.({idx})\.(self_attn|mlp)\.({'|'.join(TARGETS)})"
            ff = rf"model\.layers\.({idx})\.mlp\.down_proj"
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff,
                              modules_to_save=["score"], **common)
    if args.method == "prefix-tuning":
        return peft.PrefixTuningConfig(num_virtual_tokens=args.num_virtual_tokens,
                                       prefix_projection=args.prefix_projection,
                                       encoder_hidden_size=args.encoder_hidden_size, **common)
    init = {}
    if args.prompt_tuning_init_ids:
        init = dict(prompt_tuning_init="RANDOM")  # replaced by the word embeddings below
    return peft.PromptTuningConfig(num_virtual_tokens=args.num_virtual_tokens, **init, **common)


def add_bottleneck(model, args, layers, n_layers):
    """AdapterHub (`adapters` 1.3): a seq_bn / double_seq_bn adapter on `layers` (the others in
    `leave_out`), trained with `train_adapter`, and `score` trained fully beside it."""
    import adapters
    adapters.init(model)
    kw = dict(reduction_factor=args.reduction_factor)
    if args.non_linearity:
        kw["non_linearity"] = args.non_linearity
    if layers is not None:
        kw["leave_out"] = [i for i in range(n_layers) if i not in layers]
    cls = adapters.SeqBnConfig if args.bn_config == "seq_bn" else adapters.DoubleSeqBnConfig
    cfg = cls(**kw)
    model.add_adapter("imdb", config=cfg)
    model.train_adapter("imdb")
    model.score.weight.requires_grad_(True)
    return cfg


def init_prompt_from_ids(model, args):
    """PEFT's TEXT init (prompt_tuning/model.py) from token ids: the word embeddings of the ids,
    repeated or cut to num_virtual_tokens (our tokenizer made the ids, so both sides start equal)."""
    ids = [int(x) for x in args.prompt_tuning_init_ids.split(",")]
    v = args.num_virtual_tokens
    ids = (ids * (-(-v // len(ids))))[:v]
    emb = model.word_embeddings.weight
    enc = model.prompt_encoder[model.active_adapter]
    with torch.no_grad():
        enc.embedding.weight.copy_(emb[torch.tensor(ids, device=emb.device)])


def model_pad(model):
    return model.config.get_text_config().pad_token_id if hasattr(model.config, "get_text_config") \
        else model.config.pad_token_id


def padded_len(longest, multiple, max_len):
    """finetune's `pad_batches_to_multiple`: the batch's longest row rounded up to a multiple (<= max_len)."""
    return longest if multiple <= 1 else min(-(-longest // multiple) * multiple, max(max_len, longest))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.no_grad()
def evaluate(model, ids_t, lens, labels_t, args):
    """Accuracy over all rows; rows sorted by length, batches cut to their longest row."""
    dev = ids_t.device
    was_training = model.training
    model.eval()
    sync(dev)
    t = time.perf_counter()
    order = np.argsort(lens, kind="stable")
    correct = torch.zeros((), dtype=torch.long, device=dev)
    for s in range(0, len(order), args.eval_batch_size):
        idx = order[s:s + args.eval_batch_size]
        L = padded_len(int(lens[idx].max()), args.pad_multiple, ids_t.shape[1])
        it = torch.from_numpy(idx).to(dev)
        logits = forward(model, ids_t[it, :L], lens[idx], args)
        correct += (logits.argmax(-1) == labels_t[it]).sum()
    acc = correct.item() / len(order)
    secs = time.perf_counter() - t
    model.train(was_training)
    return acc, int(lens.sum()) / secs, secs


def main(argv=None):
    args = parse_args(argv)
    dev = torch.device(args.device)
    # f32: full-precision cuBLAS matmuls; tf32: TF32 tensor cores for f32 matmuls; bf16: autocast
    # runs the matmuls in bf16 (what stays f32 is small), TF32 left off.
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"

    import transformers
    if args.method == "bottleneck":
        import adapters as peft  # AdapterHub: reported in place of peft's version
    else:
        import peft
    d, meta = load_dump(args.data, args.limit_train, args.limit_test)
    B = args.batch_size or meta["batch_size"]
    seed = meta["seed"] if args.seed is None else args.seed
    n_train, n_test = d["train_ids"].shape[0], d["test_ids"].shape[0]
    log(f"data: {n_train} train, {n_test} test rows, max_length {d['train_ids'].shape[1]}, "
        f"pad {meta['pad_id']}, verbalizer ids {meta['neg_id']}/{meta['pos_id']}, batch {B}")

    model, load_secs = load_model(args.gguf, meta, dev)
    n_layers = model.config.num_hidden_layers
    layers = parse_layers(args.layers, n_layers)
    log(f"loaded {args.gguf} in {load_secs:.1f}s (transformers {transformers.__version__}, "
        f"peft {peft.__version__}, torch {torch.__version__}, {n_layers} layers)")
    score_init = model.score.weight.detach().clone()
    log(f"score [2, {score_init.shape[1]}] initialised from the embedding rows of ids "
        f"{meta['neg_id']} (label 0) and {meta['pos_id']} (label 1)")

    train_ids = torch.from_numpy(d["train_ids"]).to(dev)
    train_lab = torch.from_numpy(d["train_labels"]).to(dev)
    test_ids = torch.from_numpy(d["test_ids"]).to(dev)
    test_lab = torch.from_numpy(d["test_labels"]).to(dev)
    train_len, test_len = d["train_len"], d["test_len"]

    check = {}
    if args.check_base:
        model.eval()
        k = min(args.eval_batch_size, n_test)
        Lc = int(test_len[:k].max())
        ids_c = test_ids[:k, :Lc]
        with torch.no_grad(), autocast(args):
            base_logits = forward(model, ids_c, test_len[:k], args)
            mask = (ids_c != meta["pad_id"]).long()
            masked = model(input_ids=ids_c, attention_mask=mask, use_cache=False).logits.float()
            # Independent of transformers' pooling: hidden state at index length-1 times the
            # tied output-embedding rows of the verbalizer tokens (= the causal LM's logits).
            h = model.model(input_ids=ids_c, attention_mask=mask).last_hidden_state
            rows = torch.arange(k, device=dev)
            last = torch.from_numpy(test_len[:k] - 1).to(dev)
            emb = model.get_input_embeddings().weight
            manual = (h[rows, last] @ emb[[meta["neg_id"], meta["pos_id"]]].T).float()
        check["mask_vs_no_mask_max_abs_diff"] = (masked - base_logits).abs().max().item()
        check["manual_pool_max_abs_diff"] = (manual - base_logits).abs().max().item()
        print(f"check-base on {k} test rows (lengths {test_len[:k].min()}..{test_len[:k].max()}): "
              f"with vs without attention_mask max |diff| {check['mask_vs_no_mask_max_abs_diff']:.3e}; "
              f"LM logits of the verbalizer tokens at index length-1 vs score head "
              f"{check['manual_pool_max_abs_diff']:.3e}")

    torch.manual_seed(seed)  # LoRA A init and dropout masks
    if args.method == "bottleneck":
        cfg = add_bottleneck(model, args, layers, n_layers)
    else:
        cfg = peft_config(args, layers)
        model = peft.get_peft_model(model, cfg)
    if args.method == "prompt-tuning" and args.prompt_tuning_init_ids:
        init_prompt_from_ids(model, args)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    score_train = [p for n, p in trainable if ".score." in n or n.startswith("score.") or n.endswith("score.weight")]
    if len(score_train) != 1 or not torch.equal(score_train[0].detach(), score_init):
        raise SystemExit("the trainable copy of `score` does not hold the verbalizer init "
                         f"(trainable score params: {[n for n, _ in trainable if 'score' in n]})")
    n_tr = sum(p.numel() for _, p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    log(f"{args.method} ({type(cfg).__name__}), layers {args.layers}")
    print(f"trainable params: {n_tr:,} || all params: {n_all:,} || trainable%: {100 * n_tr / n_all:.4f}")

    def check_against_base(key, what):
        """--check-base: max |logits(PEFT model) - logits(model without PEFT)| on the check rows."""
        model.eval()
        with torch.no_grad():
            got = forward(model, ids_c, test_len[:k], args)
        check[key] = (got - base_logits).abs().max().item()
        print(f"check-base: PEFT ({what}) vs model without PEFT on {k} test rows: max |diff| {check[key]:.3e}")

    if args.check_base:
        check_against_base("before_max_abs_diff", "before training")

    if args.compile:
        model = torch.compile(model)

    result = {"args": vars(args), "batch_size": B, "seed": seed, "n_train": n_train, "n_test": n_test,
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "peft": peft.__version__, "python": platform.python_version()},
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
              "load_secs": load_secs, "trainable_params": n_tr}

    if not args.no_eval_before:
        acc, tps, secs = evaluate(model, test_ids, test_len, test_lab, args)
        result["accuracy_before"] = acc
        print(f"held-out accuracy before: {100 * acc:.2f}% on {n_test} reviews ({tps:.0f} tok/s eval, {secs:.1f}s)")

    params = [p for _, p in trainable]
    opt_kw = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay, amsgrad=False, **opt_kw)
    losses = torch.zeros(args.steps, device=dev)
    examples = 0
    norms = torch.zeros(args.steps, device=dev)
    lrs, tokens, steps_done = [], 0, 0
    model.train()
    sync(dev)
    t_train = time.perf_counter()
    ga = args.grad_accum
    n_batches = -(-n_train // B)  # make_batches: chunks of B rows, the last one may be short
    max_len = d["train_ids"].shape[1]
    for step in range(args.steps):  # 0-based; ours is 1-based with lr at step-1
        elapsed = time.perf_counter() - t_train
        if args.time_budget is not None and elapsed >= args.time_budget:
            log(f"time budget of {args.time_budget:.0f}s spent after {step} steps: stopping")
            break
        lr = budget_lr(args.lr, step, args.warmup_steps, args.steps, elapsed, args.time_budget)
        for g in opt.param_groups:
            g["lr"] = lr
        step_loss = torch.zeros((), device=dev)
        for k_ in range(ga):
            j = (step * ga + k_) % n_batches  # finetune: train_batches[i % train_batches.len()]
            idx = np.arange(j * B, min((j + 1) * B, n_train))
            L = padded_len(int(train_len[idx].max()), args.pad_multiple, max_len)
            tokens += int(train_len[idx].sum())
            examples += len(idx)
            it = torch.from_numpy(idx).to(dev, non_blocking=True)
            logits = forward(model, train_ids[it, :L], train_len[idx], args)
            loss = F.cross_entropy(logits, train_lab[it])
            (loss / ga if ga > 1 else loss).backward()
            step_loss += loss.detach() / ga
        norms[step] = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses[step] = step_loss
        lrs.append(lr)
        steps_done = step + 1
        if steps_done == 1 or steps_done % args.log_every == 0:
            run = losses[max(0, steps_done - 20):steps_done].mean().item()
            el = time.perf_counter() - t_train
            if not np.isfinite(run):
                raise SystemExit(f"non-finite loss by step {steps_done}")
            log(f"step {steps_done}/{args.steps}: loss {run:.4f} lr {lr:.2e} gnorm {norms[step].item():.3f} "
                f"{tokens / el:.0f} tok/s, {el:.0f}s")
    sync(dev)
    train_secs = time.perf_counter() - t_train
    losses = losses[:steps_done].cpu().numpy()
    norms = norms[:steps_done].cpu().numpy()
    if steps_done and not (np.isfinite(losses).all() and np.isfinite(norms).all()):
        bad = int(np.nonzero(~(np.isfinite(losses) & np.isfinite(norms)))[0][0]) + 1
        raise SystemExit(f"non-finite loss or gradient norm at step {bad}")
    running = float(losses[-20:].mean()) if steps_done else float("nan")
    tps = tokens / max(train_secs, 1e-9)
    log(f"trained {steps_done} steps in {train_secs:.1f}s: final loss {losses[-1] if steps_done else float('nan'):.4f} "
        f"(mean of the last {min(steps_done, 20)} steps {running:.4f}), {tps:.0f} tok/s")

    acc, etps, esecs = evaluate(model, test_ids, test_len, test_lab, args)
    print(f"held-out accuracy after: {100 * acc:.2f}% on {n_test} reviews ({etps:.0f} tok/s eval, {esecs:.1f}s)")
    print(f"training: {steps_done} steps ({examples} examples, {examples / n_train:.2f} epochs), "
          f"{tps:.0f} tok/s, {train_secs:.1f}s, mean loss of the last 20 steps {running:.4f}")
    if args.check_base:
        check_against_base("after_max_abs_diff", "after training; 0 expected with --lr 0")
    total = time.perf_counter() - T0
    print(f"total wall time {total:.1f}s (model load {load_secs:.1f}s)")
    result.update({
        "accuracy_after": acc, "steps": steps_done, "examples": examples, "train_tokens": tokens, "train_secs": train_secs,
        "train_tokens_per_sec": tps, "eval_secs": esecs, "eval_tokens_per_sec": etps,
        "running_loss": running, "losses": losses.tolist(), "grad_norms": norms.tolist(), "lrs": lrs,
        "total_wall_secs": total, "check": check or None,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
    })
    if args.out:
        out = os.path.abspath(args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, out)
        log(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
