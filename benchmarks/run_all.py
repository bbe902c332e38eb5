"""Run every benchmark and print one table of measured vs target.

Each benchmark runs in its own process (torch thread settings, peak memory
and imports stay separate), its output is shown as it comes, and the rows it
reports are collected into the summary at the end. ``memory_lm.py`` (owned
by the LM trainer) runs too when it exists.

    make bench                                   # = .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick              # small sizes, a couple of minutes
    .venv/bin/python benchmarks/run_all.py --only engine overhead --profile

Missed targets are findings, not errors: the exit status is 1 only when a
benchmark crashed.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from common import RESULT_TAG, machine_line

HERE = Path(__file__).resolve().parent

# name -> (script, full-size arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "overhead": ("overhead.py", [], ["--toy-t-max", "1600", "--lm-t-max", "40", "--toy-repeat", "1"]),
    "parallel": ("parallel.py", [], ["--t-max", "60"]),
    "engine": ("engine_throughput.py", [], ["--jobs", "2000", "--simpy-events", "100000", "--profile-jobs", "1000", "--repeat", "1"]),
    "memory": ("memory_lm.py", [], ["--size", "tiny", "--ks", "4"]),
    "cluster": ("cluster.py", [], ["--runs", "2", "--toy-t-max", "800", "--lm-t-max", "40", "--skip-projection"]),
    "store": ("store_check.py", [], ["--t-max", "8000"]),
}

# memory_lm.py's table rows: k, params, model+AdamW (Mi), bound (Gi), peak RSS (Gi), peak/bound, jobs, time
MEMORY_ROW = re.compile(r"^\s*(\d+)\s+[\d,]+\s+\S+Mi\s+([\d.]+)Gi\s+([\d.]+)Gi\s+([\d.]+)\s+\d+\s+\S+s\s*$")


def run(name: str, args: list[str]) -> tuple[int, list[dict]]:
    """Run one benchmark script, echoing its output; its exit status and result rows."""
    script = HERE / BENCHMARKS[name][0]
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    rows: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(RESULT_TAG):
            rows.append(json.loads(line[len(RESULT_TAG) :]))
            continue
        print(line, end="", flush=True)
        if name == "memory" and (m := MEMORY_ROW.match(line)):
            k, bound, peak, ratio = m.groups()
            rows.append(
                {
                    "name": f"memory lm k={k}: peak RSS / bound ({peak} / {bound} GiB)",
                    "measured": float(ratio),
                    "target": 1.0,
                    "unit": "x",
                    "higher_is_better": False,
                    "ok": float(ratio) < 1.0,
                    "note": "",
                }
            )
    return proc.wait(), rows


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bool":
        return "yes" if value >= 1 else "no"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}".rstrip()


def summary(rows: list[dict]) -> None:
    print(f"\n== summary ({machine_line()}) ==")
    width = max([len(r["name"]) for r in rows] + [9])
    print(f"{'benchmark':<{width}}  {'measured':>16}  {'target':>18}  {'met':>4}")
    for r in rows:
        if r["target"] is None:
            target = "-"
        elif r["unit"] == "bool":
            target = fmt(r["target"], "bool")
        else:
            target = (">= " if r["higher_is_better"] else "<= ") + fmt(r["target"], r["unit"])
        met = {True: "yes", False: "NO", None: "-"}[r["ok"]]
        note = f"  ({r['note']})" if r.get("note") else ""
        print(f"{r['name']:<{width}}  {fmt(r['measured'], r['unit']):>16}  {target:>18}  {met:>4}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that everything runs, numbers are not meaningful")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    ap.add_argument("--profile", action="store_true", help="also profile simulate() in the overhead benchmark")
    args = ap.parse_args()
    print(f"asyncsim benchmarks: {machine_line()}")
    rows: list[dict] = []
    crashed = False
    start = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        script, full, quick = BENCHMARKS[name]
        if not (HERE / script).exists():
            print(f"\nSKIPPED {name}: benchmarks/{script} does not exist")
            rows.append({"name": name, "measured": None, "target": None, "unit": "", "higher_is_better": True, "ok": None, "note": f"skipped: no {script}"})
            continue
        extra = (quick if args.quick else full) + (["--profile"] if args.profile and name == "overhead" else [])
        code, found = run(name, extra)
        rows += found
        if code != 0 and not (name == "memory" and found):  # memory_lm exits 1 when over its bound
            crashed = True
            rows.append({"name": f"{name}: exit status {code}", "measured": None, "target": None, "unit": "", "higher_is_better": True, "ok": False, "note": "crashed"})
    summary(rows)
    print(f"total {time.perf_counter() - start:.0f} s")
    sys.exit(1 if crashed else 0)


if __name__ == "__main__":
    main()
