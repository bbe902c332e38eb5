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

from sim.compression import payload_bytes
from sim.scenario import Scenario

TRAFFIC_COLUMNS = ("gb_sent", "gb_inter_region")


def crosses(a: str | None, b: str | None) -> bool:
    """A transfer between regions ``a`` and ``b`` is inter-region: both named, and different."""
    return a is not None and b is not None and a != b


def run_traffic(events: pd.DataFrame, scenario: Scenario, num_params: int) -> dict[str, float]:
    """GB (1e9 bytes) sent in all and across regions by one run."""
    net = scenario.network
    if net is None or scenario.method.schedule == "single":
        return dict.fromkeys(TRAFFIC_COLUMNS, 0.0)
    up, down = payload_bytes(net, num_params)
    region = [scenario.workers.device(w).region for w in range(scenario.workers.k)]
    local = "server" in events.columns  # HALoS: workers talk to their own region's server, never across
    jobs = events[events["job"] >= 0]
    sent = inter = 0
    for kind, size in (("dispatch", down), ("complete", up)):
        ends = [region[w] for w in jobs.loc[jobs["event"] == kind, "worker"]]
        sent += len(ends) * size
        inter += 0 if local else sum(crosses(r, net.server_region) for r in ends) * size
    if local:
        lps_region = {int(s): region[int(w)] for s, w in jobs.groupby("server")["worker"].first().items()}
        servers = events[events["job"] < 0]
        for kind, size in (("push", up), ("global", down)):  # each global update sends the model back
            ends = [lps_region[int(s)] for s in servers.loc[servers["event"] == kind, "server"]]
            sent += len(ends) * size
            inter += sum(crosses(r, net.server_region) for r in ends) * size
    return {"gb_sent": sent / 1e9, "gb_inter_region": inter / 1e9}
