#!/usr/bin/env python3
"""PyTorch + PEFT side of the GPU training benchmark (the counterpart of examples/train_bench.rs,
whose logic is crates/lora-recipes/src/bench/).

Subcommands:

  ceilings  Device ceilings: device-to-device copy bandwidth (bytes read + written) and dense
            matmul rate for f32 (IEEE), tf32 and bf16 (M=N=K=8192 on CUDA, random data, median
            of several timed products after warm-up). One JSON line.
  run       The training-step benchmark: transformers GPT2LMHeadModel(GPT2Config(...)), random
            init, dropout off (burn's GPT-2 has none), PEFT LoraConfig(r=8, lora_alpha=16,
            lora_dropout=0, target_modules=["c_attn"] or ["c_attn", "c_proj", "c_fc"]),
            torch.optim.AdamW on the LoRA parameters, causal-LM loss (labels=input_ids), random
            token ids. One JSON line per configuration TARGETS:QUANT:PRECISION.
            Precision: f32 = fp32 matmuls without TF32 (torch.set_float32_matmul_precision
            "highest"), tf32 = "high", bf16 = torch.autocast(bfloat16) over f32 master weights.
            QUANT nf4 / nf4-dq needs bitsandbytes (on CUDA); without it the line says
            "n/a (no bitsandbytes)".
  matmuls   torch's matrix products at the shapes of one GPT-2 training step, the counterpart of
            `train_bench --matmul-bench` (same shapes and names; tf32 for ours' f32, bf16): x @ w
            ("2d") and F.linear on [batch, seq, K] ("linear"). One JSON line each.
  mmtable   Joins the two matmul JSON files (--ours, --torch) into one markdown table.
  table     Joins our JSON lines, PEFT's, the ceilings and the nvidia-smi logs into one markdown
            table (goals: ours >= 1.2 x PEFT tokens/s at equal precision; QLoRA step <= 1.3 x
            LoRA step).

Timing as in train_bench: synchronize, then read the host clock; median of --steps steps after
--warmup. FLOPs per step use the same formula as train_bench (`train_flops` in
crates/lora-recipes/src/bench/flops.rs):
  2*(2*T*(N + V*d)) + 3*(4*L*T*seq*d) + 3*sum_adapted(2*T*r*(d_in + d_out)).

CPU smoke test:  python benches/peft_bench.py run --device cpu --config tiny --batch 2 --seq 32 \
                     --warmup 1 --steps 2 --configs c_attn:none:f32,all:none:bf16
"""
import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from datetime import datetime

R = 8
LORA_ALPHA = 16.0
TARGETS = {"c_attn": ["c_attn"], "all": ["c_attn", "c_proj", "c_fc"]}


def model_shape(name):
    """(vocab, n_positions, n_embd, n_layer, n_head) of --config."""
    if name == "gpt2-124m":
        return (50257, 1024, 768, 12, 12)
    if name == "gpt2-narrow":  # GPT-2 124M's 12 layers / 12 heads, negligible device work
        return (1000, 128, 96, 12, 12)
    if name == "tiny":
        return (1000, 128, 64, 2, 4)
    raise SystemExit(f"--config {name!r}: expected 'gpt2-124m', 'gpt2-narrow' or 'tiny'")


def train_flops(vocab, n_embd, n_layer, n_inner, batch, seq, r, adapted):
    """Model FLOPs of one training step; `adapted` = list of (d_in, d_out) with an adapter."""
    t = batch * seq
    n = n_layer * (3 * n_embd * n_embd + n_embd * n_embd + 2 * n_embd * n_inner)
    dense = 2.0 * t * (n + vocab * n_embd)
    attn = 4.0 * n_layer * t * seq * n_embd
    lora = sum(2.0 * t * r * (i + o) for i, o in adapted)
    return 2 * dense + 3 * attn + 3 * lora


def adapted_dims(targets, d, f, n_layer):
    per = {"c_attn": [(d, 3 * d)], "all": [(d, 3 * d), (d, d), (d, f), (f, d)]}[targets]
    return per * n_layer


