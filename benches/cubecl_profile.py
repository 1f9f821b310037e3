#!/usr/bin/env python3
"""Sums CubeCL's per-kernel profile of the last N device syncs: where a GPU step's time goes.

A process started with CUBECL_DEBUG_OPTION=profile (cubecl-runtime 0.10, profiling level
"basic") times every kernel launch on its own and, at each device sync, appends to its profiling
log (cubecl.toml: target/cubecl/profile.log) a summary table of the kernels run since the last
sync:

    |⎺⎺⎺...|
    | Name         | Duration  | Num Computed | Ratio |
    |⎼⎼⎼...|
    | ElemwiseFuse | 1.234ms   | 120          | 40 %  |
    ...
    |⎼⎼⎼...|
    | Total        | 3.1ms     | 300          | 100 % |
    |⎯⎯⎯...|

train_bench syncs once per step (after each warm-up and each timed step), so the last --last
tables are its timed steps. Output: per kernel name, launches and milliseconds per step and the
share of the summed kernel time; the summed kernel time per step is the GPU-busy time (each launch
runs alone while profiling: no overlap) and comparing it with the unprofiled step time gives the
share of the step that is host work (graph building, fusion, launches) rather than GPU work.

    python3 benches/cubecl_profile.py target/cubecl/profile.log --last 3 [--step-ms 230] [--json F]
    python3 benches/cubecl_profile.py --self-test
"""
import argparse
import json
import re
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
ROW = re.compile(r"^\|\s*(.+?)\s*\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(\d+)\s*\|\s*\d+ %\s*\|\s*$")


def duration_ms(num, unit):
    """Rust's Debug format of a Duration ("1.5ms", "20µs", "3ns", "1.2s") in milliseconds."""
    return float(num) * UNITS[unit]


def clean_name(name):
    """CubeCL writes generic kernel names with " | " between their type parameters (e.g.
    "MatmulEntry | FusedMatmulArgs | ... | CudaRuntime"): "/" instead, so that the name fits in
    a markdown table cell."""
    return "/".join(p.strip() for p in name.split("|"))


def parse_tables(lines):
    """The summary tables of a profiling log, oldest first: each a dict name -> (ms, launches)."""
    tables, cur = [], None
    for line in lines:
        line = line.rstrip("\n")
        if re.match(r"^\|\s*Name\s*\|\s*Duration\s*\|", line):
            cur = {}
            continue
        if cur is None:
            continue
        m = ROW.match(line)
        if not m:
            continue
        name, num, unit, count = clean_name(m.group(1)), m.group(2), m.group(3), int(m.group(4))
        if name == "Total":
            tables.append(cur)
            cur = None
        else:
            ms, n = cur.get(name, (0.0, 0))
            cur[name] = (ms + duration_ms(num, unit), n + count)
    return tables


def summarize(tables, last):
    """Per name: (ms per step, launches per step), over the last `last` tables."""
    if last < 1 or len(tables) < last:
        raise SystemExit(f"need {last} summary tables, the log has {len(tables)}")
    use = tables[-last:]
    tot = {}
    for t in use:
        for name, (ms, n) in t.items():
            a, b = tot.get(name, (0.0, 0))
            tot[name] = (a + ms, b + n)
    return {k: (ms / last, n / last) for k, (ms, n) in tot.items()}


def report(per_step, step_ms=None, top=25):
    busy = sum(ms for ms, _ in per_step.values())
    launches = sum(n for _, n in per_step.values())
    out = [f"kernel time per step {busy:.2f} ms in {launches:.0f} launches"]
    if step_ms:
        out[0] += f"; unprofiled step {step_ms:.2f} ms -> GPU busy {100 * busy / step_ms:.1f}%, " \
                  f"host / idle {100 * (1 - busy / step_ms):.1f}%"
    out.append("| kernel | ms/step | launches/step | share |")
    out.append("|---|---:|---:|---:|")
    for name, (ms, n) in sorted(per_step.items(), key=lambda kv: -kv[1][0])[:top]:
        out.append(f"| {name} | {ms:.3f} | {n:.0f} | {100 * ms / busy:.1f}% |")
    return "\n".join(out), busy, launches


def self_test():
    log = """noise before
|⎺⎺⎺⎺|
| Name | Duration | Num Computed | Ratio |
|⎼⎼⎼⎼|
| MatmulEntry | 2ms | 4 | 66 % |
| ElemwiseFuse | 1000µs | 10 | 33 % |
|⎼⎼⎼⎼|
| Total | 3ms | 14 | 100 % |
|⎯⎯⎯⎯|
|⎺⎺⎺⎺|
| Name | Duration | Num Computed | Ratio |
|⎼⎼⎼⎼|
| MatmulEntry | 3ms | 2 | 60 % |
| MatmulEntry | Fused | Cuda | 1ms | 2 | 20 % |
| ElemwiseFuse | 500000ns | 6 | 10 % |
| ReduceKernel | 0.0005s | 2 | 10 % |
|⎼⎼⎼⎼|
| Total | 5ms | 12 | 100 % |
|⎯⎯⎯⎯|
"""
    t = parse_tables(log.splitlines())
    assert len(t) == 2, t
    s = summarize(t, 2)
    # Means over the two tables, by hand: matmul (2+3)/2 = 2.5 ms, (4+2)/2 = 3 launches; fused
    # matmul 1/2 = 0.5 ms, 1 launch; elementwise (1+0.5)/2 = 0.75 ms, 8 launches; reduce 0.5/2 =
    # 0.25 ms, 1 launch.
    # A name with " | " inside (CubeCL's generic parameters) is kept whole, with "/" for "|".
    assert abs(s["MatmulEntry"][0] - 2.5) < 1e-12 and s["MatmulEntry"][1] == 3, s
    assert abs(s["MatmulEntry/Fused/Cuda"][0] - 0.5) < 1e-12 and s["MatmulEntry/Fused/Cuda"][1] == 1, s
    assert abs(s["ElemwiseFuse"][0] - 0.75) < 1e-12 and s["ElemwiseFuse"][1] == 8, s
    assert abs(s["ReduceKernel"][0] - 0.25) < 1e-12 and s["ReduceKernel"][1] == 1, s
    text, busy, n = report(s, step_ms=8.0)
    assert abs(busy - 4.0) < 1e-12 and n == 13, (busy, n)
    assert "GPU busy 50.0%" in text, text
    s1 = summarize(t, 1)
    assert abs(s1["MatmulEntry"][0] - 3.0) < 1e-12 and abs(s1["MatmulEntry/Fused/Cuda"][0] - 1.0) < 1e-12
    print("self-test OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?")
    ap.add_argument("--last", type=int, default=3, help="number of trailing summary tables (timed steps)")
    ap.add_argument("--step-ms", type=float, help="the unprofiled step time, for the GPU-busy share")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", help="append one JSON line with the per-kernel numbers")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.log:
        raise SystemExit("give the profiling log (or --self-test)")
    try:
        with open(a.log, encoding="utf-8", errors="replace") as f:
            tables = parse_tables(f)
    except OSError as e:
        raise SystemExit(f"{a.log}: {e}")
    per_step = summarize(tables, a.last)
    text, busy, launches = report(per_step, a.step_ms, a.top)
    print(text)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"log": a.log, "last": a.last, "kernel_ms_per_step": busy,
                                "launches_per_step": launches, "step_ms": a.step_ms,
                                "kernels": {k: {"ms": v[0], "launches": v[1]} for k, v in per_step.items()}}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
