"""Export a run's event log as Chrome / Perfetto trace JSON.

One process ("workers") with one track per worker showing each local round
as a complete event, and a "server" track with an instant per sync. Open
the file at https://ui.perfetto.dev or chrome://tracing. Timestamps are
simulated microseconds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

WORKERS_PID, SERVER_PID = 1, 0


def trace_events(events: pd.DataFrame) -> list[dict[str, Any]]:
    us = 1e6
    out: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": SERVER_PID, "tid": 0, "ts": 0, "args": {"name": "server"}},
        {"ph": "M", "name": "process_name", "pid": WORKERS_PID, "tid": 0, "ts": 0, "args": {"name": "workers"}},
        {"ph": "M", "name": "thread_name", "pid": SERVER_PID, "tid": 0, "ts": 0, "args": {"name": "server"}},
    ]
    for w in sorted(events["worker"].unique()):
        out.append({"ph": "M", "name": "thread_name", "pid": WORKERS_PID, "tid": int(w), "ts": 0, "args": {"name": f"worker {w}"}})
    dispatched: dict[int, Any] = {}
    for r in events.itertuples():
        if r.event == "dispatch":
            dispatched[r.job] = r
        elif r.event == "complete":
            d = dispatched[r.job]
            out.append({
                "ph": "X", "name": f"train shard {r.shard} ({r.steps} steps)", "cat": "train",
                "pid": WORKERS_PID, "tid": int(r.worker), "ts": d.tau * us, "dur": (r.tau - d.tau) * us,
                "args": {"job": int(r.job), "shard": int(r.shard), "steps": int(r.steps),
                         "dispatch_version": int(r.dispatch_version), "train_loss": float(r.train_loss)},
            })
        elif r.event in ("sync", "drop", "discard"):
            out.append({
                "ph": "i", "s": "t", "name": f"{r.event} w{r.worker}", "cat": r.event,
                "pid": SERVER_PID, "tid": 0, "ts": r.tau * us,
                "args": {"job": int(r.job), "worker": int(r.worker), "staleness": int(r.staleness),
                         "server_version": int(r.server_version), "t_local": int(r.t_local)},
            })
    return out


def write_trace(run_folder: Path, out: Path | None = None) -> Path:
    run_folder = Path(run_folder)
    events = pd.read_parquet(run_folder / "events.parquet")
    out = out or run_folder / "trace.json"
    payload = {"traceEvents": trace_events(events), "displayTimeUnit": "ms",
               "otherData": {"run": run_folder.name, "time": "simulated"}}
    out.write_text(json.dumps(payload), encoding="utf-8")
    return out
