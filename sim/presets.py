"""Method presets: the paper's named methods as (schedule, outer update, fix, DyLU).

A scenario names a preset and may override any part of it; the resolved
scenario records the result, so a run folder always says exactly what ran.
``N: k`` means "the number of workers" and is filled in at build time.
"""
from __future__ import annotations

from typing import Any

NESTEROV = {"name": "nesterov", "lr": 0.7, "momentum": 0.9}

PRESETS: dict[str, dict[str, Any]] = {
    # One worker, k x batch: synchronous data-parallel SGD over the k devices.
    # Its inner AdamW state persists across rounds; rounds only pace the evals.
    "finetune_1w": {"schedule": "single", "outer": None, "fix": None, "dylu": False},
    # Algorithm 1: barrier, one Nesterov step on the average pseudo-gradient.
    "diloco": {"schedule": "sync", "outer": NESTEROV, "fix": None, "dylu": False},
    "diloco_sgd": {"schedule": "sync", "outer": {"name": "sgd", "lr": 0.7}, "fix": None, "dylu": False},
    # Algorithm 2 with each pseudo-gradient applied as it arrives.
    "async_diloco": {"schedule": "async", "outer": NESTEROV, "fix": None, "dylu": False},
    "async_sgd": {"schedule": "async", "outer": {"name": "sgd", "lr": 0.7}, "fix": None, "dylu": False},
    "async_sgdm": {"schedule": "async", "outer": {"name": "sgdm", "lr": 0.7, "momentum": 0.9}, "fix": None, "dylu": False},
    "async_adam": {"schedule": "async", "outer": {"name": "adam", "lr": 0.01}, "fix": None, "dylu": False},
    "async_poly": {"schedule": "async", "outer": NESTEROV, "fix": {"name": "poly", "exponent": 0.5}, "dylu": False},
    "async_polythres": {
        "schedule": "async",
        "outer": NESTEROV,
        "fix": {"name": "polythres", "exponent": 0.5, "threshold": 10},
        "dylu": False,
    },
    "async_delaycomp": {"schedule": "async", "outer": NESTEROV, "fix": {"name": "delay_comp", "lam": 0.5}, "dylu": False},
    "async_buffer": {"schedule": "async", "outer": {**NESTEROV, "name": "async_buffer", "N": "k"}, "fix": None, "dylu": False},
    "dn": {"schedule": "async", "outer": {**NESTEROV, "name": "delayed_nesterov", "N": "k", "c": 0.0}, "fix": None, "dylu": False},
    "dn_dylu": {"schedule": "async", "outer": {**NESTEROV, "name": "delayed_nesterov", "N": "k", "c": 0.0}, "fix": None, "dylu": True},
    # HALoS (Kim et al., ICML 2025, arXiv 2506.04531): a Delayed-Nesterov server per region (LPS) pushing every
    # K of its updates to a global DN server (GPS), workers at the fastest's pace (DyLU). The authors' public
    # example (utnslab/halos, examples/run_halos.sh): K 32; merge weight 0.25 on the *global* model (their
    # ps.py merge_model; its --model_merge_weight help says the reverse), so the LPS keeps alpha = 0.75 of its
    # own; DN lrs as their lr x buffer, the number their DN optimizer sees; workers keep their AdamW across
    # rounds (their worker.py) and DyLU rounds up (their common.py). Their example trains H = 8 local steps
    # (32 for their baselines): set schedule.H for that; here H is the scenario's, shared by every method.
    "halos": {
        "schedule": "halos",
        "outer": {"name": "delayed_nesterov", "lr": 0.3, "momentum": 0.5, "N": 2, "c": 0.0},
        "fix": None,
        "dylu": True,
        "dylu_rounding": "ceil",
        "inner_state": "keep",
        "hierarchy": {"K": 32, "alpha": 0.75,
                      "local_outer": {"name": "delayed_nesterov", "lr": 3.2, "momentum": 0.9, "N": 16, "c": 0.0}},
    },
    # Streaming DiLoCo (Douillard et al. 2025, arXiv 2501.18512): P fragments strided over layers, each synced
    # every H steps, H / P apart; 1 inner step of overlap and alpha 0.5 (their Fig. 8, 10); inner state kept.
    "streaming_diloco": {
        "schedule": "streaming",
        "outer": NESTEROV,
        "fix": None,
        "dylu": False,
        "streaming": {"fragments": 2, "overlap": 1, "alpha": 0.5, "inner_state": "keep"},
    },
    # DiLoCo with its outer step overlapped by the next round (Kale et al. 2025, arXiv 2502.12996): each worker
    # steps its own replica with its fresh pseudo-gradient standing in for its share (eager, Alg. 3), or with the
    # previous round's average (naive one-step delay, Alg. 2).
    "eager_diloco": {"schedule": "eager", "outer": NESTEROV, "fix": None, "dylu": False},
    "delayed_diloco": {"schedule": "delayed", "outer": NESTEROV, "fix": None, "dylu": False},
}

DESCRIPTIONS: dict[str, str] = {
    "finetune_1w": "1 worker, k x batch (sync data-parallel baseline)",
    "diloco": "sync DiLoCo: AdamW inner, Nesterov outer (Alg. 1)",
    "diloco_sgd": "sync DiLoCo with plain SGD outer (Fig. 6)",
    "async_diloco": "async DiLoCo: Nesterov outer on each arrival (Alg. 2)",
    "async_sgd": "async with plain SGD outer (Fig. 6)",
    "async_sgdm": "async with SGD-momentum outer (Fig. 5)",
    "async_adam": "async with Adam outer (Fig. 5)",
    "async_poly": "async DiLoCo + Poly staleness weight (1+s)^-0.5",
    "async_polythres": "async DiLoCo + Poly, drop staleness > 10",
    "async_delaycomp": "async DiLoCo + delay compensation on pseudo-gradients",
    "async_buffer": "async buffer (FedBuff-like): Nesterov on the average every N",
    "dn": "Delayed Nesterov (Alg. 3)",
    "dn_dylu": "Delayed Nesterov + Dynamic Local Updates (Eq. 6) - the paper's method",
    "halos": "HALoS: DN server per region + global DN server (Kim et al. 2025)",
    "streaming_diloco": "Streaming DiLoCo: fragments synced in turn, tau-step overlap (Douillard et al. 2025)",
    "eager_diloco": "DiLoCo with eager updates: outer step overlapped, own share fresh (Kale et al. 2025)",
    "delayed_diloco": "DiLoCo with the outer step one round late (Kale et al. 2025, Alg. 2)",
}
