"""Where a stacked step of the micro LM spends its time (issue 25: "the step itself at its fastest, measured").

One stacked pass of k DiLoCo jobs of H local steps each, eager, one core,
under ``torch.profiler``; the self CPU time is grouped by what the operators
do (batched matmuls, the loss, attention, copies, the fused AdamW, zero
fills, the rest). Beside it, one job's serial step time, and the product the
logits need (k x (B*T) x d x vocab) timed batched, as k separate products
and with its second operand laid out contiguous: whether stacking changes
the arithmetic's rate or only the per-operation overhead.

    .venv/bin/python benchmarks/stacked_profile.py
    .venv/bin/python benchmarks/stacked_profile.py --k 4 --steps 20
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from common import cpu_timed, header, torch_threads
from torch.profiler import ProfilerActivity, profile

from sim import load_scenario
from sim.trainer_factory import build_trainer
from trainers.base import JobSpec
from trainers.stacked import StackedJob

#: operator-name prefixes per group, in the order they are tried; what matches none is "the rest"
GROUPS = {
    "batched matmuls": ("aten::bmm", "aten::mm", "aten::addmm"),
    "the loss (log-softmax, NLL)": ("aten::_log_softmax", "aten::nll_loss", "aten::log_softmax"),
    "attention": ("aten::_scaled_dot_product", "aten::scaled_dot_product"),
    "zero fills": ("aten::fill_", "aten::zero_"),
    "copies": ("aten::copy_",),
    "fused AdamW": ("aten::_fused_adamw",),
}


def group_of(name: str) -> str:
    return next((group for group, prefixes in GROUPS.items() if name.startswith(prefixes)), "the rest")


def per_call_ms(fn: Callable[[], object], n: int = 100) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=4, help="jobs in the stack")
    ap.add_argument("--steps", type=int, default=20, help="local steps per job")
    args = ap.parse_args()
    header("Where a stacked step of the micro LM spends its time")
    with torch_threads(1):
        sc = load_scenario("scenarios/lm_micro_paper.yaml", method="diloco", overrides={"workers.k": args.k})
        trainer = build_trainer(sc)
        theta = trainer.init_params()
        jobs = [StackedJob(theta, JobSpec(worker=w, shard=w % len(trainer.shard_sizes()), lrs=(sc.lr.max,) * args.steps,
                                          data_offset=0)) for w in range(args.k)]
        trainer.local_train_stacked(jobs)  # warm-up
        stacked = min(cpu_timed(lambda: trainer.local_train_stacked(jobs))[1] for _ in range(3)) / args.steps
        serial = min(cpu_timed(lambda: trainer.local_train(theta, jobs[0].spec))[1] for _ in range(3)) / args.steps
        print(f"stacked step of {args.k} jobs {stacked * 1e3:.2f} ms, serial step {serial * 1e3:.2f} ms: "
              f"{args.k * serial / stacked:.2f}x", flush=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.local_train_stacked(jobs)
        totals: dict[str, float] = {}
        for event in prof.key_averages():
            totals[group_of(event.key)] = totals.get(group_of(event.key), 0.0) + event.self_cpu_time_total
        whole = sum(totals.values())
        for group, micros in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {group}: {100 * micros / whole:.0f}%", flush=True)

        arch = trainer.arch
        rows = arch.batch_size * arch.seq_len
        x, embed = torch.randn(args.k, rows, arch.d_model), torch.randn(args.k, arch.vocab_size, arch.d_model)
        transposed = embed.transpose(1, 2)
        contiguous = transposed.contiguous()
        shape = f"{args.k} x {rows} x {arch.d_model} x {arch.vocab_size}"
        print(f"logits product {shape}: batched {per_call_ms(lambda: torch.bmm(x, transposed)):.2f} ms, "
              f"{args.k} separate {per_call_ms(lambda: [torch.mm(x[i], transposed[i]) for i in range(args.k)]):.2f} ms, "
              f"contiguous operand {per_call_ms(lambda: torch.bmm(x, contiguous)):.2f} ms", flush=True)


if __name__ == "__main__":
    main()
