"""Each method's rule replayed in float64, away from the degenerate identity settings (issue 22).

Each test runs a method on a heterogeneous fleet, records what the run computed (each job's input model, spec
and pseudo-gradient; the event log's arrival order and versions), and replays the method's recurrence from the
paper's equations, written here and never by calling the schedule's or the outer update's own code. The final
server model must be ``torch.equal`` to the replay's; each test then shows it could fail, with a plausible wrong
reading of the rule computed alongside.

torch.equal needs the same floating-point operations, not the same code: ``theta - lr * x`` is written as
``torch.sub(theta, x, alpha=lr)``, one rounding as the outer updates take it (the equations are unchanged).

tests/test_identities.py's ``test_delayed_and_eager_are_their_recurrences_whatever_the_clock`` replays eager /
delayed DiLoCo's replicas with the outer update's own ``step``; the test here adds the server's model and writes
Nesterov out.
"""
from __future__ import annotations

import importlib
import math
from collections import defaultdict

import torch

from sim.build import assemble
from sim.engine import Simulation
from sim.executors import LazyFuture, SerialExecutor
from sim.outer.nesterov import Nesterov
from sim.trainer_factory import build_trainer
from tests.helpers import TINY_TOY, scenario
from tests.test_identities import INGRESS, LINKS

F64 = {**TINY_TOY, "dtype": "float64"}
VERY = [0.58, 0.75, 1.51, 3.33]  # seconds per step
LR, BETA = 0.7, 0.9  # the outer Nesterov's (the presets')


def _recorded_run(sc):
    """Run ``sc``; return (initial model, final server model, event log, jobs in id order).

    A job is {"theta": the model it started from, "spec": its JobSpec, "delta": its pseudo-gradient (absent when
    the run ended before it was needed)}. Jobs are submitted in dispatch order, so the n-th is job id n.
    """
    trainer = build_trainer(sc)
    jobs: list[dict] = []

    class Recording(SerialExecutor):
        def submit(self, theta, spec, state=None, priority=0.0):
            entry = {"theta": theta.clone(), "spec": spec}
            jobs.append(entry)

            def compute():
                result = trainer.local_train(theta, spec, state)
                entry["delta"] = result.delta.clone()
                return result

            return LazyFuture(compute)

    sim = Simulation(assemble(sc, trainer, Recording(trainer)))
    theta0 = sim.theta.clone()
    outcome = sim.run()
    assert outcome.status == "finished"
    events = outcome.recorder.events_frame()
    dispatched = events[events.event == "dispatch"]
    assert list(dispatched.job) == list(range(len(jobs)))  # job id n is the n-th submitted
    assert [j["spec"].worker for j in jobs] == list(dispatched.worker)
    return theta0, outcome.theta, events, jobs


def _versions(events):
    """Per job, the server version it was dispatched at and (if synced) the version it was synced at,
    counted from the event log's order: the number of syncs before the row."""
    dispatched, synced, applied = {}, [], 0
    for row in events.itertuples():
        if row.event == "dispatch":
            dispatched[row.job] = applied
        elif row.event == "sync":
            synced.append((row.job, applied))
            applied += 1
    return dispatched, synced


def descend(theta, lr, x):
    """theta - lr x."""
    return torch.sub(theta, x, alpha=lr)


# -- 1. Delayed Nesterov (Algorithm 3) -----------------------------------------------------------------


def _delayed_nesterov(theta0, grads, N, c):
    """Algorithm 3 over the pseudo-gradients in their sync order; the model after every sync."""
    theta, m, buffer = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
    models = [theta]
    for t, g in enumerate(grads):
        buffer = buffer + g
        if (t + 1) % N == 0:
            m = BETA * m + buffer / N
            theta = descend(theta, LR, (1 - c * N + c) * BETA * m + g / N)
            buffer = torch.zeros_like(theta0)
        else:
            theta = descend(theta, LR, c * BETA * m + g / N)  # m_{t+1} = m_t: the momentum update is delayed
        models.append(theta)
    return models


