"""How far a live run is from the simulation of the same scenario.

Pure functions over two runs' event and metric tables:

- **order**: the share of arrivals (``complete`` events) that came from the
  same worker, back from a job that started from the same server version,
  at the same position as in the simulation; and the first divergence: the
  first arrival at which either that differs or the server's record so far
  does (the sequence of what it did, event by event: arrivals, syncs,
  drops, dispatches, a region server's pushes and merges). The record
  catches what the version cannot: HALoS's region servers apply arrivals
  without moving the central version, so two arrivals that the live server
  took as a tie but the simulation did not could send a worker off from its
  region's model after another worker's sync in one run and before it in
  the other, with the same versions on record. Up to the first divergence
  both runs dispatched the same jobs from the same inputs (job ids are
  given in dispatch order), so the models are the same; after it they are
  different runs.
- **time**: for the jobs before the first divergence, the error of each
  dispatch and arrival time (simulated seconds, live minus simulated);
  the error in the time to finish the budget.
- **jobs**: the share of the simulation's jobs that the live run also ran
  from the same inputs (id, worker, server version and shard it started
  from, steps), in any order: a synchronous round, or a HALoS region's
  server between pushes, does not depend on the order of its arrivals.
- **result**: the difference in the final eval metrics, and whether the
  final models are identical (they must be when the order matched).
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch


def arrival_order(events: pd.DataFrame) -> pd.DataFrame:
    """The arrivals at the server, in the order the run took them: (job, worker, dispatch_version, tau)."""
    done = events[events["event"] == "complete"]
    return done[["job", "worker", "dispatch_version", "tau"]].reset_index(drop=True)


def record(events: pd.DataFrame) -> list[tuple[Any, ...]]:
    """What the server did, in order, without the times: (event, worker, job, server) per row."""
    cols = [c for c in ("event", "worker", "job", "server") if c in events.columns]
    return list(events[cols].itertuples(index=False, name=None))


def record_divergence(sim_events: pd.DataFrame, live_events: pd.DataFrame) -> int | None:
    """The arrival (its index among ``complete`` events) at or before which the two records first differ."""
    s, l = record(sim_events), record(live_events)
    at = next((i for i, (a, b) in enumerate(zip(s, l)) if a != b), None)
    if at is None and len(s) == len(l):
        return None
    at = min(len(s), len(l)) if at is None else at
    return sum(1 for row in s[:at] if row[0] == "complete")


def compare(sim_events: pd.DataFrame, live_events: pd.DataFrame, sim_final: dict[str, Any],
            live_final: dict[str, Any], sim_seconds: float, live_seconds: float,
            sim_theta: torch.Tensor | None = None, live_theta: torch.Tensor | None = None) -> dict[str, Any]:
    """The numbers :mod:`sim.live.against` describes, as one flat dict."""
    s, l = arrival_order(sim_events), arrival_order(live_events)
    n = min(len(s), len(l))
    key = ["worker", "dispatch_version"]  # the same worker, back from a job that started from the same model
    same = (s[key].to_numpy()[:n] == l[key].to_numpy()[:n]).all(axis=1)
    first = next((i for i, ok in enumerate(same) if not ok), None)
    diverged = record_divergence(sim_events, live_events)
    if diverged is not None and (first is None or diverged < first):
        first = diverged
    matched = n if first is None else first
    out: dict[str, Any] = {
        "arrivals_sim": len(s), "arrivals_live": len(l),
        "in_order_share": float(same.sum()) / max(len(s), 1),
        "first_divergence": first,
        "matched_prefix": matched,
    }
    # the same job (id, worker, the model version and shard it started from, its steps) in both runs, in any order:
    # a synchronous round or a region's server does not depend on the order of arrivals between its syncs
    keyed = ["job", "worker", "dispatch_version", "shard", "steps"]
    if set(keyed) <= set(sim_events.columns) and set(keyed) <= set(live_events.columns):
        done_s = sim_events.loc[sim_events["event"] == "complete", keyed].itertuples(index=False)
        done_l = live_events.loc[live_events["event"] == "complete", keyed].itertuples(index=False)
        out["same_jobs_share"] = len(set(done_s) & set(done_l)) / max(len(s), 1)
    jobs = set(s["job"].iloc[:matched])
    errors = []
    for kind in ("dispatch", "complete"):
        a = sim_events[(sim_events["event"] == kind) & sim_events["job"].isin(jobs)].set_index("job")["tau"]
        b = live_events[(live_events["event"] == kind) & live_events["job"].isin(jobs)].set_index("job")["tau"]
        errors.append((b - a.reindex(b.index)).dropna())
    err = pd.concat(errors) if errors else pd.Series(dtype=float)
    out.update(
        event_error_mean_s=float(err.mean()) if len(err) else math.nan,
        event_error_abs_mean_s=float(err.abs().mean()) if len(err) else math.nan,
        event_error_abs_max_s=float(err.abs().max()) if len(err) else math.nan,
        finish_sim_s=sim_seconds, finish_live_s=live_seconds,
        finish_error=(live_seconds - sim_seconds) / sim_seconds if sim_seconds else math.nan,
    )
    for key in ("loss", "perplexity", "accuracy"):
        if key in sim_final and key in live_final:
            out[f"final_{key}_sim"], out[f"final_{key}_live"] = float(sim_final[key]), float(live_final[key])
    if sim_theta is not None and live_theta is not None:
        out["identical_model"] = bool(torch.equal(sim_theta, live_theta))
    return out


def describe(c: dict[str, Any]) -> list[str]:
    """The comparison in a few lines for a terminal."""
    div = "none" if c["first_divergence"] is None else f"at arrival {c['first_divergence']}"
    lines = [
        f"arrivals in the simulated order: {c['in_order_share']:.1%} ({c['arrivals_live']} live, "
        f"{c['arrivals_sim']} simulated); first divergence: {div}",
    ]
    if "same_jobs_share" in c:
        lines.append(f"the same jobs from the same inputs, in any order: {c['same_jobs_share']:.1%}")
    lines += [
        "event times before it: none to compare (the first arrival differs)" if not c["matched_prefix"] else
        f"event times before it: mean error {c['event_error_mean_s']:+.3f} s, mean |error| "
        f"{c['event_error_abs_mean_s']:.3f} s, max {c['event_error_abs_max_s']:.3f} s (simulated seconds)",
        f"time to finish: {c['finish_live_s']:.1f} s live, {c['finish_sim_s']:.1f} s simulated "
        f"({c['finish_error']:+.2%})",
    ]
    for key in ("perplexity", "loss", "accuracy"):
        if f"final_{key}_sim" in c:
            lines.append(f"final {key}: {c[f'final_{key}_live']:.6g} live, {c[f'final_{key}_sim']:.6g} simulated "
                         f"({c[f'final_{key}_live'] - c[f'final_{key}_sim']:+.3g})")
            break
    if "identical_model" in c:
        lines.append("final model: " + ("bit-identical to the simulation's" if c["identical_model"]
                                        else "differs from the simulation's"))
    return lines
