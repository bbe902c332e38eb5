"""``method.inner_state``: reset (the paper), keep (per worker) or shard (the state follows the data), every schedule.

The rule is pinned two ways: a trainer that stamps each state it returns
shows which state each round started from (keep: the worker's last arrived
round; shard: the shard's last arrived round; reset: none), and float64
identities tie keep to the methods that already kept it.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from sim import simulate
from sim.scenario import load_scenario
from tests import helpers
from tests.helpers import TINY_TOY, scenario
from trainers.base import JobResult, JobSpec
from trainers.null import NullTrainer

F64 = {**TINY_TOY, "dtype": "float64"}
VERY = [0.58, 0.75, 1.51, 3.33]


#: (worker, shard, data offset, state it started from, asked for its state) of every computed round; a list in a
#: module imported once (the scenario imports this file again under its own name)
ROUNDS: list[tuple[int, int, int, Any, bool]] = helpers.STAMPED_ROUNDS


class Stamping(NullTrainer):
    """The null trainer, whose inner state is a stamp naming the round that returned it: (shard, data offset)."""

    def local_train(self, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None) -> JobResult:
        helpers.STAMPED_ROUNDS.append((job.worker, job.shard, job.data_offset, optimizer_state, job.keep_optimizer_state))
        result = super().local_train(theta, job)
        stamp = {"round": torch.tensor([job.shard, job.data_offset])}
        return JobResult(delta=result.delta, train_loss=result.train_loss,
                         optimizer_state=stamp if job.keep_optimizer_state else None)


def _stamped_run(preset: str, mode: str, **kw: Any):
    ROUNDS.clear()
    sc = scenario(VERY, preset=preset, trainer="tests.test_inner_state:Stamping", t_max=300,
                  method={"inner_state": mode, **kw.pop("method", {})}, **kw)
    return simulate(sc), list(ROUNDS)


@pytest.mark.parametrize("preset", ["diloco", "async_diloco", "dn_dylu", "halos", "eager_diloco", "delayed_diloco"])
def test_each_round_starts_from_the_state_its_rule_names(preset):
    """Replayed from the event log: the state a round starts from is the last *arrived* round's of its worker
    (keep) or of its shard (shard); rounds still in flight, lost or discarded leave nothing behind.

    A round is named by (shard, data offset): the offset is the examples dispatched on its shard before it
    (the null trainer's batch is 1 example), so the log's dispatch rows name every round the same way.
    """
    for mode in ("reset", "keep", "shard"):
        method = {"hierarchy": {"K": 2}} if preset == "halos" else {}
        result, rounds = _stamped_run(preset, mode, method=method,
                                      device_extra=[{"region": r} for r in "aabb"] if preset == "halos" else None)
        events = result.events.reset_index(drop=True)
        offset_of, dispatched_on = {}, {}
        for row in events[events["event"] == "dispatch"].itertuples():
            offset_of[row.job] = (row.shard, dispatched_on.get(row.shard, 0))
            dispatched_on[row.shard] = dispatched_on.get(row.shard, 0) + row.steps
        started = {(shard, offset): (worker, state, asked) for worker, shard, offset, state, asked in rounds}
        checked = 0
        for row in events[events["event"] == "dispatch"].itertuples():
            if offset_of[row.job] not in started:
                continue  # never computed: in flight when the run ended
            worker, state, asked = started[offset_of[row.job]]
            assert worker == row.worker and asked == (mode != "reset")
            if mode == "reset":
                assert state is None
                continue
            arrived = events[(events["event"] == "complete") & (events.index < row.Index)]
            same = arrived[arrived["worker" if mode == "keep" else "shard"] == (row.worker if mode == "keep" else row.shard)]
            expected = None if same.empty else offset_of[int(same["job"].iloc[-1])]
            got = None if state is None else tuple(int(x) for x in state["round"])
            assert got == expected, (preset, mode, row.job)
            checked += 1
        assert mode == "reset" or (checked > 10 and any(r[3] is not None for r in rounds))  # the check can fail


def test_reset_is_the_default_and_keeps_every_digest():
    sc = load_scenario("scenarios/very_heterogeneous.yaml", method="dn_dylu")
    assert sc.method.inner_state == "reset" and "inner_state" not in sc.resolved()["method"]
    assert load_scenario("scenarios/very_heterogeneous.yaml", overrides={"method.inner_state": "reset"}).digest() \
        == sc.digest()
    kept = load_scenario("scenarios/very_heterogeneous.yaml", overrides={"method.inner_state": "keep"})
    assert kept.digest() != sc.digest() and kept.resolved()["method"]["inner_state"] == "keep"


def test_streaming_and_the_baseline_keep_by_default_and_method_inner_state_sets_streamings():
    st = load_scenario("scenarios/very_heterogeneous.yaml", method="streaming_diloco")
    assert st.method.inner_state == "keep" and st.method.streaming.inner_state == "keep"
    reset = load_scenario("scenarios/very_heterogeneous.yaml", method="streaming_diloco",
                          overrides={"method.inner_state": "reset"})
    assert reset.method.streaming.inner_state == "reset"
    old_spelling = load_scenario("scenarios/very_heterogeneous.yaml", method="streaming_diloco",
                                 overrides={"method.streaming.inner_state": "reset"})
    assert old_spelling.digest() == reset.digest()
    assert load_scenario("scenarios/very_heterogeneous.yaml", method="finetune_1w").method.inner_state == "keep"


@pytest.mark.parametrize("preset", ["finetune_1w", "streaming_diloco"])
def test_shard_is_refused_where_one_state_belongs_to_one_worker(preset):
    from sim.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"field 'method(\.streaming)?\.inner_state': .*'shard'"):
        load_scenario("scenarios/very_heterogeneous.yaml", method=preset, overrides={"method.inner_state": "shard"})


def test_diloco_keeping_its_state_is_streaming_diloco_at_one_fragment_no_overlap_alpha0_keep():
    """float64: the identity behind reports/lm_micro_diloco_keep_inner_state, now without the detour."""
    common = dict(trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 6)
    diloco = simulate(scenario(VERY, preset="diloco", method={"inner_state": "keep"}, **common)).params
    streaming = simulate(scenario(VERY, preset="streaming_diloco", **common, method={
        "streaming": {"fragments": 1, "overlap": 0, "alpha": 0.0}, "inner_state": "keep"})).params
    assert torch.allclose(diloco, streaming, rtol=0, atol=1e-12), (diloco - streaming).abs().max()
    reset = simulate(scenario(VERY, preset="diloco", **common)).params
    assert (reset - diloco).abs().max() > 1e-6  # the check can fail


def test_the_baseline_with_reset_restarts_its_optimizer_every_round():
    common = dict(trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 6)
    kept = simulate(scenario(VERY, preset="finetune_1w", **common)).params
    reset = simulate(scenario(VERY, preset="finetune_1w", method={"inner_state": "reset"}, **common)).params
    assert (kept - reset).abs().max() > 1e-6


@pytest.mark.parametrize("mode", ["keep", "shard"])
def test_a_kept_state_survives_a_checkpoint_bit_for_bit(tmp_path, mode):
    from sim.checkpoint_file import Checkpointing

    common = dict(trainer="toy", trainer_config=F64, H=5, t_max=4 * 5 * 6, method={"inner_state": mode})
    sc = scenario(VERY, preset="dn_dylu", **common)
    whole = simulate(sc)
    path = tmp_path / "c.pt"
    simulate(sc, checkpointing=Checkpointing(path, every=7))  # the last state saved is mid-run
    resumed = simulate(sc, checkpointing=Checkpointing(path, resume=True))
    assert resumed.resumed_from is not None and resumed.run_hash == whole.run_hash
    assert torch.equal(resumed.params, whole.params)


def test_kept_states_count_in_the_memory_estimate():
    from sim.memory import estimate, scenario_estimate
    from trainers.configs import ToyConfig

    reset = load_scenario("scenarios/very_heterogeneous.yaml", method="dn_dylu")
    keep = load_scenario("scenarios/very_heterogeneous.yaml", method="dn_dylu", overrides={"method.inner_state": "keep"})
    config = ToyConfig(**reset.trainer.config)
    a, b = scenario_estimate(reset, config), scenario_estimate(keep, config)
    assert b.total - a.total == 4 * a.unit and "4 kept inner states" in b.describe()
    streaming = estimate(config.memory_needs(num_shards=4, batch_multiplier=1), schedule="streaming", k=4,
                         inner_state="keep")
    assert streaming.total == estimate(config.memory_needs(num_shards=4, batch_multiplier=1), schedule="streaming",
                                       k=4).total  # its own states are counted with its workers already