def test_delayed_nesterov_is_algorithm_3_on_an_asynchronous_run():
    """Alg. 3 with N = k = 4, c = 0.1, beta 0.9, on four heterogeneous workers with a grace period (Alg. 5)
    that lets several arrivals share a window: replayed from theta_0 with the recorded pseudo-gradients in
    their sync order, every job starting from the model of the version it was dispatched at."""
    N, c = 4, 0.1
    sc = scenario(VERY, preset="dn", trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 8 + 10, grace=1.0,
                  method={"outer": {"c": c}})
    assert sc.method.outer["N"] in (N, "k") and sc.method.outer["lr"] == LR and sc.method.outer["momentum"] == BETA
    theta0, final, events, jobs = _recorded_run(sc)
    dispatched, synced = _versions(events)
    assert len(synced) >= 6 * N and len(synced) % N != 0  # several Nesterov steps, and a buffer left half full
    # Algorithm 5's window: after the first round, some workers restart together, from one server version
    restarts = [v for j, v in dispatched.items() if j >= len(VERY)]
    assert max(restarts.count(v) for v in set(restarts)) >= 2

    grads = [jobs[j]["delta"] for j, _ in synced]
    models = _delayed_nesterov(theta0, grads, N, c)
    assert torch.equal(models[-1], final)
    for j, v in dispatched.items():  # every job trained from the server model of its dispatch
        assert torch.equal(jobs[j]["theta"], models[v]), j

    # it can fail: c ignored (pure gradient descent between Nesterov steps), or the momentum updated every sync
    for wrong in (_delayed_nesterov(theta0, grads, N, 0.0)[-1], _delayed_nesterov(theta0, grads, 1, c)[-1]):
        assert (wrong - final).abs().max() > 1e-9


# -- 2. DyLU (Eq. 6) and the per-shard learning rates (Eq. 3) -----------------------------------------


def _dylu(seconds_per_step, H, rounding=math.floor):
    """Eq. 6 with v(w) = 1 / seconds per step: max(1, floor(v(w) / max v * H))."""
    v = [1.0 / s for s in seconds_per_step]
    return [max(1, rounding(v_w / max(v) * H)) for v_w in v]


def _eta(t, eta_max, eta_min, warmup, T):
    """Eq. 3: linear warmup, then cosine decay to eta_min over T steps, the ratio kept within [0, 1]."""
    if t < warmup:
        return t * eta_max / warmup
    ratio = min(max((t - warmup) / (T - warmup), 0.0), 1.0)
    return eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(ratio * math.pi))


def _lr_plans(jobs, eta, per_shard=True):
    """Each job's inner learning rates from its shard's counter (Eq. 3), counters advanced in dispatch order."""
    counters, plans = defaultdict(int), []
    for job in jobs:
        spec = job["spec"]
        key = spec.shard if per_shard else 0
        plans.append(tuple(eta(t) for t in range(counters[key], counters[key] + spec.steps)))
        counters[key] += spec.steps
    return plans


def test_dylu_steps_are_eq_6_and_inner_lrs_are_eq_3_per_shard():
    """Every dispatched job runs max(1, floor(v(w) / max v * H)) steps (H = 50: 50, 38, 19, 8 and 1 for a device
    69 times slower than the fastest), and H without DyLU; each job's inner lrs follow its shard's own Eq. 3
    schedule (warmup 20, lr_min > 0, T = t_max / shards), from the steps dispatched on that shard before it."""
    fleet, H, t_max, warmup = VERY + [40.0], 50, 500, 20
    sc = scenario(fleet, preset="dn_dylu", trainer="toy", trainer_config=F64, H=H, t_max=t_max, grace=1.0)
    sc = sc.model_copy(update={"lr": sc.lr.model_copy(update={"warmup": warmup})})
    eta_max, eta_min, T = sc.lr.max, sc.lr.min, t_max // len(fleet)
    assert 0 < eta_min < eta_max and 0 < warmup < T and T * len(fleet) == t_max
    _, _, events, jobs = _recorded_run(sc)

    expected = _dylu(fleet, H)
    assert expected == [50, 38, 19, 8, 1]
    dispatched = events[events.event == "dispatch"]
    assert len(dispatched) > 2 * len(fleet)
    assert [expected[w] for w in dispatched.worker] == list(dispatched.steps)
    assert [job["spec"].steps for job in jobs] == list(dispatched.steps)
    # without DyLU every job runs H
    plain = scenario(fleet, preset="dn", trainer="null", H=H, t_max=t_max, grace=1.0)
    _, _, plain_events, _ = _recorded_run(plain)
    assert set(plain_events[plain_events.event == "dispatch"].steps) == {H}
    # it can fail: rounding up (the HALoS authors') gives other counts
    assert _dylu(fleet, H, math.ceil) != expected

    def eta(t):
        return _eta(t, eta_max, eta_min, warmup, T)

    plans = _lr_plans(jobs, eta)
    assert [job["spec"].lrs for job in jobs] == plans
    lrs_seen = {lr for plan in plans for lr in plan}
    assert 0.0 in lrs_seen and eta_min in lrs_seen  # a shard's first step (t = 0), and steps at or past T
    assert len({job["spec"].shard for job in jobs}) == len(fleet)
    # it can fail: one global counter, or T the whole budget
    assert _lr_plans(jobs, eta, per_shard=False) != plans
    assert _lr_plans(jobs, lambda t: _eta(t, eta_max, eta_min, warmup, t_max)) != plans