def sync(torch, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def set_matmul_precision(torch, p):
    # "highest": IEEE fp32 matmuls; "high": TF32 tensor cores allowed.
    torch.set_float32_matmul_precision("high" if p == "tf32" else "highest")


# --------------------------------------------------------------------------------------------
# ceilings
# --------------------------------------------------------------------------------------------


def cmd_ceilings(a):
    import torch

    dev = torch.device(a.device)
    out = {"side": "ceilings", "device": a.device, "torch": torch.__version__}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    n = a.matmul_n if a.matmul_n else (8192 if dev.type == "cuda" else 512)
    copy_bytes = a.copy_mb * 2**20 if a.copy_mb else (2 * 2**30 if dev.type == "cuda" else 64 * 2**20)

    def timeit(fn, warmup, reps):
        for _ in range(warmup):
            fn()
        sync(torch, dev)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            sync(torch, dev)
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    src = torch.randn(copy_bytes // 4, device=dev)
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), 3, 20)
    out["copy_bytes"] = 2 * src.numel() * 4
    out["copy_gb_s"] = 2 * src.numel() * 4 / t / 1e9
    del src, dst
    out["matmul_n"] = n
    for p in ("f32", "tf32", "bf16"):
        set_matmul_precision(torch, p)
        dt = torch.bfloat16 if p == "bf16" else torch.float32
        # Two input sets in rotation, random data (never zeros).
        xs = [(torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)) for _ in range(2)]
        k = [0]

        def mm():
            x, y = xs[k[0] % 2]
            k[0] += 1
            return x @ y

        t = timeit(mm, 3, 10)
        out[f"matmul_tflops_{p}"] = 2.0 * n**3 / t / 1e12
        del xs
    set_matmul_precision(torch, "f32")
    line = json.dumps(out)
    print("JSON " + line, flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")
    print(
        f"ceilings: copy {out['copy_gb_s']:.0f} GB/s; matmul {n}^3: f32 {out['matmul_tflops_f32']:.1f}, "
        f"tf32 {out['matmul_tflops_tf32']:.1f}, bf16 {out['matmul_tflops_bf16']:.1f} TFLOP/s",
        flush=True,
    )


def cmd_matmuls(a):
    import torch

    dev = torch.device(a.device)
    vocab, _, d, _, _ = model_shape(a.config)
    f = 4 * d
    m = a.batch * a.seq
    shapes = [("c_attn", d, 3 * d), ("attn.c_proj", d, d), ("c_fc", d, f), ("mlp.c_proj", f, d),
              ("lm_head", d, vocab), ("lm_head.grad_x", vocab, d), ("square", 8192, 8192)]
    for p in ("tf32", "bf16"):
        set_matmul_precision(torch, p)
        dt = torch.bfloat16 if p == "bf16" else torch.float32
        for name, k, n in shapes:
            rows = 8192 if name == "square" else m
            for form in ("2d", "linear"):
                if name == "square" and form == "linear":
                    continue
                x = torch.randn(rows, k, device=dev, dtype=dt)
                w = torch.randn(k, n, device=dev, dtype=dt)
                wt = w.t().contiguous()
                x3 = x.view(a.batch, rows // a.batch, k)
                fn = (lambda: x @ w) if form == "2d" else (lambda: torch.nn.functional.linear(x3, wt))
                for _ in range(3):
                    fn()
                sync(torch, dev)
                t = time.perf_counter()
                for _ in range(20):
                    fn()
                sync(torch, dev)
                ms = (time.perf_counter() - t) * 1e3 / 20
                tf = 2.0 * rows * k * n / (ms * 1e-3) / 1e12
                j = {"side": "torch", "kind": "matmul", "name": name, "form": form, "dtype": p,
                     "m": rows, "k": k, "n": n, "ms": ms, "tflops": tf}
                print(f"   matmul {name:<15} {form:<6} {p:<4} [{rows}x{k}]x[{k}x{n}]: {ms:.3f} ms, {tf:.1f} TFLOP/s",
                      file=sys.stderr, flush=True)
                line = json.dumps(j)
                print("JSON " + line, flush=True)
                if a.json:
                    with open(a.json, "a") as fh:
                        fh.write(line + "\n")
                del x, w, wt, x3
    set_matmul_precision(torch, "f32")


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def build_model(torch, a, dev, targets, quant, precision):
    from transformers import GPT2Config, GPT2LMHeadModel
    from peft import LoraConfig, get_peft_model

    vocab, npos, d, nl, nh = model_shape(a.config)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=npos,
        n_embd=d,
        n_layer=nl,
        n_head=nh,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )
    torch.manual_seed(a.seed)
    if quant == "none":
        model = GPT2LMHeadModel(cfg).to(dev)
    else:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise NotAvailable("n/a (no bitsandbytes)")
        if dev.type != "cuda":
            raise NotAvailable("n/a (bitsandbytes 4-bit needs CUDA here)")
        import tempfile
        from transformers import BitsAndBytesConfig

        tmp = tempfile.mkdtemp(prefix="peft_bench_")
        GPT2LMHeadModel(cfg).save_pretrained(tmp)
        bnb = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=(quant == "nf4-dq"),
            bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
        )
        model = GPT2LMHeadModel.from_pretrained(tmp, quantization_config=bnb, device_map={"": dev.index or 0})
    lcfg = LoraConfig(
        r=R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=TARGETS[targets],
        fan_in_fan_out=True,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lcfg)
    model.train()
    return model, cfg


