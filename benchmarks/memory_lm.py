"""Peak memory of LM runs against the bound of issue 3, item 6.

The simulator never holds k inner-optimizer states: a worker's AdamW state
lives only while its job runs. The bound for a run with k workers is

    (in-flight jobs + 3) x (model + one AdamW state) + 1 GiB

with in-flight jobs = k (every asynchronous worker has a job in flight), a
model of P float32 parameters (4P bytes) and an AdamW state of two moments
(8P bytes). Each measurement runs in a fresh process (peak RSS, ru_maxrss,
counts everything the process ever held: Python, torch, the corpus, the
tokenizer), a short ``dn_dylu`` run of the 20M model (21.1M parameters,
untied) on the offline corpus with ``k`` workers.

    .venv/bin/python benchmarks/memory_lm.py            # k = 4 and 16, 20M model
    .venv/bin/python benchmarks/memory_lm.py --size small --ks 4,8,16
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30


def scenario_overrides(size: str, k: int, method: str) -> dict:
    return {
        "name": f"memory-{size}-k{k}",
        "trainer.config": {
            "size": size,
            "batch_size": 1,  # memory of parameters and states, not of activations
            "pretrain_steps": 0,
            "device": "cpu",
            "data": {"eval_tokens": 1024},
        },
        "workers.k": k,
        "method.preset": method,
        "schedule.H": 2,
        "schedule.t_max": 4 * k,  # every worker completes about two rounds
        "eval.every": 4 * k,
    }


def child(size: str, k: int, method: str) -> None:
    """Run one short simulation in this process and print its peak RSS as JSON."""
    sys.path.insert(0, str(ROOT))
    from sim import load_scenario, simulate
    from trainers.lm import PRESETS, closed_form_params

    sc = load_scenario(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml", overrides=scenario_overrides(size, k, method))
    start = time.perf_counter()
    result = simulate(sc)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(
        json.dumps(
            {
                "k": k,
                "params": closed_form_params(PRESETS[size]),
                "peak_rss": peak,
                "jobs": int((result.events["event"] == "dispatch").sum()),
                "seconds": time.perf_counter() - start,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="20M", help="LM preset (default 20M)")
    ap.add_argument("--ks", default="4,16", help="worker counts, comma-separated (default 4,16)")
    ap.add_argument("--method", default="dn_dylu")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.size, args.child, args.method)
        return
    print(f"peak RSS of a short {args.method} run of the {args.size} LM vs (in-flight + 3) x (model + AdamW state) + 1 GiB")
    print(f"{'k':>3} {'params':>12} {'model+AdamW':>12} {'bound':>10} {'peak RSS':>10} {'peak/bound':>10} {'jobs':>5} {'time':>7}")
    failed = False
    for k in (int(x) for x in args.ks.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--size", args.size, "--method", args.method, "--child", str(k)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"k={k}: failed", file=sys.stderr)
            sys.exit(1)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        unit = 3 * 4 * r["params"]  # float32 parameters + two AdamW moments
        bound = (k + 3) * unit + GIB
        ratio = r["peak_rss"] / bound
        failed |= ratio >= 1
        print(
            f"{k:>3} {r['params']:>12,} {unit / 2**20:>10.0f}Mi {bound / GIB:>8.2f}Gi {r['peak_rss'] / GIB:>8.2f}Gi "
            f"{ratio:>10.2f} {r['jobs']:>5} {r['seconds']:>6.0f}s"
        )
    print("within the bound" if not failed else "OVER THE BOUND")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