# -- 3. Async DiLoCo with a staleness fix (Poly) ------------------------------------------------------


def _nesterov(theta0, grads):
    """Eq. 4 Nesterov (the presets' lr and momentum) over ``grads``; the model after every step."""
    theta, m = theta0.clone(), torch.zeros_like(theta0)
    models = [theta]
    for g in grads:
        m = BETA * m + g
        theta = descend(theta, LR, g + BETA * m)
        models.append(theta)
    return models


def _poly_nesterov(theta0, grads, staleness, weight, exponent):
    """Nesterov on weight (1 + s)^-exponent g, in sync order."""
    return _nesterov(theta0, [weight * (1 + s) ** -exponent * g for g, s in zip(grads, staleness)])


def test_async_poly_is_nesterov_on_staleness_weighted_pseudo_gradients():
    """async_poly with weight 0.5: g <- 0.5 (1 + s)^-0.5 g, s = server version at sync - version at dispatch,
    both counted from the event log, then Nesterov (Eq. 4), in sync order."""
    weight, exponent = 0.5, 0.5
    sc = scenario(VERY, preset="async_poly", trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 8,
                  method={"fix": {"weight": weight}})
    assert sc.method.fix["exponent"] == exponent and sc.method.outer["name"] == "nesterov"
    theta0, final, events, jobs = _recorded_run(sc)
    dispatched, synced = _versions(events)
    staleness = [v - dispatched[j] for j, v in synced]
    assert staleness == list(events[events.event == "sync"].staleness)  # the log's own column agrees
    assert max(staleness) >= 3 and len(set(staleness)) >= 3

    grads = [jobs[j]["delta"] for j, _ in synced]
    models = _poly_nesterov(theta0, grads, staleness, weight, exponent)
    assert torch.equal(models[-1], final)
    for j, v in dispatched.items():
        assert torch.equal(jobs[j]["theta"], models[v]), j

    # it can fail: the staleness read after the sync (s + 1), or the weight left out
    for wrong in (_poly_nesterov(theta0, grads, [s + 1 for s in staleness], weight, exponent)[-1],
                  _poly_nesterov(theta0, grads, staleness, 1.0, exponent)[-1]):
        assert (wrong - final).abs().max() > 1e-9


# -- 4. Streaming DiLoCo ------------------------------------------------------------------------------

#: (the fragment's values before, the mean pseudo-gradient) of every outer step, in order (read from the module
#: the scenario imports by path: pytest's copy of this file is another module object)
OUTER_CALLS: list = []


class RecordingNesterov(Nesterov):
    """The preset's Nesterov, noting what each outer step receives."""

    def step(self, theta, grad):
        OUTER_CALLS.append((theta.clone(), grad.delta.clone()))
        return super().step(theta, grad)


def _strided(layer_sizes, P):
    """Douillard et al. 2025, Sec. 2.2: layer l belongs to fragment l mod P; a fragment's positions, in order."""
    starts = [sum(layer_sizes[:l]) for l in range(len(layer_sizes))]
    return [torch.cat([torch.arange(starts[l], starts[l] + layer_sizes[l]) for l in range(p, len(layer_sizes), P)])
            for p in range(P)]


