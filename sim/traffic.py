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
- otherwise every round crosses the path between its worker's region and
  the server's.

A transfer is *inter-region* when its two ends are named regions that
differ. The 1-worker baseline sends nothing.
"""
from __future__ import annotations

import pandas as pd

from sim.compression import wire_bytes
from sim.scenario import Scenario

TRAFFIC_COLUMNS = ("gb_sent", "gb_inter_region")


def run_traffic(events: pd.DataFrame, scenario: Scenario, num_params: int) -> dict[str, float]:
    """GB (1e9 bytes) sent in all and across regions by one run."""
    net = scenario.network
    if net is None or scenario.method.schedule == "single":
        return dict.fromkeys(TRAFFIC_COLUMNS, 0.0)
    up, down = wire_bytes(num_params, net.dtype, net.block), wire_bytes(num_params, net.model_dtype, net.block)
    region = [scenario.workers.device(w).region for w in range(scenario.workers.k)]
    local = "server" in events.columns  # HALoS: workers talk to their own region's server

    def crosses(a: str | None) -> bool:
        far_end = a if local else net.server_region
        return a is not None and far_end is not None and a != far_end

    jobs = events[events["job"] >= 0]
    downloads = jobs.loc[jobs["event"] == "dispatch", "worker"].map(lambda w: region[w])
    uploads = jobs.loc[jobs["event"] == "complete", "worker"].map(lambda w: region[w])
    sent = len(downloads) * down + len(uploads) * up
    inter = downloads.map(crosses).sum() * down + uploads.map(crosses).sum() * up
    if local:
        servers = events[events["job"] < 0]
        lps_region = {int(s): region[int(w)] for s, w in
                      jobs.loc[jobs["event"] == "dispatch"].groupby("server")["worker"].first().items()}
        for kind, size in (("push", up), ("global", down)):  # each global update sends the model back
            ends = servers.loc[servers["event"] == kind, "server"].map(lambda s: lps_region[int(s)])
            sent += len(ends) * size
            inter += sum(size for r in ends if r is not None and net.server_region is not None and r != net.server_region)
    return {"gb_sent": sent / 1e9, "gb_inter_region": float(inter) / 1e9}