class NotAvailable(Exception):
    pass


def torch_profile(torch, dev, a, step):
    """torch.profiler over --profile more steps: CUDA kernel time per step against the wall time
    of the profiled steps, and the top kernels (the counterpart of benches/cubecl_profile.py)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    sync(torch, dev)
    t = time.perf_counter()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with tprofile(activities=acts) as prof:
        for i in range(a.profile):
            step(a.warmup + a.steps + i)
        sync(torch, dev)
    wall = (time.perf_counter() - t) * 1e3 / a.profile
    ev = [e for e in prof.key_averages() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    kernels = sorted(((e.key, e.device_time_total / 1e3 / a.profile, e.count / a.profile) for e in ev),
                     key=lambda x: -x[1])
    busy = sum(k[1] for k in kernels)
    print(f"   profile: CUDA kernel time {busy:.2f} ms per step over {wall:.2f} ms wall (profiled); top kernels:",
          file=sys.stderr, flush=True)
    for k in kernels[:15]:
        print(f"     {k[1]:8.3f} ms {k[2]:6.0f}x  {k[0][:110]}", file=sys.stderr, flush=True)
    return {"kernel_ms_per_step": busy, "profiled_step_ms": wall,
            "top": [{"name": k[0], "ms": k[1], "launches": k[2]} for k in kernels[:25]]}


def run_one(torch, a, dev, targets, quant, precision):
    import contextlib

    set_matmul_precision(torch, precision)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    model, cfg = build_model(torch, a, dev, targets, quant, precision)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    g = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    batches = [torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g).to(dev) for _ in range(4)]
    if precision == "bf16":
        ctx = lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        ctx = contextlib.nullcontext
    sync(torch, dev)
    setup_s = time.perf_counter() - t0

    def step(i):
        ids = batches[i % len(batches)]
        with ctx():
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    t1 = time.perf_counter()
    loss_first = float("nan")
    for i in range(a.warmup):
        l = step(i)
        if i == 0:
            loss_first = float(l)
    sync(torch, dev)
    warmup_s = time.perf_counter() - t1
    times = []
    last = None
    for i in range(a.steps):
        t = time.perf_counter()
        last = step(a.warmup + i)
        sync(torch, dev)
        times.append((time.perf_counter() - t) * 1e3)
    loss_last = float(last)
    profile = None
    if a.profile > 0:
        try:
            profile = torch_profile(torch, dev, a, step)
        except Exception as e:  # noqa: BLE001 - the timing above stands without the profile
            profile = {"error": f"{type(e).__name__}: {e}"}
            print(f"   profile failed: {profile['error']}", file=sys.stderr, flush=True)
    if a.warmup == 0:
        loss_first = loss_last
    if not (math.isfinite(loss_first) and math.isfinite(loss_last)):
        raise RuntimeError(f"non-finite loss: first {loss_first}, last {loss_last}")
    med = statistics.median(times)
    d, nl = cfg.n_embd, cfg.n_layer
    f = cfg.n_inner or 4 * d
    flops = train_flops(cfg.vocab_size, d, nl, f, a.batch, a.seq, R, adapted_dims(targets, d, f, nl))
    res = {
        "step_ms_median": med,
        "step_ms_min": min(times),
        "step_ms_max": max(times),
        "step_ms_all": times,
        "tokens_per_s": a.batch * a.seq / (med * 1e-3),
        "flops_per_step": flops,
        "achieved_tflops": flops / (med * 1e-3) / 1e12,
        "trainable_params": trainable,
        "loss_first": loss_first,
        "loss_last": loss_last,
        "setup_s": setup_s,
        "warmup_s": warmup_s,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    if profile:
        res["profile"] = profile
    if dev.type == "cuda":
        res["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        res["torch_max_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    del model, opt, params, batches
    return res


def cmd_run(a):
    import torch
    import transformers
    import peft

    dev = torch.device(a.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", 0)
    if dev.type == "cuda":
        # The caching allocator must exist before reset_peak_memory_stats, else torch raises
        # "Invalid device argument : did you call init?".
        torch.cuda.init()
        torch.zeros(1, device=dev)
    if a.threads:
        torch.set_num_threads(a.threads)
    vocab, npos, _, _, _ = model_shape(a.config)
    if a.seq > npos or a.seq < 2 or a.batch < 1 or a.steps < 1:
        raise SystemExit(f"bad sizes: need 2 <= --seq <= {npos}, --batch >= 1, --steps >= 1")
    print(
        f"peft_bench: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"device {dev}, config {a.config}, batch {a.batch} x seq {a.seq}, warmup {a.warmup}, steps {a.steps}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for item in [s for s in a.configs.split(",") if s.strip()]:
        parts = item.strip().split(":")
        if len(parts) != 3 or parts[0] not in TARGETS or parts[1] not in ("none", "nf4", "nf4-dq") or parts[2] not in (
            "f32",
            "tf32",
            "bf16",
        ):
            raise SystemExit(
                f"--configs {item!r}: expected TARGETS:QUANT:PRECISION with TARGETS c_attn|all, "
                "QUANT none|nf4|nf4-dq, PRECISION f32|tf32|bf16"
            )
        targets, quant, precision = parts
        print(f"== {item}", file=sys.stderr, flush=True)
        j = {
            "side": "peft",
            "device": str(dev),
            "model": a.config,
            "targets": targets,
            "quant": quant,
            "precision": precision,
            "matmul": precision,
            "batch": a.batch,
            "seq": a.seq,
            "r": R,
            "lora_alpha": LORA_ALPHA,
            "warmup": a.warmup,
            "steps": a.steps,
            "t_start": time.time(),
        }
        try:
            j.update(run_one(torch, a, dev, targets, quant, precision))
            print(
                f"   median step {j['step_ms_median']:.2f} ms, {j['tokens_per_s']:.0f} tok/s, "
                f"{j['achieved_tflops']:.2f} TFLOP/s, loss {j['loss_first']:.4f} -> {j['loss_last']:.4f}",
                file=sys.stderr,
                flush=True,
            )
        except NotAvailable as e:
            j["error"] = str(e)
        except Exception as e:  # noqa: BLE001 - reported per configuration, the run goes on
            j["error"] = f"{type(e).__name__}: {e}"
            print(f"   error: {j['error']}", file=sys.stderr, flush=True)
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        j["t_end"] = time.time()
        line = json.dumps(j)
        print("JSON " + line, flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(line + "\n")
        rows.append(j)
    set_matmul_precision(torch, "f32")
    print("| targets:quant:precision | tok/s | step ms | TFLOP/s | trainable |")
    print("|---|---|---|---|---|")
    for j in rows:
        name = f"{j['targets']}:{j['quant']}:{j['precision']}"
        if "error" in j:
            print(f"| {name} | {j['error']} | | | |")
        else:
            print(
                f"| {name} | {j['tokens_per_s']:.0f} | {j['step_ms_median']:.2f} | {j['achieved_tflops']:.2f} | "
                f"{j['trainable_params']} |"
            )


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------


def read_jsonl(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("JSON "):
                line = line[5:]
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"warning: {path}:{n}: bad JSON ({e})", file=sys.stderr)
    return out


def read_smi(path):
    """nvidia-smi CSV lines 'YYYY/MM/DD HH:MM:SS.fff, MiB' -> [(epoch, MiB)]; [] if absent."""
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2:
                continue
            try:
                t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                out.append((t, float(parts[1])))
            except ValueError:
                continue
    return out


def window_peak(samples, j):
    if not samples or "t_start" not in j:
        return None
    # The poll runs every 100 ms: widen the window by one period on each side.
    v = [m for t, m in samples if j["t_start"] - 0.1 <= t <= j.get("t_end", float("inf")) + 0.1]
    return max(v) if v else None


def cmd_table(a):
    ours = read_jsonl(a.ours)
    theirs = read_jsonl(a.peft)
    ceil = next(iter(read_jsonl(a.ceilings)), {})
    smi_o, smi_p = read_smi(a.smi_ours), read_smi(a.smi_peft)
    peaks = {p: ceil.get(f"matmul_tflops_{p}") for p in ("f32", "tf32", "bf16")}

    def eff_prec(j):
        # Ours: f32 parameters with TF32 matmuls on CUDA compare with PEFT's tf32.
        return j.get("matmul", j["precision"]) if j["precision"] == "f32" else j["precision"]

    O = {(j["targets"], j["quant"], eff_prec(j)): j for j in ours}
    P = {(j["targets"], j["quant"], j["precision"]): j for j in theirs}
    ours_has_true_f32 = any(eff_prec(j) == "f32" for j in ours)

    def ok(j):
        return j is not None and "error" not in j

    def mfu(j, prec):
        if not ok(j):
            return None
        peak = peaks.get(prec)
        if peak:
            return j["flops_per_step"] / (j["step_ms_median"] * 1e-3) / 1e12 / peak
        return j.get("mfu")

    def fnum(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    def fmib(x):
        return "n/a" if x is None else f"{x:.0f}"

    def cell(j, key, fmt):
        if j is None:
            return "—"
        if "error" in j:
            return j["error"] if len(j["error"]) < 60 else j["error"][:57] + "..."
        return format(j[key], fmt)

    quants = []
    for k in list(O) + list(P):
        if k[1] not in quants:
            quants.append(k[1])
    quants.sort(key=lambda q: (q != "none", q))
    lines = []
    hdr = (
        "| config | precision | ours tok/s | PEFT tok/s | ours/PEFT | ours step ms | PEFT step ms | "
        "ours peak MiB | PEFT peak MiB | ours MFU | PEFT MFU | goal met? |"
    )
    lines.append(hdr)
    lines.append("|" + "---|" * 12)
    for q in quants:
        for t in ("c_attn", "all"):
            for p in ("f32", "tf32", "bf16"):
                o, th = O.get((t, q, p)), P.get((t, q, p))
                if o is None and th is None:
                    continue
                name = ("LoRA" if q == "none" else f"QLoRA {q}") + f" {t}"
                plabel = p
                if o is not None and p == "tf32" and o["precision"] == "f32":
                    plabel = "tf32 (ours: f32, tf32 matmul)"
                if o is None and p == "f32" and not ours_has_true_f32 and O.get((t, q, "tf32")):
                    goal = "n/a: burn CUDA f32 uses TF32 matmuls"
                    lines.append(
                        f"| {name} | {plabel} | see tf32 row | {cell(th, 'tokens_per_s', '.0f')} | — | — | "
                        f"{cell(th, 'step_ms_median', '.1f')} | — | {fmib(window_peak(smi_p, th) if ok(th) else None)} | — | "
                        f"{fnum(mfu(th, p), '.1%')} | {goal} |"
                    )
                    continue
                ratio = o["tokens_per_s"] / th["tokens_per_s"] if ok(o) and ok(th) else None
                if ratio is not None:
                    goal = "yes" if ratio >= 1.2 else f"NO ({ratio:.2f} < 1.2)"
                elif not ok(o):
                    goal = "n/a (no number of ours)"
                else:
                    goal = "n/a (no PEFT number)"
                lines.append(
                    f"| {name} | {plabel} | {cell(o, 'tokens_per_s', '.0f')} | {cell(th, 'tokens_per_s', '.0f')} | "
                    f"{fnum(ratio, '.2f')} | {cell(o, 'step_ms_median', '.1f') if ok(o) else '—'} | "
                    f"{cell(th, 'step_ms_median', '.1f') if ok(th) else '—'} | "
                    f"{fmib(window_peak(smi_o, o) if ok(o) else None)} | {fmib(window_peak(smi_p, th) if ok(th) else None)} | "
                    f"{fnum(mfu(o, p), '.1%')} | {fnum(mfu(th, p), '.1%')} | {goal} |"
                )
    lines.append("")
    # QLoRA step / LoRA step.
    for side, D in (("ours", O), ("PEFT", P)):
        parts = []
        for (t, q, p), j in sorted(D.items()):
            if q == "none":
                continue
            base = D.get((t, "none", p))
            if ok(j) and ok(base):
                x = j["step_ms_median"] / base["step_ms_median"]
                parts.append(f"{q} {t} {p}: {x:.2f} ({'yes' if x <= 1.3 else 'NO'})")
            else:
                why = j.get("error") if j and "error" in j else "missing LoRA or QLoRA number"
                parts.append(f"{q} {t} {p}: " + (why if why.startswith("n/a") else f"n/a ({why})"))
        lines.append(f"QLoRA step / LoRA step, {side} (goal <= 1.3): " + ("; ".join(parts) if parts else "n/a (no QLoRA rows)"))
    if ceil:
        lines.append(
            f"Ceilings ({ceil.get('gpu', ceil.get('device'))}): copy {ceil.get('copy_gb_s', 0):.0f} GB/s (read+write); "
            f"matmul {ceil.get('matmul_n')}^3 f32 {ceil.get('matmul_tflops_f32', 0):.1f}, tf32 "
            f"{ceil.get('matmul_tflops_tf32', 0):.1f}, bf16 {ceil.get('matmul_tflops_bf16', 0):.1f} TFLOP/s (MFU peaks)."
        )
    else:
        lines.append("Ceilings: n/a (no ceilings file); MFU from the JSON's own peak if any.")
    if not smi_o and not smi_p:
        lines.append("Peak MiB: n/a (no nvidia-smi samples).")
    else:
        lines.append(
            "Peak MiB: max nvidia-smi memory.used in each configuration's time window (whole GPU: "
            "includes the CUDA context and pool memory kept from earlier configurations of the same process)."
        )
    o_any = next(iter(ours), {})
    p_any = next(iter(theirs), {})
    lines.append(
        f"Shape: {o_any.get('model', p_any.get('model'))}, batch {o_any.get('batch', p_any.get('batch'))} x seq "
        f"{o_any.get('seq', p_any.get('seq'))}, LoRA r={R} alpha={LORA_ALPHA:g}; median of "
        f"{o_any.get('steps', p_any.get('steps'))} steps. PEFT attention: "
        f"{next((j.get('attn_implementation') for j in theirs if ok(j)), 'n/a')}."
    )
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


def cmd_mmtable(a):
    """Side by side: ours' (train_bench --matmul-bench) and torch's (matmuls) products."""
    ours = {(j["name"], j["form"], "tf32" if j["dtype"] == "f32" else j["dtype"]): j for j in read_jsonl(a.ours)}
    theirs = {(j["name"], j["form"], j["dtype"]): j for j in read_jsonl(a.torch)}
    lines = ["| product | form | shape [M×K]·[K×N] | precision | ours ms | torch ms | ours TFLOP/s | torch TFLOP/s | ours/torch speed |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for key, t in theirs.items():
        o = ours.get(key)
        shape = f"[{t['m']}×{t['k']}]·[{t['k']}×{t['n']}]"
        prec = "tf32 (ours: f32)" if key[2] == "tf32" else key[2]
        if o is None or "ms" not in o:
            why = (o or {}).get("error", "not measured")
            lines.append(f"| {key[0]} | {key[1]} | {shape} | {prec} | {why} | {t['ms']:.3f} | | {t['tflops']:.1f} | |")
        else:
            lines.append(f"| {key[0]} | {key[1]} | {shape} | {prec} | {o['ms']:.3f} | {t['ms']:.3f} | "
                         f"{o['tflops']:.1f} | {t['tflops']:.1f} | {t['ms'] / o['ms']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ceilings")
    c.add_argument("--device", default="cuda")
    c.add_argument("--json")
    c.add_argument("--matmul-n", type=int, default=0, help="matmul size (default 8192 on CUDA, 512 on CPU)")
    c.add_argument("--copy-mb", type=int, default=0, help="copy buffer MiB (default 2048 on CUDA, 64 on CPU)")
    r = sub.add_parser("run")
    r.add_argument("--device", default="cuda")
    r.add_argument("--config", default="gpt2-124m")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--seq", type=int, default=1024)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--configs", default="c_attn:none:f32,c_attn:none:tf32,c_attn:none:bf16,all:none:f32,all:none:tf32,all:none:bf16")
    r.add_argument("--json")
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--profile", type=int, default=0,
                   help="torch.profiler over this many extra steps: CUDA kernel time per step, top kernels")
    mm = sub.add_parser("matmuls")
    mm.add_argument("--device", default="cuda")
    mm.add_argument("--config", default="gpt2-124m")
    mm.add_argument("--batch", type=int, default=8)
    mm.add_argument("--seq", type=int, default=1024)
    mm.add_argument("--json")
    mt = sub.add_parser("mmtable")
    mt.add_argument("--ours", required=True)
    mt.add_argument("--torch", required=True)
    mt.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("--ours")
    t.add_argument("--peft")
    t.add_argument("--ceilings")
    t.add_argument("--smi-ours")
    t.add_argument("--smi-peft")
    t.add_argument("--out")
    a = ap.parse_args()
    {"ceilings": cmd_ceilings, "run": cmd_run, "table": cmd_table, "matmuls": cmd_matmuls, "mmtable": cmd_mmtable}[a.cmd](a)


if __name__ == "__main__":
    main()