def test_streaming_diloco_syncs_fragments_at_their_offsets_and_merges_tau_steps_later():
    """P = 3 fragments (one layer each), H = 9, tau = 2, alpha = 0.3, heterogeneous workers on slow links.

    Fragment p uploads Delta_w = g_p - theta_w[p] at the worker's steps s = (p + 1) H / P (mod H) = 3, 6, 0; the
    server steps fragment p's own Nesterov on the mean; at s + tau the worker merges theta_w[p] <- alpha
    theta_w[p] + (1 - alpha) theta[p]. Checked: the event log's upload and merge steps; the server model,
    replayed per fragment from the means the outer steps received (torch.equal); and the workers' side,
    replayed from the recorded jobs: each job starts from the merged model and each sync's mean is that of
    the uploads (to 1e-12: the schedule keeps theta_w as (g, g - theta_w), other roundings of the same values).
    """
    P, H, tau, alpha = 3, 9, 2, 0.3
    module = importlib.import_module("tests.test_replay")  # the copy the scenario's import path names
    module.OUTER_CALLS.clear()
    method = {"streaming": {"fragments": P, "overlap": tau, "alpha": alpha, "inner_state": "keep"},
              "outer": {"name": "tests.test_replay:RecordingNesterov", "lr": LR, "momentum": BETA}}
    sc = scenario(VERY, preset="streaming_diloco", trainer="toy", trainer_config={**F64, "hidden_layers": 2}, H=H,
                  t_max=4 * H * 4, method=method, device_extra=LINKS, network=INGRESS)
    theta0, final, events, jobs = _recorded_run(sc)
    k = len(VERY)
    offsets = [(p + 1) * H // P % H for p in range(P)]
    assert offsets == [3, 6, 0]

    # -- the event log: which fragment syncs at which step, and the merge tau steps later
    end_step, done = {}, defaultdict(int)  # each job's worker's local step count when it ended
    for row in events[events.event == "dispatch"].itertuples():
        done[row.worker] += row.steps
        end_step[row.job] = done[row.worker]
    uploads = {(r.worker, r.fragment, end_step[r.job]) for r in events[events.event == "upload"].itertuples()}
    merges = {(r.worker, r.fragment, end_step[r.job]) for r in events[events.event == "merge"].itertuples()}
    assert all(s > 0 and s % H == offsets[p] for _, p, s in uploads)
    for w in range(k):
        last = max(s for v, _, s in uploads if v == w)
        assert last >= 3 * H
        assert {(p, s) for v, p, s in uploads if v == w} == {(p, s) for s in range(1, last + 1) for p in range(P)
                                                            if s % H == offsets[p]}
        reached = max(s for v, _, s in merges if v == w)
        assert {(p, s) for v, p, s in merges if v == w} == {(p, s + tau) for v, p, s in uploads
                                                           if v == w and s + tau <= reached}
    # it can fail: torchft's phase (upload at o_p - tau, merge at o_p), or the fragments in the other order
    assert {(w, p, s) for w, p, s in uploads} != {(w, p, s - tau) for w, p, s in uploads}
    assert not all(s % H == p * H // P for _, p, s in uploads)

    # -- the server: fragment p's own Nesterov on the mean each of its syncs received
    trainer = build_trainer(sc)
    frag = _strided(trainer.layer_sizes(), P)
    assert sorted(torch.cat(frag).tolist()) == list(range(theta0.numel()))
    theta, m = theta0.clone(), [torch.zeros(len(i), dtype=theta0.dtype) for i in frag]
    synced = defaultdict(list)  # fragment -> [(its value after the sync, the mean it received)], in order
    assert len(module.OUTER_CALLS) >= 3 * P
    for before, mean in module.OUTER_CALLS:
        matches = [p for p in range(P) if before.shape == frag[p].shape and torch.equal(before, theta[frag[p]])]
        assert len(matches) == 1, "an outer step on values that are no fragment of the replayed server model"
        p = matches[0]
        m[p] = BETA * m[p] + mean
        theta[frag[p]] = descend(theta[frag[p]], LR, mean + BETA * m[p])
        synced[p].append((theta[frag[p]].clone(), mean))
    assert torch.equal(theta, final)
    # the n-th sync of fragment p is at step o_p + n H (the n + 1-th multiple of H for o_p = 0)
    server = {(p, offsets[p] + (n + (offsets[p] == 0)) * H): values
              for p in range(P) for n, values in enumerate(synced[p])}

    # -- the workers: each from the recorded jobs of its chain
    sent = defaultdict(dict)  # (p, s) -> {w: Delta_w}
    flipped_gap = 0.0  # how far the merge with alpha on the global side is from what the next job started from
    for w in range(k):
        theta_w, g, s, flipped = theta0.clone(), theta0.clone(), 0, None
        for job in (j for j in jobs if j["spec"].worker == w):
            assert torch.allclose(job["theta"], theta_w, rtol=0, atol=1e-12), (w, s)
            if flipped is not None:
                flipped_gap = max(flipped_gap, float((job["theta"] - flipped).abs().max()))
            if "delta" not in job:
                break  # the run ended before it
            start, s = s, s + job["spec"].steps
            assert not any(b % H == offsets[p] or (b - tau > 0 and (b - tau) % H == offsets[p])
                           for b in range(start + 1, s) for p in range(P))  # no sync or merge inside a job
            theta_w, flipped = job["theta"] - job["delta"], None
            for p in range(P):
                if s % H == offsets[p]:
                    sent[(p, s)][w] = g[frag[p]] - theta_w[frag[p]]
                if s - tau > 0 and (s - tau) % H == offsets[p] and (p, s - tau) in server:
                    global_p = server[(p, s - tau)][0]
                    flipped = theta_w.clone()
                    flipped[frag[p]] = (1 - alpha) * theta_w[frag[p]] + alpha * global_p
                    theta_w[frag[p]] = alpha * theta_w[frag[p]] + (1 - alpha) * global_p
                    g[frag[p]] = global_p
    for (p, s), (_, mean) in server.items():
        assert sorted(sent[(p, s)]) == list(range(k)), (p, s)
        replayed = torch.stack([sent[(p, s)][w] for w in range(k)]).sum(dim=0) / k
        assert torch.allclose(mean, replayed, rtol=0, atol=1e-12), (p, s)
    # it can fail: the merge weight the other way round is not the model the workers trained from
    assert flipped_gap > 1e-6


# -- 5. Eager / delayed DiLoCo (Kale et al. 2025, Alg. 2 and 3) ---------------------------------------


def test_eager_and_delayed_diloco_replicas_and_server_are_their_recurrences():
    """k = 4 heterogeneous workers on slow links with a shared ingress (communication takes time), no churn.

    Server:  theta^t = Nesterov(theta^{t-1}, Delta^t), Delta^t the mean of round t's pseudo-gradients (DiLoCo's).
    Replica m, whose round t + 1 starts from x_m^t:
      delayed  x_m^t = Nesterov_m(x_m^{t-1}, Delta^{t-1})                     (no step after round 0)
      eager    x_m^t = Nesterov_m(x_m^{t-1}, delta_m^t / k + (Delta^{t-1} - delta_m^{t-1} / k))  (round 0: delta / k)
    """
    k = len(VERY)
    for preset in ("delayed_diloco", "eager_diloco"):
        sc = scenario(VERY, preset=preset, trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 8,
                      device_extra=LINKS, network=INGRESS)
        theta0, final, events, jobs = _recorded_run(sc)
        ids = [[i for i, j in enumerate(jobs) if j["spec"].worker == w] for w in range(k)]  # worker w's rounds
        rounds = [[jobs[i] for i in ids[w]] for w in range(k)]
        syncs = events[events.event == "sync"]
        closed = len(syncs) // k
        assert closed >= 6 and len(syncs) == closed * k
        assert list(syncs.job) == [ids[w][r] for r in range(closed) for w in range(k)]  # by round, in worker order
        averages = [torch.stack([rounds[w][r]["delta"] for w in range(k)]).sum(dim=0) / k for r in range(closed)]
        assert torch.equal(_nesterov(theta0, averages)[-1], final)
        # it can fail: the server's average a round late is another model
        assert (_nesterov(theta0, averages[:-1])[-1] - final).abs().max() > 1e-9

        for w in range(k):
            x, m, gap = theta0.clone(), torch.zeros_like(theta0), 0.0
            for r in range(len(rounds[w]) - 1):
                assert torch.equal(rounds[w][r]["theta"], x), (preset, w, r)
                delta = rounds[w][r]["delta"]
                previous = None if r == 0 else rounds[w][r - 1]["delta"]
                eager = delta / k if r == 0 else delta / k + (averages[r - 1] - previous / k)
                delayed = None if r == 0 else averages[r - 1]
                g, other = (eager, delayed) if preset == "eager_diloco" else (delayed, eager)
                if other is not None:  # it can fail: the other rule's step is not the model round r + 1 started from
                    m_other = BETA * m + other
                    wrong = descend(x, LR, other + BETA * m_other)
                    gap = max(gap, float((wrong - rounds[w][r + 1]["theta"]).abs().max()))
                if g is not None:
                    m = BETA * m + g
                    x = descend(x, LR, g + BETA * m)
            assert len(rounds[w]) >= 4 and gap > 1e-9, (preset, w)


# -- 6. HALoS: two tiers, pushes, merges -------------------------------------------------------------------


def test_halos_is_its_two_tier_recurrence_with_the_authors_merge():
    """HALoS (sim/schedules/hierarchical.py, as the authors' utnslab/halos runs it), replayed from the event log:

        LPS r, a worker's arrival   theta_r <- theta_r - lr_l Delta                 (local SGD here, lr 0.8)
                                    v_r += 1; push when v_r = v_r^merged + K and no push is in flight
        LPS r, push                 D_r = theta_r^merged - theta_r (at the push)
        GPS, the push lands         theta <- Nesterov(theta, D_r); the model goes back *as it is now*
        LPS r, the model lands      theta_r <- alpha theta_r + (1 - alpha) theta_sent;  theta_r^merged <- theta_r

    Two regions, K = 2, alpha 0.3 (not 0.5: the direction shows), DyLU rounding up, slow paths between the
    regions so that updates land while a push travels and another region's push changes the GPS meanwhile.
    Every job must start from its region's replayed model; the GPS's final model is torch.equal to the replay.
    """
    K, alpha, local_lr = 2, 0.3, 0.8
    regions = ["home", "home", "away", "away"]
    network = {"server_region": "home",
               "regions": [{"between": ["home", "away"], "latency_ms": 2500, "bandwidth_gbps": 0.01}]}
    sc = scenario(VERY, preset="halos", trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 12,
                  device_extra=[{"region": r, "bandwidth_gbps": 1.0} for r in regions], network=network,
                  method={"hierarchy": {"K": K, "alpha": alpha, "local_outer": {"name": "sgd", "lr": local_lr}},
                          "outer": {"name": "nesterov", "lr": LR, "momentum": BETA}})
    theta0, final, events, jobs = _recorded_run(sc)

    def replay(merge_alpha: float, merge_current: bool):
        theta, m = theta0.clone(), torch.zeros_like(theta0)
        local = {r: theta0.clone() for r in (0, 1)}
        merged = {r: theta0.clone() for r in (0, 1)}
        version, merged_version = {0: 0, 1: 0}, {0: 0, 1: 0}
        in_flight, sent, due = {}, {}, {0: False, 1: False}
        starts_match, overlapped = True, 0
        for row in events.itertuples():
            r = int(row.server)
            if row.event == "dispatch":
                starts_match &= torch.equal(jobs[row.job]["theta"], local[r])
            elif row.event == "sync":
                assert not due[r], "an LPS applied another update before its due push"
                overlapped += r in in_flight or r in sent
                local[r] = descend(local[r], local_lr, jobs[row.job]["delta"])
                version[r] += 1
                due[r] = version[r] == merged_version[r] + K and r not in in_flight and r not in sent
            elif row.event == "push":
                assert due[r], "a push when none was due (K updates since the merge, none in flight)"
                in_flight[r], due[r] = merged[r] - local[r], False
            elif row.event == "global":
                g = in_flight.pop(r)
                m = BETA * m + g
                theta = descend(theta, LR, g + BETA * m)
                sent[r] = theta.clone()
            elif row.event == "merge":
                model = theta if merge_current else sent[r]
                sent.pop(r)
                local[r] = torch.mul(local[r], merge_alpha).add(model, alpha=1.0 - merge_alpha)
                merged[r], merged_version[r] = local[r].clone(), version[r]
        return theta, starts_match, overlapped

    replayed, starts_match, overlapped = replay(alpha, merge_current=False)
    assert torch.equal(final, replayed) and starts_match
    assert (events.event == "push").sum() >= 4 and overlapped > 0  # updates landed while pushes travelled
    # The merge shows in the regions' models, which the workers start from: a push carries only the steps since
    # the merge (theta_r^merged - theta_r), so the GPS's model does not depend on the merge's base. The check can
    # fail: the merge the other way round, or with the GPS's model current when it lands, starts workers elsewhere.
    assert not replay(1.0 - alpha, merge_current=False)[1]
    assert not replay(alpha, merge_current=True)[1]
