"""The GPU path: run hashes twice on the device, and ms per local step serial vs stacked (issue 25).

One prepared script for a lent GPU (about 10 minutes of device time): the
20M preset on the committed offline corpus (the device machine reaches no
network), no pretraining, on CUDA with deterministic algorithms and the
cuBLAS workspace setting (trainers/lm.py sets both):

1. ``simulate`` of DN + DyLU at k = 4 for ``--steps`` local steps, twice:
   the two run hashes must be equal;
2. ms per local step of one job at a time (``local_train``) and of k jobs
   stacked (``local_train_stacked``), k = 4 and 16, for the 20M preset and
   the micro LM; the first call of each shape is a warm-up, not timed;
3. the same steps per second on one CPU core for the 20M preset, so the GPU
   row reads as "x one core" (the issue's target: >= 10x).

Without CUDA it runs the same code on the CPU at small sizes (``--device
cpu``), which is how tests/test_benchmarks.py keeps it working. The lines
to paste into benchmarks/RESULTS.md are printed at the end, with the card's
name.

    .venv/bin/python benchmarks/gpu.py                      # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --device cpu --quick # the CPU fallback
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, emit, header

from sim import load_scenario, simulate
from sim.scenario import Scenario
from sim.trainer_factory import build_trainer
from trainers.base import JobSpec
from trainers.stacked import StackedJob


def scenario(size: str, device: str, k: int, steps: int, H: int, stack: int = 1) -> Scenario:
    base = load_scenario(ROOT / "scenarios" / "lm_20M_k4.yaml")
    overrides = {
        # micro_batch_size: 32 sequences per forward pass, shared by a stack's jobs (the 20M's logits are 1 GB each)
        "trainer.config": {"size": size, "pretrain_steps": 0, "device": device, "data": {"corpus": "shakespeare"},
                           **({"micro_batch_size": 32} if size == "20M" else {})},
        "workers.k": k, "schedule.H": H, "schedule.t_max": steps, "lr.warmup": 0, "eval.every": 10**9,
        "compute.stack": stack,
    }
    return base.with_overrides(overrides)  # every size with its preset's own batch


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ms_per_step(sc: Scenario, stacked: bool, rounds: int) -> float:
    """Milliseconds per local step of k jobs of H steps each, one at a time or stacked (after one warm-up)."""
    trainer = build_trainer(sc)
    theta = trainer.init_params()
    H, k = sc.schedule.H, sc.workers.k
    jobs = [StackedJob(theta, JobSpec(worker=w, shard=w, lrs=(sc.lr.max,) * H, data_offset=0)) for w in range(k)]

    def once() -> None:
        if stacked:
            trainer.local_train_stacked(jobs)
        else:
            for job in jobs:
                trainer.local_train(job.theta, job.spec)

    device = sc.trainer.config["device"]
    once()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        once()
    synchronize(device)
    return (time.perf_counter() - start) / (rounds * H * k) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--quick", action="store_true", help="small sizes and budgets (the CPU fallback's test)")
    ap.add_argument("--steps", type=int, default=400, help="local steps of each determinism run")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    card = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    header(f"GPU path on {card}")
    big, H, rounds, steps = ("20M", 10, 2, args.steps) if not args.quick else ("micro", 4, 1, 32)
    ks = (4, 16) if not args.quick else (4,)

    hashes = [simulate(scenario(big, device, 4, steps, H)).run_hash for _ in range(2)]
    same = hashes[0] == hashes[1]
    print(f"{big} DN + DyLU, k = 4, {steps} local steps on {card}: run hashes {hashes[0][:12]} / {hashes[1][:12]}"
          f" -> {'identical' if same else 'DIFFERENT'}", flush=True)
    emit(f"gpu: {big} run hash twice on {card}", 1.0 if same else 0.0, 1.0, "identical", higher_is_better=True)

    rows = []
    for size in dict.fromkeys((big, "micro")):
        for k in ks:
            sc = scenario(size, device, k, steps, H)
            serial, stacked = ms_per_step(sc, False, rounds), ms_per_step(sc, True, rounds)
            rows.append((size, k, serial, stacked))
            print(f"{size}, k = {k}, {card}: {serial:.2f} ms per local step one at a time, {stacked:.2f} stacked "
                  f"({serial / stacked:.2f}x)", flush=True)
    if device == "cuda":
        torch.set_num_threads(1)
        cpu_ms = ms_per_step(scenario(big, "cpu", 4, steps, H), False, 1)
        speedup = cpu_ms / rows[0][2]
        print(f"{big} on one CPU core: {cpu_ms:.1f} ms per local step; {card} one at a time is {speedup:.1f}x", flush=True)
        emit(f"gpu: {big} steps per second, {card} / one CPU core", round(speedup, 2), 10.0, "x", higher_is_better=True)

    print("\nFor benchmarks/RESULTS.md:")
    print(f"| model, k | {card}: ms per local step, one at a time | stacked | stacked speed-up |")
    print("|---|---|---|---|")
    for size, k, serial, stacked in rows:
        print(f"| {size}, k = {k} | {serial:.2f} | {stacked:.2f} | {serial / stacked:.2f}x |")
    print(f"\nrun hash twice ({big}, {steps} local steps): {'identical' if same else 'different'}")


if __name__ == "__main__":
    main()
