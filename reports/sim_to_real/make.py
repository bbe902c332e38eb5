"""Sim-to-real: live runs of the study against their simulations (issue 24).

    .venv/bin/python reports/sim_to_real/make.py            # run what is missing, then write the report files
    .venv/bin/python reports/sim_to_real/make.py --report   # only re-read the run folders and write the files

Every live run goes through ``sim.live.session.live`` with ``against=True``,
one at a time, in one local Ray instance (started once here). Run folders go
under ``/tmp/sim_to_real/runs`` (override: ``SIM_TO_REAL_DIR``); a folder with
its against.json, summary.json and live.csv is complete and skipped. Writes,
next to this file: results.csv (one row per live run), errors.md (the errors
per fleet x method x time scale, mean and min..max over the repetitions, and
the targets), time.md (where the real time goes, from each run's live.csv),
and copies a few timeline_vs_sim.png pictures. Every number in those files is
computed here from the run folders.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = Path(os.environ.get("SIM_TO_REAL_DIR", "/tmp/sim_to_real")) / "runs"
BEFORE_FIX = RUNS.parent / "runs_before_fix"
PROFILE = HERE / "this_machine.yaml"  # calibrated on this machine (made by asyncsim calibrate, committed)
# calibrated again as the live runtime pays it (calibrate --live-jobs: step time under contention, job overhead)
LIVE_PROFILE = HERE / "this_machine_live.yaml"
LIVE_JOBS = 100  # jobs per worker of the live calibrating run (20 gave a step time 2-36% too slow here)
# the same, timed on 200-step jobs (the H = 200 runs' length): the server's work between jobs weighs less per step
LIVE_PROFILE_200 = HERE / "this_machine_live_200.yaml"
# a trial (session 10, not kept in calibrate): the live run's mean step time and its jobs' jitter (the sd of
# log(compute / steps)) in the profile; the committed file is the one that trial wrote, and it made the un-padded
# error worse (-26% / -38%), so calibrate keeps the median and writes no jitter (README, "Un-padded")
LIVE_PROFILE_JITTER = HERE / "this_machine_live_jitter.yaml"
# one worker actor, so that the server has the other core: the "no more workers than free cores" (session 13)
LIVE_PROFILE_K1 = HERE / "this_machine_live_k1.yaml"
PROFILE_STEPS = {PROFILE: 20, LIVE_PROFILE: 20, LIVE_PROFILE_200: 200, LIVE_PROFILE_JITTER: 20, LIVE_PROFILE_K1: 20}
#: workers of each calibrated fleet (2 unless named)
PROFILE_WORKERS = {LIVE_PROFILE_K1: 1}
#: the fleet each un-padded run group simulates
PROFILES = {"this_machine": PROFILE, "this_machine_live": LIVE_PROFILE, "this_machine_live_200": LIVE_PROFILE_200,
            "this_machine_livej": LIVE_PROFILE_JITTER, "this_machine_live_k1": LIVE_PROFILE_K1}
os.environ.setdefault("ASYNCSIM_CACHE", "/root/asyncsim-lm/cache")  # the micro LM's cached pretraining
os.environ.setdefault("RAY_worker_niceness", "0")
sys.path.insert(0, str(ROOT))

METHODS = ("diloco", "async_diloco", "dn_dylu", "halos")
REPS = (1, 2, 3)
TOY = {  # fleet -> (scenario, overrides): about 20 real seconds per run at the fleet's main time scale
    "very_heterogeneous": ("scenarios/very_heterogeneous.yaml", ["schedule.t_max=800", "eval.every=200"]),
    "homogeneous": ("scenarios/homogeneous.yaml", ["schedule.t_max=800", "eval.every=200"]),
    "geo_distributed": ("scenarios/geo_distributed.yaml", ["schedule.t_max=1200", "eval.every=300"]),
}
# sync DiLoCo on the very fleet waits for the 3.33 s/step device every round (66.6 simulated s): a smaller budget
# (5 rounds) keeps it near 20 real seconds
METHOD_SETS = {("very_heterogeneous", "diloco"): ["schedule.t_max=400", "eval.every=100"]}
# real seconds per simulated second: the smallest jobs still leave the toy's real compute (tens of ms) far inside
# the padding: very/homogeneous's fastest job is 20 x 0.58 s = 11.6 s simulated (0.58 s real at 0.05); geo's is
# 20 x 0.04 s = 0.8 s simulated, so geo runs at S = 0.5 (0.4 s real). very is shown at a second, tighter scale.
SCALE = {"very_heterogeneous": 0.05, "homogeneous": 0.05, "geo_distributed": 0.5}
SECOND_SCALE = ("very_heterogeneous", 0.02)
SECOND_SCALE_METHODS = ("dn_dylu", "diloco", "async_diloco", "halos")
LM = ("lm_micro_paper", "scenarios/lm_micro_paper.yaml", "dn_dylu", 0.1, ["schedule.t_max=1600", "eval.every=400"])
UNPADDED_METHODS = ("dn_dylu", "diloco")
UNPADDED_REAL_S = 10.0  # the un-padded runs' budget is set from the calibrated step time to last about this long


def plan() -> list[dict]:
    """Every live run of the study, in the order they are run (a complete subset first)."""
    runs = []

    def add(fleet, scenario, method, scale, rep, sets, pad=True, group=None, tie_window=0.002):
        name = f"{group or fleet}-{method}-x{scale:g}-r{rep}"
        sets = METHOD_SETS.get((fleet, method), sets)
        runs.append(dict(name=name, group=group or fleet, fleet=fleet, scenario=scenario, method=method, scale=scale,
                         rep=rep, sets=list(sets), pad=pad, tie_window=tie_window))

    for fleet in ("very_heterogeneous", "homogeneous", "geo_distributed"):
        for method in METHODS:
            for rep in REPS:
                add(fleet, *TOY[fleet][:1], method, SCALE[fleet], rep, TOY[fleet][1])
    def unpadded(fleet: str, group: str, profile: Path, lengths: tuple[int, ...] = (20, 200)) -> None:
        """The very toy un-padded on a calibrated fleet: both methods, 3 repetitions, per job length H."""
        for H in lengths:
            for method in UNPADDED_METHODS:
                for rep in REPS:
                    add(fleet, "scenarios/very_heterogeneous.yaml", method, 1.0, rep, unpadded_sets(H, profile),
                        pad=False, group=group + ("" if H == 20 else "_H200"))

    unpadded("this_machine", "this_machine_nopad", PROFILE, (20,))
    name, path, method, scale, sets = LM
    add(name, path, method, scale, 1, sets)
    fleet, scale = SECOND_SCALE
    for method in SECOND_SCALE_METHODS:
        for rep in REPS:
            add(fleet, TOY[fleet][0], method, scale, rep, TOY[fleet][1])
    # the same un-padded comparison with 10x longer jobs (H = 200): a fixed cost per job weighs 10x less
    unpadded("this_machine", "this_machine_nopad", PROFILE, (200,))
    # the same un-padded comparisons on the fleet calibrated with --live-jobs (#24's model of time, measured live)
    unpadded("this_machine_live", "this_machine_live_nopad", LIVE_PROFILE)
    unpadded("this_machine_live_200", "this_machine_live200_nopad", LIVE_PROFILE_200, (200,))
    unpadded("this_machine_livej", "this_machine_livej_nopad", LIVE_PROFILE_JITTER)
    # one worker and the server on 2 cores (session 13): the only un-padded fleet here with a core for each process
    unpadded("this_machine_live_k1", "this_machine_live_k1_nopad", LIVE_PROFILE_K1)
    # (session 10 also ran the homogeneous fleet with a 5 ms tie window, group homogeneous_tie5ms; an on-time padded
    # result no longer goes by its stamp, so the window no longer decides a padded run: its rows are kept as history)
    return runs


#: the calibrated profiles earlier un-padded rows simulated, kept as calibrate wrote them (they were replaced here)
HISTORY_PROFILES = HERE / "history"

#: rows kept from earlier rules of the live server and earlier calibrations, by the label their fleet carries:
#: label -> (what they were, the profile they simulated or None); results.csv keeps them and the tables show them
#: after the current runs
HISTORY = {
    " (stamps)": ("session 12: an on-time padded result arrived at its actor's send stamp (2 ms tie window; results "
                  "due at the same deadline one tie)", None),
    " (before fix)": ("session 10: send stamps and the 2 ms tie window alone", None),
    "_tie5ms": ("session 10: send stamps and a 5 ms tie window", None),
    " (20 live jobs)": ("un-padded on session 13's machine, calibrated over 20 live jobs per worker",
                        HISTORY_PROFILES / "session13_20_live_jobs.yaml"),
    "this_machine_nopad": ("un-padded on session 9's machine, on the fleet calibrated without live jobs", PROFILE),
    "this_machine_live200": ("un-padded on session 10's machine, calibrated live on 200-step jobs", LIVE_PROFILE_200),
    "this_machine_livej": ("un-padded on session 10's machine, a trial calibration with the mean step time and jitter",
                           LIVE_PROFILE_JITTER),
    " (session 13)": ("un-padded on session 13's machine, two workers, calibrated with the median over 100 live jobs",
                      HISTORY_PROFILES / "session13_two_workers_medians.yaml"),
    " (medians)": ("un-padded on session 13's machine, one worker, calibrated with the median (not the mean) over 100 "
                   "live jobs", HISTORY_PROFILES / "session13_one_worker_medians.yaml"),
    " (one probe)": ("un-padded on session 14's machine, one worker, means over one live probe of 100 jobs that met a "
                     "slow spell of the host", HISTORY_PROFILES / "session14_one_worker_one_probe.yaml"),
    " (session 10)": ("un-padded on session 10's machine, with the live calibration made there",
                      HISTORY_PROFILES / "session10_two_workers.yaml"),
}


def history_text(what: str, profile: Path | None) -> str:
    """A history label's meaning, with its profile's numbers read from the profile itself."""
    if profile is None:
        return what
    import yaml

    device = yaml.safe_load(profile.read_text())["devices"][0]
    overhead = device.get("job_overhead_ms")
    numbers = f"{device['seconds_per_step'] * 1e3:.3f} ms per step" + (
        f", {overhead:.2f} ms per job" if overhead is not None else "")
    return f"{what} ({numbers}, {profile.relative_to(HERE)})"


def is_history(fleet: str) -> bool:
    return any(tag in fleet for tag in HISTORY)


def unpadded_sets(H: int = 20, profile: Path = PROFILE) -> list[str]:
    """The very_heterogeneous toy on this machine's calibrated fleet (2 workers, or 1: no more than the cores)."""
    h = [] if H == 20 else [f"schedule.H={H}"]
    k = PROFILE_WORKERS.get(profile, 2)
    if not profile.exists():
        return [f"workers.k={k}", f"workers.fleet={profile}"] + h  # t_max set once calibrated
    import yaml

    sps = float(yaml.safe_load(profile.read_text())["devices"][0]["seconds_per_step"])
    t_max = int(round(k * UNPADDED_REAL_S / sps / 100.0)) * 100
    return [f"workers.k={k}", f"workers.fleet={profile}", f"schedule.t_max={t_max}", f"eval.every={t_max // 5}"] + h


