"""Export a run's event log as Chrome / Perfetto trace JSON.

One process ("workers") with one track per worker showing each local round
as a complete event (split into model download, training and upload when
the scenario models communication; lost rounds and rejoins when it models
churn), and a "server" track with an instant per sync (HALoS: a track per
region's server with its syncs, its pushes to the global server and the
global model coming back, and the global server's updates on its own;
Streaming DiLoCo and eager updates: an uplink and a downlink track per
worker, whose transfers run while the worker's own track trains). Open
the file at https://ui.perfetto.dev or chrome://tracing. Timestamps are
simulated microseconds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from sim.outputs import atomic_output
from sim.records import server_round_trips, worker_intervals

WORKERS_PID, SERVER_PID = 1, 0
#: Streaming DiLoCo / eager: worker w's uplink and downlink tracks (transfers overlap its training)
UPLINK_TID, DOWNLINK_TID = 10_000, 20_000


def trace_events(events: pd.DataFrame) -> list[dict[str, Any]]:
    us = 1e6
    out: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": SERVER_PID, "tid": 0, "ts": 0, "args": {"name": "server"}},
        {"ph": "M", "name": "process_name", "pid": WORKERS_PID, "tid": 0, "ts": 0, "args": {"name": "workers"}},
        {"ph": "M", "name": "thread_name", "pid": SERVER_PID, "tid": 0, "ts": 0, "args": {"name": "server"}},
    ]
    hierarchical = "server" in events.columns  # HALoS: one track per region server (LPS), the GPS on "server"
    if hierarchical:
        out[2]["args"]["name"] = "global server (GPS)"
        for r in sorted(events.loc[events["server"] >= 0, "server"].unique()):
            out.append({"ph": "M", "name": "thread_name", "pid": SERVER_PID, "tid": int(r) + 1, "ts": 0,
                        "args": {"name": f"LPS {r}"}})
    for w in sorted(events.loc[events["worker"] >= 0, "worker"].unique()):
        out.append({"ph": "M", "name": "thread_name", "pid": WORKERS_PID, "tid": int(w), "ts": 0, "args": {"name": f"worker {w}"}})
    def span(name: str, cat: str, worker: int, start: float, end: float, args: dict[str, Any]) -> None:
        if end > start:
            out.append({"ph": "X", "name": name, "cat": cat, "pid": WORKERS_PID, "tid": worker,
                        "ts": start * us, "dur": (end - start) * us, "args": args})

    for j in worker_intervals(events).itertuples():
        if pd.isna(j.end):  # still running when the budget was reached
            continue
        w = int(j.worker)
        args = {"job": int(j.job), "shard": int(j.shard), "steps": int(j.steps), "dispatch_version": int(j.dispatch_version)}
        if j.lost:
            span(f"lost: device down ({j.steps} steps)", "lost", w, j.start, j.end, args)
            continue
        span("download model", "comm", w, j.start, j.train_start, args)
        span(f"train shard {j.shard} ({j.steps} steps)", "train", w, j.train_start, j.upload_start,
             {**args, "train_loss": float(j.train_loss)})
        span("upload pseudo-gradient", "comm", w, j.upload_start, j.end, args)
    if hierarchical:
        out.extend(server_spans(events))
    if "sent" in events.columns:
        out.extend(link_spans(events))
    for r in events.itertuples():
        if r.event in ("sync", "drop", "discard"):
            out.append({
                "ph": "i", "s": "t", "name": f"{r.event} w{r.worker}", "cat": r.event,
                "pid": SERVER_PID, "tid": int(r.server) + 1 if hierarchical else 0, "ts": r.tau * us,
                "args": {"job": int(r.job), "worker": int(r.worker), "staleness": int(r.staleness),
                         "server_version": int(r.server_version), "t_local": int(r.t_local)},
            })
        elif r.event == "rejoin":
            out.append({"ph": "i", "s": "t", "name": "rejoin", "cat": "churn", "pid": WORKERS_PID, "tid": int(r.worker),
                        "ts": r.tau * us, "args": {"server_version": int(r.server_version)}})
    return out


def link_spans(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Streaming DiLoCo / eager: each upload and download on the worker's own link track, each merge an instant."""
    us, out = 1e6, []
    for w in sorted(events.loc[events["event"].isin(["upload", "download"]), "worker"].unique()):
        for tid, name in ((UPLINK_TID, "uplink"), (DOWNLINK_TID, "downlink")):
            out.append({"ph": "M", "name": "thread_name", "pid": WORKERS_PID, "tid": tid + int(w), "ts": 0,
                        "args": {"name": f"worker {w} {name}"}})
    for r in events[events["event"].isin(["upload", "download", "merge"])].itertuples():
        what = "model" if r.fragment == -1 else "average" if r.fragment == -2 else f"fragment {r.fragment}"
        if r.event == "merge":
            out.append({"ph": "i", "s": "t", "name": f"merge {what}", "cat": "merge", "pid": WORKERS_PID,
                        "tid": int(r.worker), "ts": r.tau * us})
            continue
        tid = (UPLINK_TID if r.event == "upload" else DOWNLINK_TID) + int(r.worker)
        out.append({"ph": "X", "name": f"{r.event} {what}", "cat": "comm", "pid": WORKERS_PID, "tid": tid,
                    "ts": r.sent * us, "dur": (r.tau - r.sent) * us, "args": {"bytes": int(r.bytes), "job": int(r.job)}})
    return out


def server_spans(events: pd.DataFrame) -> list[dict[str, Any]]:
    """HALoS: each LPS's push on its way to the GPS and the global model on its way back, and each global update."""
    us, out = 1e6, []
    for trip in server_round_trips(events).itertuples():
        tid = trip.server + 1
        if pd.isna(trip.applied):  # the push was still on its way when the run ended
            continue
        out.append({"ph": "X", "name": "push to GPS", "cat": "comm", "pid": SERVER_PID, "tid": tid,
                    "ts": trip.push * us, "dur": (trip.applied - trip.push) * us})
        out.append({"ph": "i", "s": "t", "name": f"global update (LPS {trip.server})", "cat": "global",
                    "pid": SERVER_PID, "tid": 0, "ts": trip.applied * us})
        if pd.notna(trip.merge):
            out.append({"ph": "X", "name": "global model back", "cat": "comm", "pid": SERVER_PID, "tid": tid,
                        "ts": trip.applied * us, "dur": (trip.merge - trip.applied) * us})
    return out


def write_trace(run_folder: Path, out: Path | None = None) -> Path:
    """Write the trace whole or not at all; it opens with asyncsim's mark, so a later ``trace --out`` may replace it.

    The mark (``otherData.made_by``, first in the file) is what
    :func:`sim.outputs.made_by_asyncsim` reads; viewers ignore ``otherData``.
    """
    run_folder = Path(run_folder)
    events = pd.read_parquet(run_folder / "events.parquet")
    out = out or run_folder / "trace.json"
    payload = {"otherData": {"made_by": "asyncsim trace", "run": run_folder.name, "time": "simulated"},
               "traceEvents": trace_events(events), "displayTimeUnit": "ms"}
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(payload), encoding="utf-8")
    return out
