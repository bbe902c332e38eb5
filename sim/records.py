"""Event log and metric curves: collected as plain columns, written once, hashed.

Appending to Python lists per event and building DataFrames at the end keeps
the per-event cost tiny (no pandas appends in the hot loop). The run hash is
sha256 over a canonical CSV rendering (floats at 17 significant digits, so
it is exact), hence identical bytes in, identical hash out.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sim.diagnostics import DIAGNOSTIC_COLUMNS
from sim.outputs import check_run_destination, writing

EVENT_COLUMNS = (
    "event",  # dispatch | complete | sync | drop | discard | lost | rejoin (| push | global | merge: HALoS;
    # | upload | download | merge: TRANSFER_COLUMNS)
    "job",
    "worker",
    "shard",
    "steps",
    "tau",  # simulated seconds
    "server_version",  # server updates applied, this event's own included (a sync row counts its update)
    "dispatch_version",  # server version the job started from
    "staleness",  # at sync: updates applied between the job's dispatch and this sync (the version before it
    # minus dispatch_version, so server_version - dispatch_version - 1 on an applied sync row), else -1
    "t_local",  # total synced local steps after this event
    "train_loss",  # mean inner loss of the job (complete events), else NaN
)
#: added when the scenario models communication or churn (absent otherwise, so old run hashes hold)
COMM_COLUMNS = (
    "train_start",  # the job's model download is done and training starts
    "upload_start",  # training is done and the upload starts (tau of 'complete' is its arrival)
)
#: added for schedules with a server per region (HALoS): the region server (LPS) an event concerns. Server
#: events (push: an LPS sends its change, global: the global server applies it, merge: the LPS takes the
#: global model) have job and worker -1.
SERVER_COLUMNS = ("server",)
#: added for schedules that move their own transfers while workers train (Streaming DiLoCo, eager updates):
#: ``upload`` rows (tau: at the server) and ``download`` rows (tau: at the worker) with the part of the
#: model they carry (``fragment``, -1: all of it), their size, and when they were ``sent``; ``merge`` rows
#: when a worker takes a fragment in. Other events have fragment -1, bytes 0, sent NaN.
TRANSFER_COLUMNS = ("fragment", "bytes", "sent")
#: DIAGNOSTIC_COLUMNS (sim/diagnostics.py) are added when ``eval.diagnostics`` is on: on sync rows, NaN elsewhere


class Recorder:
    """Collects events and metric rows during a simulation."""

    def __init__(self, method: str, seed: int, comm_columns: bool = False, server_column: bool = False,
                 transfer_columns: bool = False, diagnostic_columns: bool = False):
        self.method, self.seed = method, seed
        self.comm_columns, self.server_column, self.transfer_columns = comm_columns, server_column, transfer_columns
        self.diagnostic_columns = diagnostic_columns
        self.columns = (EVENT_COLUMNS + (COMM_COLUMNS if comm_columns else ()) + (SERVER_COLUMNS if server_column else ())
                        + (TRANSFER_COLUMNS if transfer_columns else ())
                        + (DIAGNOSTIC_COLUMNS if diagnostic_columns else ()))
        self.events: dict[str, list[Any]] = {c: [] for c in self.columns}
        self.metric_rows: list[dict[str, Any]] = []

    def event(
        self,
        event: str,
        *,
        job: int,
        worker: int,
        shard: int,
        steps: int,
        tau: float,
        server_version: int,
        dispatch_version: int,
        t_local: int,
        staleness: int = -1,
        train_loss: float = math.nan,
        train_start: float = math.nan,
        upload_start: float = math.nan,
        server: int = -1,
        fragment: int = -1,
        nbytes: int = 0,
        sent: float = math.nan,
        delta_norm: float = math.nan,
        cosine: float = math.nan,
        update_norm: float = math.nan,
    ) -> None:
        ev = self.events
        ev["event"].append(event)
        ev["job"].append(job)
        ev["worker"].append(worker)
        ev["shard"].append(shard)
        ev["steps"].append(steps)
        ev["tau"].append(tau)
        ev["server_version"].append(server_version)
        ev["dispatch_version"].append(dispatch_version)
        ev["staleness"].append(staleness)
        ev["t_local"].append(t_local)
        ev["train_loss"].append(train_loss)
        if self.comm_columns:
            ev["train_start"].append(train_start)
            ev["upload_start"].append(upload_start)
        if self.server_column:
            ev["server"].append(server)
        if self.transfer_columns:
            ev["fragment"].append(fragment)
            ev["bytes"].append(nbytes)
            ev["sent"].append(sent)
        if self.diagnostic_columns:
            ev["delta_norm"].append(delta_norm)
            ev["cosine"].append(cosine)
            ev["update_norm"].append(update_norm)

    def rejoin(self, worker: int, *, tau: float, server_version: int, t_local: int) -> None:
        """A device is back up after losing a round (no job: the fields of a job are -1)."""
        self.event("rejoin", job=-1, worker=worker, shard=-1, steps=0, tau=tau, server_version=server_version,
                   dispatch_version=-1, t_local=t_local)

    def metrics(self, *, tau: float, server_updates: int, t_local: int, values: dict[str, float]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "method": self.method,
            "seed": self.seed,
            "tau": tau,
            "server_updates": server_updates,
            "t_local": t_local,
        }
        row.update({k: float(values[k]) for k in sorted(values)})
        self.metric_rows.append(row)
        return row

    def events_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.events, columns=list(self.columns))

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metric_rows)


def server_round_trips(events: pd.DataFrame) -> pd.DataFrame:
    """HALoS: per region server (LPS) and push, when it left, was ``applied`` by the global server, and came back merged.

    An LPS has one push out at a time, so its n-th push, global update and
    merge belong together. ``merge`` is NaN for a model still on its way when
    the run ended (``applied`` too, for a push still on its way).
    """
    rows = []
    for server, ev in events[events["worker"] < 0].groupby("server"):
        taus = {kind: list(ev.loc[ev["event"] == kind, "tau"]) for kind in ("push", "global", "merge")}
        for n, push in enumerate(taus["push"]):
            applied, merge = (taus[kind][n] if n < len(taus[kind]) else math.nan for kind in ("global", "merge"))
            rows.append({"server": int(server), "push": push, "applied": applied, "merge": merge})
    return pd.DataFrame(rows, columns=["server", "push", "applied", "merge"])


def worker_intervals(events: pd.DataFrame) -> pd.DataFrame:
    """Per job: [start, train_start) download, [train_start, upload_start) training, [upload_start, end) upload.

    ``end`` is the arrival at the server (or the loss, for a lost job; NaN if
    the run ended first). Without communication the download and upload are
    empty. ``next_start`` is that worker's next dispatch: what lies between
    is waiting (or being down).
    """
    ev = events[events["job"] >= 0].sort_values(["tau", "job"], kind="stable")  # jobs, not server events
    dispatch = ev[ev["event"] == "dispatch"].set_index("job")
    ended = ev[ev["event"].isin(["complete", "lost"])].set_index("job")
    synced = ev[ev["event"].isin(["sync", "drop"])].set_index("job")
    comm = "train_start" in dispatch.columns
    jobs = pd.DataFrame({
        "worker": dispatch["worker"],
        "job": dispatch.index,
        "start": dispatch["tau"],
        "train_start": dispatch["train_start"] if comm else dispatch["tau"],
        "end": ended["tau"].reindex(dispatch.index),
        "shard": dispatch["shard"],
        "steps": dispatch["steps"],
        "dispatch_version": dispatch["dispatch_version"],
        "train_loss": ended["train_loss"].reindex(dispatch.index),
        "lost": ended["event"].reindex(dispatch.index).eq("lost"),
        "sync": synced["tau"].reindex(dispatch.index),
    }).reset_index(drop=True)
    jobs["upload_start"] = dispatch["upload_start"].to_numpy() if comm else jobs["end"]
    jobs = jobs.sort_values(["worker", "start"], kind="stable")
    jobs["next_start"] = jobs.groupby("worker")["start"].shift(-1)
    return jobs


def canonical_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.17g", lineterminator="\n")


def run_hash(metrics: pd.DataFrame, events: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(canonical_csv(metrics).encode())
    h.update(b"\n--events--\n")
    h.update(canonical_csv(events).encode())
    return h.hexdigest()


def write_run_folder(
    folder: Path,
    *,
    scenario: dict[str, Any],
    metrics: pd.DataFrame,
    events: pd.DataFrame,
    summary: dict[str, Any],
    extra_files: dict[str, Any] | None = None,
) -> None:
    """Write a complete run folder atomically.

    Everything goes into a hidden sibling first; only a finished folder is
    renamed into place, so an interrupted run never leaves a half-written
    result. An existing folder is replaced only if it is an earlier asyncsim
    run (:func:`sim.outputs.check_run_destination`); a user's folder is
    refused before anything is touched.
    """
    folder = Path(folder)
    check_run_destination(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    try:
        with writing(folder):
            folder.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            (tmp / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
            metrics.to_csv(tmp / "metrics.csv", index=False, float_format="%.17g", lineterminator="\n")
            events.to_csv(tmp / "events.csv", index=False, float_format="%.17g", lineterminator="\n")
            metrics.to_parquet(tmp / "metrics.parquet", index=False)
            events.to_parquet(tmp / "events.parquet", index=False)
            for name, writer in (extra_files or {}).items():
                writer(tmp / name)
            write_summary(tmp, summary)  # last: its presence marks a complete run folder
            if folder.exists():  # an earlier run of ours, or an empty folder (checked above)
                old = folder.parent / f".{folder.name}.old-{os.getpid()}"
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old)
            else:
                tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def run_folder_damage(folder: Path) -> str | None:
    """Why ``folder`` is not a usable complete run (None if it is, or if it does not exist).

    A quick look at what is there, without reading the tables;
    :func:`tables_problem` proves that they are the recorded run.
    """
    folder = Path(folder)
    if not folder.exists():
        return None
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no summary.json (an unfinished or damaged run)"
    except (OSError, ValueError) as exc:
        return f"summary.json is unreadable ({exc.__class__.__name__})"
    if not isinstance(summary, dict) or "run_hash" not in summary or "final" not in summary:
        return "summary.json lacks the run hash or final metrics"
    for name in TABLE_FILES + ("scenario.yaml",):
        if not (folder / name).is_file():
            return f"{name} is missing"
    return None


#: the files that hold a run's results; :func:`run_hash` covers each of them
TABLE_FILES = ("metrics.parquet", "events.parquet", "metrics.csv", "events.csv")


def tables_problem(folder: Path) -> str | None:
    """Why ``folder``'s tables are not the run its summary records (None when they are).

    The run hash is :func:`run_hash` over the canonical CSV of the metrics
    and events, and the CSV files are written in exactly that form, so both
    copies are checked: the parquet tables re-hashed, and the CSV files
    hashed as they lie. An edited number or a missing file in either is
    caught; the cost is one read of each table.
    """
    damage = run_folder_damage(folder)
    if damage is not None:
        return damage
    folder = Path(folder)
    recorded = read_summary(folder)["run_hash"]
    try:
        parquet = run_hash(pd.read_parquet(folder / "metrics.parquet"), pd.read_parquet(folder / "events.parquet"))
        h = hashlib.sha256((folder / "metrics.csv").read_bytes())
        h.update(b"\n--events--\n")
        h.update((folder / "events.csv").read_bytes())
    except (OSError, ValueError) as exc:  # pyarrow's errors subclass these
        return f"its tables are unreadable ({type(exc).__name__})"
    if parquet != recorded:
        return "metrics.parquet and events.parquet do not hash to the run hash in its summary"
    if h.hexdigest() != recorded:
        return "metrics.csv and events.csv do not hash to the run hash in its summary"
    return None


def copy_problem(folder: Path, scenario_digest: str) -> str | None:
    """Why ``folder``, a run's files brought from another machine, is not a faithful copy of that scenario's run.

    None when it is: its tables hash to its run hash (:func:`tables_problem`)
    and its summary names this scenario's digest, so a file damaged or mixed
    up on the way is caught before the folder enters the run store.
    """
    problem = tables_problem(folder)
    if problem is not None:
        return problem
    summary = read_summary(folder)
    if summary.get("scenario_digest") != scenario_digest:
        return f"it is the run of another scenario (digest {str(summary.get('scenario_digest'))[:12]})"
    return None


def is_complete_run(folder: Path) -> bool:
    """A complete, undamaged run folder (see :func:`run_folder_damage`)."""
    return Path(folder).exists() and run_folder_damage(folder) is None


def set_aside(folder: Path) -> Path:
    """Rename a damaged run folder to ``NAME.damaged[-N]`` beside it (kept, never deleted); returns the new path."""
    folder = Path(folder)
    target = folder.with_name(folder.name + ".damaged")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.damaged-{n}")
    folder.rename(target)
    return target


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    """``folder/summary.json``, written through a temporary file so a reader never sees half of it."""
    tmp = Path(folder) / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, Path(folder) / "summary.json")


def read_summary(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
