"""Bytes on the wire: how much a run sent, and how much of it crossed between regions.

Counted from the event log, with the sizes the planner uses
(:func:`sim.compression.wire_bytes`: block scales included):

- a dispatched round downloads the model (``network.model_dtype``), a
  completed round uploads its pseudo-gradient (``network.dtype``); a round
  lost to churn or discarded at the end uploaded nothing;
- with a server per region (HALoS) those cross the region's path to itself,
  and each push (``dtype``) and global model sent back (``model_dtype``)
  crosses the path between the region and the server's region (a model
  is sent back after every global update);
- schedules that move their own transfers (Streaming DiLoCo, eager
  updates) record each one with its size (``upload`` / ``download`` rows):
  those are summed, and each crosses its worker's path to the server;
- otherwise every round crosses the path between its worker's region and
  the server's.

Peak rates (:func:`peak_rates`): a transfer occupies its path at its
average rate (bytes / time from leaving to landing, queueing included); the
server carries every transfer at once (in and out), a worker's link its
own, each direction apart (links are full duplex). The largest single upload says how much one sync asks of a worker's
link at a time: Streaming DiLoCo's point is that it sends 1/P of the model
per sync.

A transfer is *inter-region* when its two ends are named regions that
differ. The 1-worker baseline sends nothing.
"""
from __future__ import annotations

import pandas as pd

from sim.compression import payload_bytes
from sim.scenario import Scenario

TRAFFIC_COLUMNS = ("gb_sent", "gb_inter_region")
PEAK_COLUMNS = ("peak_server_gbps", "peak_worker_gbps", "largest_upload_mb")


def crosses(a: str | None, b: str | None) -> bool:
    """A transfer between regions ``a`` and ``b`` is inter-region: both named, and different."""
    return a is not None and b is not None and a != b


def run_traffic(events: pd.DataFrame, scenario: Scenario, num_params: int) -> dict[str, float]:
    """GB (1e9 bytes) sent in all and across regions by one run: its worker transfers, plus HALoS's pushes."""
    net = scenario.network
    if net is None or scenario.method.schedule == "single":
        return dict.fromkeys(TRAFFIC_COLUMNS, 0.0)
    region = [scenario.workers.device(w).region for w in range(scenario.workers.k)]
    t = transfers(events, scenario, num_params)
    local = "server" in events.columns  # HALoS: workers talk to their own region's server, never across
    sent = float(t["bytes"].sum())
    inter = 0.0 if local else float(sum(b for w, b in zip(t["worker"], t["bytes"]) if crosses(region[w], net.server_region)))
    if local:
        up, down = payload_bytes(net, num_params)
        jobs = events[events["job"] >= 0]
        lps_region = {int(s): region[int(w)] for s, w in jobs.groupby("server")["worker"].first().items()}
        servers = events[events["job"] < 0]
        for kind, size in (("push", up), ("global", down)):  # each global update sends the model back
            ends = [lps_region[int(s)] for s in servers.loc[servers["event"] == kind, "server"]]
            sent += len(ends) * size
            inter += sum(crosses(r, net.server_region) for r in ends) * size
    return {"gb_sent": sent / 1e9, "gb_inter_region": inter / 1e9}


def transfers(events: pd.DataFrame, scenario: Scenario, num_params: int) -> pd.DataFrame:
    """Every worker <-> server transfer of a run: worker, kind (upload / download), start, end (s), bytes.

    Recorded rows where the schedule moved its own transfers; else one
    download per dispatched round and one upload per completed one (a run
    whose links take no time has no comm columns: its transfers last 0 s).
    """
    net = scenario.network
    columns = ["worker", "kind", "start", "end", "bytes"]
    if net is None or scenario.method.schedule == "single":
        return pd.DataFrame(columns=columns)
    if "bytes" in events.columns:
        rows = events[events["event"].isin(["upload", "download"])]
        return pd.DataFrame({"worker": rows["worker"], "kind": rows["event"], "start": rows["sent"], "end": rows["tau"],
                             "bytes": rows["bytes"]})
    up, down = payload_bytes(net, num_params)
    jobs = events[events["job"] >= 0]
    dispatched = jobs[jobs["event"] == "dispatch"]
    done = jobs[jobs["event"] == "complete"]
    timed = "train_start" in events.columns
    return pd.concat([
        pd.DataFrame({"worker": dispatched["worker"], "kind": "download", "start": dispatched["tau"],
                      "end": dispatched["train_start" if timed else "tau"], "bytes": down}),
        pd.DataFrame({"worker": done["worker"], "kind": "upload", "start": done["upload_start" if timed else "tau"],
                      "end": done["tau"], "bytes": up}),
    ], ignore_index=True)[columns]


def _peak(starts: pd.Series, ends: pd.Series, gbps: pd.Series) -> float:
    """The largest sum of the rates of transfers on the wire at one instant."""
    changes = sorted([(t, r) for t, r in zip(ends, -gbps)] + [(t, r) for t, r in zip(starts, gbps)])  # ends first
    level = peak = 0.0
    for _, rate in changes:
        level += rate
        peak = max(peak, level)
    return peak


def peak_rates(events: pd.DataFrame, scenario: Scenario, num_params: int) -> dict[str, float]:
    """Peak Gbit/s at the server and on the busiest worker's link (one direction), and the largest single upload (MB).

    HALoS's worker transfers stay in their region and its pushes are not
    counted here (its region servers' links are its own).
    """
    t = transfers(events, scenario, num_params)
    t = t[t["end"] > t["start"]]
    if not len(t):
        return dict.fromkeys(PEAK_COLUMNS, 0.0)
    gbps = t["bytes"] * 8 / (t["end"] - t["start"]) / 1e9
    worker = max(_peak(g["start"], g["end"], gbps[g.index]) for _, g in t.groupby(["worker", "kind"]))
    return {"peak_server_gbps": _peak(t["start"], t["end"], gbps), "peak_worker_gbps": worker,
            "largest_upload_mb": float(t.loc[t["kind"] == "upload", "bytes"].max()) / 1e6}