def calibrate_profile(profile: Path = PROFILE) -> None:
    if profile.exists():
        return
    tmp = Path("/tmp/sim_to_real") / profile.name
    tmp.parent.mkdir(parents=True, exist_ok=True)
    live = ["--live-jobs", str(LIVE_JOBS)] if profile != PROFILE else []
    cmd = [str(ROOT / ".venv/bin/asyncsim"), "calibrate", "scenarios/very_heterogeneous.yaml", "--out", str(tmp),
           "-k", str(PROFILE_WORKERS.get(profile, 2)),
           "--force", "--steps", str(PROFILE_STEPS[profile]), *live]
    print("calibrating:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    shutil.copy(tmp, profile)


def complete(folder: Path) -> bool:
    return all((folder / f).exists() for f in ("against.json", "summary.json", "live.csv"))


def run_all(runs: list[dict]) -> None:
    import ray

    from sim.cli_common import load
    from sim.live.session import live, live_scenario

    todo = [r for r in runs if not complete(RUNS / r["name"])]
    print(f"{len(runs)} live runs in the study, {len(runs) - len(todo)} complete, {len(todo)} to run", flush=True)
    if not todo:
        return
    if not ray.is_initialized():
        t = time.time()
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        print(f"ray started in {time.time() - t:.1f} s", flush=True)
    for i, r in enumerate(todo, 1):
        if r["fleet"] in PROFILES:
            profile = PROFILES[r["fleet"]]
            calibrate_profile(profile)
            r["sets"] = unpadded_sets(200 if r["group"].endswith("H200") else 20, profile)
        folder = RUNS / r["name"]
        if folder.exists():
            shutil.rmtree(folder)  # an incomplete folder from an interrupted run
        folder.parent.mkdir(parents=True, exist_ok=True)
        scenario = live_scenario(load(ROOT / r["scenario"], r["method"], r["sets"]), print)
        marks = {}

        def note(line: str, marks=marks) -> None:
            if "the live clock starts" in line:
                marks["clock"] = time.time()

        load_before = os.getloadavg()
        t0 = time.time()
        print(f"[{i}/{len(todo)}] {r['name']}: {r['scenario']} --method {r['method']} --time-scale {r['scale']:g} "
              f"{'' if r['pad'] else '--no-pad '}{' '.join('--set ' + s for s in r['sets'])} (load {load_before[0]:.2f})",
              flush=True)
        res = live(scenario, r["scale"], folder, against=True, pad=r["pad"], notify=note, tie_window=r["tie_window"])
        wall = time.time() - t0
        a, info = res.against, res.summary["live"]
        from sim.live.engine import LiveSimulation

        extra = {"tie_fix": hasattr(LiveSimulation, "_owed"), "load_before": load_before[0], "load_after": os.getloadavg()[0], "wall_s": wall,
                 "startup_s": marks.get("clock", math.nan) - t0, "sets": r["sets"], "pad": r["pad"]}
        (folder / "study.json").write_text(json.dumps(extra, indent=1) + "\n")
        print(f"    in order {a['in_order_share']:.1%}, finish {a['finish_error']:+.3%}, identical "
              f"{a.get('identical_model')}, overruns {info['overruns']}, {info['real_seconds']:.1f} real s, "
              f"startup {extra['startup_s']:.1f} s, wall {wall:.1f} s", flush=True)


# ---------------------------------------------------------------- aggregation

def row_of(r: dict, runs_dir: Path = RUNS, suffix: str = ""):
    import pandas as pd

    folder = runs_dir / r["name"]
    a = json.loads((folder / "against.json").read_text())
    s = json.loads((folder / "summary.json").read_text())
    extra = json.loads((folder / "study.json").read_text()) if (folder / "study.json").exists() else {}
    log = pd.read_csv(folder / "live.csv")
    ok = log[log["fault"].isna() | (log["fault"] == "")]
    S = r["scale"]
    planned_real = S * (ok["planned_arrival"] - ok["dispatched"])  # the job's planned duration, real s
    real_dur = ok["real_sent"] - ok["real_dispatched"]
    metric = "perplexity" if "final_perplexity_sim" in a else "loss"
    info = s["live"]
    profiled = math.nan if r["pad"] else profile_seconds_per_step(PROFILES.get(r["fleet"], PROFILE))
    host = {} if r["pad"] else host_speed(RUNS / r["name"], ok, a, profiled)
    return {
        "fleet": r["group"] + suffix, "tie_fix": extra.get("tie_fix", False), "method": r["method"], "time_scale": S, "padded": r["pad"], "rep": r["rep"],
        "in_order_share": a["in_order_share"], "same_jobs_share": a.get("same_jobs_share", math.nan),
        "first_divergence": a["first_divergence"], "arrivals": a["arrivals_live"], "arrivals_sim": a["arrivals_sim"],
        "event_error_mean_s": a["event_error_mean_s"],
        "event_error_abs_mean_s": a["event_error_abs_mean_s"], "event_error_abs_max_s": a["event_error_abs_max_s"],
        "finish_sim_s": a["finish_sim_s"], "finish_live_s": a["finish_live_s"], "finish_error": a["finish_error"],
        "final_metric": metric, "final_live": a[f"final_{metric}_live"], "final_sim": a[f"final_{metric}_sim"],
        "final_diff": a[f"final_{metric}_live"] - a[f"final_{metric}_sim"],
        "identical_model": a.get("identical_model"), "overruns": info["overruns"], "jobs": len(log),
        "tie_batches": info["tie_batches"], "tie_reordered": info["tie_reordered"], "faults": info["faults"],
        "real_seconds": info["real_seconds"],
        "launch_lag_ms": 1e3 * ok["launch_lag_s"].mean(), "launch_lag_max_ms": 1e3 * ok["launch_lag_s"].max(),
        "start_delay_ms": 1e3 * (ok["real_started"] - ok["real_launched"]).mean(),
        "compute_ms": 1e3 * ok["compute_s"].mean(), "compute_max_ms": 1e3 * ok["compute_s"].max(),
        "handled_minus_sent_ms": 1e3 * (ok["real_handled"] - ok["real_sent"]).mean(),
        "handled_minus_sent_max_ms": 1e3 * (ok["real_handled"] - ok["real_sent"]).max(),
        # padded: how late the result left after its deadline (sleep overshoot; overruns included)
        "send_late_ms": 1e3 * (ok["real_sent"] - S * ok["planned_arrival"]).mean() if r["pad"] else math.nan,
        "send_late_max_ms": 1e3 * (ok["real_sent"] - S * ok["planned_arrival"]).max() if r["pad"] else math.nan,
        "late_over_window_share": float(((ok["real_sent"] - S * ok["planned_arrival"]) > info["tie_window_s"]).mean())
        if r["pad"] else math.nan,
        "slack_ms": 1e3 * (S * ok["planned_arrival"] - ok["real_computed"]).mean() if r["pad"] else math.nan,
        "slack_min_ms": 1e3 * (S * ok["planned_arrival"] - ok["real_computed"]).min() if r["pad"] else math.nan,
        "planned_job_ms": 1e3 * planned_real.mean(), "real_job_ms": 1e3 * real_dur.mean(),
        "job_error_ms": 1e3 * (real_dur - planned_real).mean(),
        "planned_compute_ms": 1e3 * ok["steps"].mean() * profiled,
        "workers": int(log["worker"].nunique()),
        "step_vs_profile": host.get("step_vs_profile", math.nan),
        "finish_error_own_step": host.get("finish_error_own_step", math.nan),
        "load_before": extra.get("load_before", math.nan), "load_after": extra.get("load_after", math.nan),
        "startup_s": extra.get("startup_s", math.nan), "wall_s": extra.get("wall_s", math.nan),
    }


def host_speed(folder: Path, ok, a: dict, profiled: float) -> dict[str, float]:
    """An un-padded run's own step time against its calibrated profile, and its finish error at that step time.

    ``step_vs_profile``: the run's compute over its steps / the profile's seconds per step - 1: how much faster or
    slower the host ran during this run than during the calibration. ``finish_error_own_step``: the finish error
    against the same scenario simulated again with each worker's device at the step time that worker really had
    (its compute over its steps), everything else as calibrated (:func:`finish_at_own_steps`).
    """
    from sim.live.calibrate import step_time

    own = finish_at_own_steps(folder, ok, a["finish_sim_s"])
    return {"step_vs_profile": step_time(ok) / profiled - 1, "finish_error_own_step": a["finish_live_s"] / own - 1}


def finish_at_own_steps(folder: Path, ok, finish_sim_s: float) -> float:
    """The simulated time to finish with each worker's seconds per step set to what it measured in the live run.

    Simulated with the null trainer: a run's events depend on its schedule, devices and links, not on what the
    jobs compute, so the times are the toy's (checked: the null run at the calibrated step times must finish
    exactly when against.json says the simulation did). Cached in the run folder (own_step.json).
    """
    cache = folder / "own_step.json"
    if cache.exists():
        return json.loads(cache.read_text())["finish_sim_s"]
    from sim import load_scenario, simulate
    from sim.live.calibrate import step_time
    from sim.trainer_factory import build_trainer

    path = folder / "scenario.yaml"
    scenario = load_scenario(path)
    null = scenario.with_overrides({"trainer": {"name": "null", "config": {
        "dim": build_trainer(scenario).init_params().numel(), "dtype": "float32"}}})
    check = simulate(null).summary["simulated_seconds"]
    if abs(check - finish_sim_s) > 1e-9 * finish_sim_s:
        raise SystemExit(f"{folder}: the null trainer's schedule finishes at {check} s, the simulation at "
                         f"{finish_sim_s} s; the re-simulation at measured step times would not be comparable")
    per_worker = {int(w): step_time(jobs) for w, jobs in ok.groupby("worker")}
    workers = scenario.resolved()["workers"]  # the devices in full, to change one field of each
    devices = [{**d, "seconds_per_step": per_worker.get(w, d["seconds_per_step"]), "steps_per_second": None}
               for w, d in enumerate(workers["devices"])]
    seconds = simulate(null.with_overrides({"workers": {**workers, "devices": devices}})).summary["simulated_seconds"]
    cache.write_text(json.dumps({"finish_sim_s": seconds, "seconds_per_step": per_worker}) + "\n")
    return seconds


def spread(x, fmt: str) -> str:
    x = [v for v in x if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not x:
        return "-"
    m = sum(x) / len(x)
    return f"{fmt.format(m)} ({fmt.format(min(x))}..{fmt.format(max(x))})" if len(x) > 1 else fmt.format(m)


def verdicts(g) -> dict[str, str]:
    """The issue's targets for one fleet x method x time scale group (every repetition must meet them)."""
    n = len(g)
    order_matched = g[g["first_divergence"].isna()]
    ident = (f"{int(order_matched['identical_model'].astype(bool).sum())}/{len(order_matched)}"
             if len(order_matched) else "n/a (order never fully matched)")
    if g["padded"].iloc[0]:
        fin = (g["finish_error"].abs() <= 0.05).sum()
        order = (g["in_order_share"] >= 0.95).sum()
        return {"finish within 5%": f"{'met' if fin == n else 'NOT met'} ({fin}/{n})",
                "arrivals >= 95% in order": f"{'met' if order == n else 'NOT met'} ({order}/{n})",
                "identical when order matched": ident}
    fin = (g["finish_error"].abs() <= 0.10).sum()
    mean = g["finish_error"].mean()
    return {"finish within 10%": f"{'met' if fin == n else 'NOT met'} ({fin}/{n})",
            "mean of the repetitions within 10%": f"{'met' if abs(mean) <= 0.10 else 'NOT met'} ({100 * mean:+.1f}%)",
            "identical when order matched": ident}


def unpadded_summary(nopad) -> list[str]:
    """One line per worker count of the current un-padded runs: the target, and the same at each run's own step time."""
    out = []
    current = nopad[~nopad["fleet"].map(is_history)]
    for workers, g in current.groupby("workers"):
        within = int((g["finish_error"].abs() <= 0.10).sum())
        own = g["finish_error_own_step"].abs()
        out += [f"{'One worker' if workers == 1 else f'{workers:.0f} workers'}: {within} of {len(g)} runs finish within "
                f"10% of the calibrated simulation (errors {100 * g['finish_error'].min():+.1f}.."
                f"{100 * g['finish_error'].max():+.1f}%); each run's own step time was "
                f"{100 * g['step_vs_profile'].min():+.1f}..{100 * g['step_vs_profile'].max():+.1f}% against the "
                f"calibrated one; at its own step time, {int((own <= 0.05).sum())} of {len(g)} runs are within 5% "
                f"and {int((own <= 0.10).sum())} within 10% (worst {100 * own.max():.1f}%).", ""]
    return out


def recompare(runs: list[dict]) -> None:
    """Simulate each complete run's scenario again and recompute its against.json with today's sim.live.against."""
    import pandas as pd
    import torch
    import yaml

    from sim.live.against import compare
    from sim.runner import simulate
    from sim.scenario import scenario_from_dict

    for r in runs:
        for runs_dir in (RUNS, BEFORE_FIX):
            folder = runs_dir / r["name"]
            if not complete(folder):
                continue
            old = json.loads((folder / "against.json").read_text())
            summary = json.loads((folder / "summary.json").read_text())
            simulated = simulate(scenario_from_dict(yaml.safe_load((folder / "scenario.yaml").read_text())))
            live_theta = torch.load(folder / "params.pt", weights_only=True) if (folder / "params.pt").exists() else None
            new = compare(simulated.events, pd.read_parquet(folder / "events.parquet"), simulated.summary["final"],
                          summary["final"], simulated.summary["simulated_seconds"], summary["simulated_seconds"])
            if live_theta is None and "identical_model" in old:  # the final model is not kept: its verdict is
                new["identical_model"] = old["identical_model"]
            new["sim_run_hash"] = simulated.run_hash
            if new["first_divergence"] != old["first_divergence"]:
                print(f"{folder.name}: first divergence {old['first_divergence']} -> {new['first_divergence']}")
            (folder / "against.json").write_text(json.dumps(new, indent=2) + "\n")


#: what names one live run in results.csv: its group (the "fleet" column), method, time scale, padding and repetition
ROW_KEY = ["fleet", "method", "time_scale", "padded", "rep"]


def committed_rows(fresh):
    """``fresh`` rows (from run folders here) and, for every run whose folder is gone, its row in the committed
    results.csv: run folders live in /tmp and do not outlast a machine, so rerunning one group must not drop the
    others' measurements. A fresh row replaces the committed row with its key."""
    import pandas as pd

    path = HERE / "results.csv"
    if not path.exists():
        return fresh
    old = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if fresh.empty:
        return old
    fresh_keys = set(map(tuple, fresh[ROW_KEY].astype(str).values))
    kept = old[[tuple(k) not in fresh_keys for k in old[ROW_KEY].astype(str).values]]
    print(f"{len(fresh)} runs from their folders, {len(kept)} kept from the committed results.csv", flush=True)
    return pd.concat([fresh, kept], ignore_index=True)


def write_reports(runs: list[dict]) -> None:
    import pandas as pd

    rows = [row_of(r) for r in runs if complete(RUNS / r["name"])]
    # the homogeneous runs made before the tie fix in sim/live/engine.py (kept to show what it changed)
    rows += [row_of(r, BEFORE_FIX, " (before fix)") for r in runs if complete(BEFORE_FIX / r["name"])]
    df = committed_rows(pd.DataFrame(rows))
    if df.empty:
        print("no complete runs yet")
        return
    df.to_csv(HERE / "results.csv", index=False, float_format="%.6g", lineterminator="\n")
    keys = ["fleet", "time_scale", "method"]
    order = {m: i for i, m in enumerate(METHODS)}
    groups = sorted(df.groupby(keys, sort=False),
                    key=lambda kv: (is_history(kv[0][0]), kv[0][0], kv[0][1], order.get(kv[0][2], 9)))

    lines = ["# Sim-to-real: live runs against their simulations", "",
             f"Written by make.py from {len(df)} live runs (results.csv). Each cell: mean (min..max) over the "
             "repetitions. Order: share of arrivals in the simulated order; finish: (live - simulated) / simulated "
             "time to finish the budget; event |err|: mean and max absolute error of dispatch and arrival times "
             "before the first divergence, in simulated seconds; final diff: live - simulated final eval loss "
             "(perplexity for the LM); identical: runs with a bit-identical final model. Same jobs: share of the simulation's "
             "jobs the live run also ran from the same inputs, in any order (a sync round does not depend on the order "
             "of its arrivals, so DiLoCo can be out of order and still bit-identical). A padded result computed by "
             "its deadline arrives at its planned time (sim/live/engine.py); the rows after the current ones are "
             "kept from earlier rules: " + "; ".join(f"'{tag.strip()}': {history_text(*entry)}"
                                                    for tag, entry in HISTORY.items())
             + ".", "",
             "| fleet | S | method | reps | order | same jobs, any order | first divergence | finish error | "
             "event abs err mean (s) | event abs err max (s) | final diff | identical | overruns | ties (reordered) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (fleet, S, method), g in groups:
        fd = [("none" if pd.isna(v) else str(int(v))) for v in g["first_divergence"]]
        lines.append(
            f"| {fleet} | {S:g}{'' if g['padded'].iloc[0] else ' no pad'} | {method} | {len(g)} | "
            f"{spread(list(100 * g['in_order_share']), '{:.1f}%')} | {spread(list(100 * g['same_jobs_share']), '{:.1f}%')} | "
            f"{', '.join(fd)} | "
            f"{spread(list(100 * g['finish_error']), '{:+.2f}%')} | {spread(list(g['event_error_abs_mean_s']), '{:.3g}')} | "
            f"{spread(list(g['event_error_abs_max_s']), '{:.3g}')} | {spread(list(g['final_diff']), '{:+.2g}')} | "
            f"{int(g['identical_model'].astype(bool).sum())}/{len(g)} | {int(g['overruns'].sum())} | "
            f"{int(g['tie_batches'].sum())} ({int(g['tie_reordered'].sum())}) |")
    lines += ["", "## Targets", "",
              "Emulated devices (padded): every repetition within 5% of the simulated time to finish and with "
              ">= 95% of arrivals in the simulated order. Un-padded calibrated: within 10%. Bit-identical final "
              "model whenever the order matched (runs with no divergence, identical / such runs).", "",
              "| fleet | S | method | targets |", "|---|---|---|---|"]
    for (fleet, S, method), g in groups:
        v = verdicts(g)
        lines.append(f"| {fleet} | {S:g}{'' if g['padded'].iloc[0] else ' no pad'} | {method} | "
                     + "; ".join(f"{k}: {x}" for k, x in v.items()) + " |")
    matched = df[df["first_divergence"].isna()]
    lines += ["", f"Over all runs: {len(matched)} of {len(df)} kept the simulated order to the end; "
              f"{int(matched['identical_model'].astype(bool).sum())} of those ended with a bit-identical model. "
              f"{int(df['identical_model'].astype(bool).sum())} runs in all ended bit-identical. "
              f"Overruns: {int(df['overruns'].sum())} jobs in {int((df['overruns'] > 0).sum())} runs. "
              f"Load average (1 min) before the runs: {df['load_before'].min():.2f}..{df['load_before'].max():.2f}, "
              f"after: {df['load_after'].min():.2f}..{df['load_after'].max():.2f}.", ""]
    own = [(key, g) for key, g in groups if not g["padded"].iloc[0] and g["step_vs_profile"].notna().any()]
    if own:
        lines += ["## Un-padded: the host's speed during each run against the calibration", "",
                  "step vs profile: each run's compute over its steps / the profile's seconds per step - 1 (how much "
                  "faster or slower the host ran than when it was calibrated); finish error at the run's own step "
                  "time: against the same scenario simulated again with each worker at the step time it really had "
                  "(everything else as calibrated). Mean (min..max) over the repetitions.", "",
                  "| fleet | method | finish error | step vs profile | finish error at the run's own step time |",
                  "|---|---|---|---|---|"]
        for (fleet, S, method), g in own:
            lines.append(f"| {fleet} | {method} | {spread(list(100 * g['finish_error']), '{:+.1f}%')} | "
                         f"{spread(list(100 * g['step_vs_profile']), '{:+.1f}%')} | "
                         f"{spread(list(100 * g['finish_error_own_step']), '{:+.1f}%')} |")
        lines += ["", *unpadded_summary(pd.concat([g for _, g in own]))]
    (HERE / "errors.md").write_text("\n".join(lines))

    t = ["# Where the real time goes", "",
         "From each run's live.csv, mean over its jobs, then mean (min..max) over the repetitions; milliseconds of "
         "real time. planned job: S x the job's planned duration (dispatch to arrival). launch lag: from the "
         "arrival that freed the worker (its send stamp) to the next job's launch = waiting in the server's queue "
         "+ applying the outer update + evaluating + Ray submit. queue: handled - sent (a result waiting for the "
         "server). start delay: launch to the actor starting to train (Ray transport of the model, actor busy). "
         "compute: real training time. slack: deadline - computed (padded: what the padding still had left; "
         "negative = overrun). send late: sent - deadline (sleep overshoot, and overruns). job error: real - "
         "planned job duration (dispatch to send). startup: from calling live() to the clock's start (trainer "
         "built, actors created and ready; Ray itself already running).", "",
         "| fleet | S | method | planned job | launch lag (max) | queue (max) | start delay | compute (max) | "
         "slack (min) | send late (max) | late > tie window | job error | startup (s) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (fleet, S, method), g in groups:
        f = lambda c, fmt="{:.1f}": spread(list(g[c]), fmt)
        t.append(f"| {fleet} | {S:g}{'' if g['padded'].iloc[0] else ' no pad'} | {method} | {f('planned_job_ms', '{:.0f}')} | "
                 f"{f('launch_lag_ms')} ({g['launch_lag_max_ms'].max():.0f}) | {f('handled_minus_sent_ms')} "
                 f"({g['handled_minus_sent_max_ms'].max():.0f}) | {f('start_delay_ms')} | {f('compute_ms')} "
                 f"({g['compute_max_ms'].max():.0f}) | {f('slack_ms', '{:.0f}')} ({g['slack_min_ms'].min():.0f}) | "
                 f"{f('send_late_ms', '{:.2f}')} ({g['send_late_max_ms'].max():.1f}) | "
                 f"{spread(list(100 * g['late_over_window_share']), '{:.1f}%')} | {f('job_error_ms')} | "
                 f"{f('startup_s')} |")
    current = df[~df["fleet"].map(is_history)]
    pad = current[current["padded"]]
    t += ["", "## Summary", "",
          f"Padded runs under the current rule ({len(pad)}): a result left its deadline late by {pad['send_late_ms'].mean():.2f} ms on "
          f"average (run means {pad['send_late_ms'].min():.2f}..{pad['send_late_ms'].max():.2f} ms, worst job "
          f"{pad['send_late_max_ms'].max():.1f} ms). The server took {pad['handled_minus_sent_ms'].mean():.1f} ms on "
          f"average from a result's send to handling it and {pad['launch_lag_ms'].mean():.1f} ms from a send to the "
          f"next job's launch (worst {pad['launch_lag_max_ms'].max():.0f} ms); Ray took "
          f"{pad['start_delay_ms'].mean():.1f} ms from launch to the actor starting. Startup (not on the live clock) "
          f"took {current['startup_s'].mean():.1f} s per run ({current['startup_s'].min():.1f}..{current['startup_s'].max():.1f}). "
          f"{100 * pad['late_over_window_share'].mean():.1f}% of padded jobs left more than 2 ms after their "
          f"deadline (homogeneous fleet: "
          f"{100 * pad[pad['fleet'] == 'homogeneous']['late_over_window_share'].mean():.1f}%). An on-time result "
          "arrives at its planned time whatever its stamp, so this no longer moves an arrival; under the stamp rule "
          "(rows marked '(stamps)') it split ties and delayed the rest of a worker's chain.", ""]
    nopad = current[~current["padded"]]
    if len(nopad):
        t += [f"Un-padded runs on this session's calibration ({len(nopad)}): a job took {nopad['job_error_ms'].mean():+.1f} ms more than planned on "
              f"average (planned {nopad['planned_job_ms'].mean():.1f} ms; run means "
              f"{nopad['job_error_ms'].min():+.1f}..{nopad['job_error_ms'].max():+.1f}); of that, launch lag "
              f"{nopad['launch_lag_ms'].mean():.1f} ms, start delay {nopad['start_delay_ms'].mean():.1f} ms, compute "
              f"{nopad['compute_ms'].mean():.1f} ms against a planned compute of "
              f"{nopad['planned_compute_ms'].mean():.1f} ms.", ""]
    (HERE / "time.md").write_text("\n".join(t))

    pictures = {"very_heterogeneous-dn_dylu-x0.05-r1": "timeline_very_dn_dylu.png",
                "homogeneous-async_diloco-x0.05-r1": "timeline_homogeneous_async_diloco.png",
                "geo_distributed-halos-x0.5-r1": "timeline_geo_halos.png",
                "this_machine_live_nopad-dn_dylu-x1-r1": "timeline_this_machine_live_nopad_dn_dylu.png"}
    for name, target in pictures.items():
        src = RUNS / name / "timeline_vs_sim.png"
        if src.exists():
            shutil.copy(src, HERE / target)
    readme = HERE / "README.md"
    if readme.exists():  # the generated tables, copied between their markers
        text = readme.read_text()
        for tag, body in (("errors", lines[2:]), ("time", t[2:])):
            start, end = f"<!-- {tag}: written by make.py -->", f"<!-- /{tag} -->"
            if start in text and end in text:
                head, rest = text.split(start, 1)
                text = head + start + "\n" + "\n".join(body).strip() + "\n" + end + rest.split(end, 1)[1]
        readme.write_text(text)
    print(f"wrote results.csv ({len(df)} runs), errors.md, time.md", flush=True)


def profile_seconds_per_step(profile: Path = PROFILE) -> float:
    import yaml

    return float(yaml.safe_load(profile.read_text())["devices"][0]["seconds_per_step"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only aggregate the run folders that exist")
    p.add_argument("--recompare", action="store_true",
                   help="with --report: simulate every run again and recompute its comparison first")
    p.add_argument("--only", default="", help="comma-separated run-name prefixes to run (default: all)")
    args = p.parse_args()
    os.chdir(ROOT)
    runs = plan()
    if not args.report:
        chosen = [r for r in runs if not args.only or any(r["name"].startswith(x) for x in args.only.split(","))]
        try:
            run_all(chosen)
        finally:
            write_reports(runs)
    else:
        if args.recompare:
            recompare(runs)
        write_reports(runs)


if __name__ == "__main__":
    main()
