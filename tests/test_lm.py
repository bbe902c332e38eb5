"""The LM trainer: sizes, learning, determinism, pretraining cache, scenarios."""
from __future__ import annotations

import glob

import pandas as pd
import pytest
import torch

from sim import load_scenario, simulate
from trainers.base import JobSpec, UserError
from trainers.lm import PRESETS, LMTrainer, Transformer, closed_form_params, count_params

# A model small enough for many steps in a test: same corpus and vocabulary as
# the tiny preset (so the session's cached tokens are reused), shorter windows.
MICRO = {"size": "tiny", "layers": 1, "d_model": 64, "heads": 1, "seq_len": 32, "batch_size": 4, "device": "cpu"}
DEMO = "scenarios/lm_tiny_very_heterogeneous.yaml"


@pytest.fixture(autouse=True)
def lm_cache(tmp_path_factory, monkeypatch):
    """One cache for the whole session (shared with tests/test_data.py): tokenize once."""
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path_factory.getbasetemp() / "asyncsim-cache"))


@pytest.fixture(scope="module")
def micro():
    torch.set_num_threads(1)
    return LMTrainer(MICRO, seed=0, num_shards=4)


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_counts_match_closed_form(name):
    arch = PRESETS[name]
    assert count_params(arch) == closed_form_params(arch)


def test_paper_sizes_match_their_names():
    millions = {name: closed_form_params(PRESETS[name]) / 1e6 for name in ("20M", "60M", "150M")}
    assert round(millions["20M"]) == 21 and round(millions["60M"]) == 59 and round(millions["150M"]) == 150
    assert not PRESETS["20M"].tied and PRESETS["60M"].tied and PRESETS["150M"].tied


def test_real_module_matches_closed_form_and_flat_vector(micro):
    model = Transformer(PRESETS["tiny"])
    assert sum(p.numel() for p in model.parameters()) == closed_form_params(PRESETS["tiny"])
    assert micro.init_params().numel() == closed_form_params(micro.arch)


def test_init_is_gpt2_scale_and_seeded(micro):
    a, b = micro._fresh_params(1), micro._fresh_params(1)
    assert torch.equal(a, b) and not torch.equal(a, micro._fresh_params(2))
    emb = micro._model.embed.weight
    assert 0.015 < emb.std().item() < 0.025


def test_loss_decreases_over_local_rounds(micro):
    theta = micro.init_params()
    before = micro.evaluate(theta)
    losses = []
    for round_ in range(3):
        spec = JobSpec(worker=0, shard=round_ % 4, lrs=(3e-3,) * 15, data_offset=60 * round_)
        result = micro.local_train(theta, spec)
        theta = theta - result.delta
        losses.append(result.train_loss)
    after = micro.evaluate(theta)
    assert losses[0] > losses[1] > losses[2]
    assert after["loss"] < before["loss"] - 0.5 and after["perplexity"] < before["perplexity"] / 2


def test_local_train_is_pure_and_deterministic(micro):
    theta = micro.init_params()
    copy = theta.clone()
    spec = JobSpec(worker=2, shard=1, lrs=(1e-3, 2e-3, 1e-3), data_offset=5, threads=1)
    r1, r2 = micro.local_train(theta, spec), micro.local_train(theta, spec)
    assert torch.equal(theta, copy)
    assert torch.equal(r1.delta, r2.delta) and r1.train_loss == r2.train_loss and r1.optimizer_state is None
    other = micro.local_train(theta, JobSpec(worker=2, shard=1, lrs=spec.lrs, data_offset=6))
    assert not torch.equal(r1.delta, other.delta)


def test_batch_multiplier_and_carried_optimizer_state(micro):
    theta = micro.init_params()
    spec = JobSpec(worker=0, shard=0, lrs=(1e-3,) * 2, data_offset=0, batch_multiplier=4, keep_optimizer_state=True)
    first = micro.local_train(theta, spec)
    assert first.optimizer_state is not None
    state_steps = [s["step"].item() for s in first.optimizer_state["state"].values()]
    assert set(state_steps) == {2.0}
    second = micro.local_train(theta - first.delta, spec, optimizer_state=first.optimizer_state)
    assert {s["step"].item() for s in second.optimizer_state["state"].values()} == {4.0}
    # the state it carried on from is the caller's: still at step 2, its moments untouched (trainers.base.carry_inner_state)
    assert {s["step"].item() for s in first.optimizer_state["state"].values()} == {2.0}


def test_shard_data_order_depends_only_on_shard_and_offset(micro):
    whole = micro._shard_windows(2, 0, 40)
    assert (micro._shard_windows(2, 13, 20) == whole[13:33]).all()
    assert set(whole.tolist()) <= set(micro._shards[2].tolist())


def test_evaluate_reports_perplexity(micro):
    m = micro.evaluate(micro.init_params())
    assert m["perplexity"] == pytest.approx(torch.tensor(m["loss"]).exp().item())
    # Untrained: close to a uniform guess over the vocabulary.
    assert abs(m["loss"] - torch.log(torch.tensor(2048.0)).item()) < 0.5


def test_pretrained_checkpoint_is_cached_and_reused():
    cfg = {**MICRO, "pretrain_steps": 6, "pretrain_warmup": 2}
    a = LMTrainer(cfg, seed=0, num_shards=4)
    path = a.pretrain_path()
    assert not path.exists()
    theta = a.init_params()
    assert path.exists()
    # Another scenario seed and worker count reuse it; a different budget does not.
    b = LMTrainer(cfg, seed=7, num_shards=8)
    assert b.pretrain_path() == path and torch.equal(b.init_params(), theta)
    assert LMTrainer({**cfg, "pretrain_steps": 7}, seed=0, num_shards=4).pretrain_path() != path
    assert a.evaluate(theta)["loss"] < a.evaluate(a._fresh_params(0))["loss"]


def test_unknown_config_field_is_rejected():
    with pytest.raises(Exception, match="extra"):
        LMTrainer({"sise": "tiny"}, seed=0, num_shards=4)


def test_cuda_without_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA device"):
        LMTrainer({**MICRO, "device": "cuda"}, seed=0, num_shards=4)


def _small_demo(method: str):
    overrides = {f"trainer.config.{k}": v for k, v in MICRO.items()}
    overrides.update(
        {"trainer.config.pretrain_steps": 5, "schedule.H": 4, "schedule.t_max": 48, "eval.every": 16}
    )
    return load_scenario(DEMO, overrides=overrides, method=method)


@pytest.mark.parametrize("method", ["dn_dylu", "finetune_1w"])
def test_two_runs_of_an_lm_scenario_are_byte_identical(method):
    first, second = simulate(_small_demo(method)), simulate(_small_demo(method))
    assert first.run_hash == second.run_hash
    assert first.metrics.equals(second.metrics)
    assert "perplexity" in first.metrics.columns and first.metrics["t_local"].iloc[-1] >= 48


@pytest.mark.parametrize("path", sorted(glob.glob("scenarios/lm_*.yaml")))
def test_lm_scenarios_validate(path):
    sc = load_scenario(path)
    assert sc.trainer.name == "lm"
    LMTrainer.Config(**sc.trainer.config)


def test_models_and_pretrain_commands():
    import typer
    from typer.testing import CliRunner

    from sim.cli_lm import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["models"], terminal_width=160)
    assert out.exit_code == 0, out.output
    for name in PRESETS:
        assert name in out.output
    assert "149,804,928" in out.output and "MISMATCH" not in out.output
    sets = [f"--set=trainer.config.{k}={v}" for k, v in MICRO.items()] + ["--set=trainer.config.pretrain_steps=3"]
    built = runner.invoke(app, ["pretrain", DEMO, *sets])
    assert built.exit_code == 0, built.output
    assert "built" in built.output and "perplexity" in built.output
    again = runner.invoke(app, ["pretrain", DEMO, *sets])
    assert again.exit_code == 0 and "cached" in again.output
    toy = runner.invoke(app, ["pretrain", "scenarios/very_heterogeneous.yaml"])
    assert toy.exit_code == 2 and "no pretraining" in toy.output


def test_micro_batches_accumulate_to_the_full_batch_step(micro):
    chunked = LMTrainer({**MICRO, "micro_batch_size": 2}, seed=0, num_shards=4)
    theta = micro.init_params()
    spec = JobSpec(worker=0, shard=3, lrs=(1e-3, 1e-3), data_offset=0, batch_multiplier=2)
    whole, parts = micro.local_train(theta, spec), chunked.local_train(theta, spec)
    assert parts.train_loss == pytest.approx(whole.train_loss, rel=1e-5)
    assert torch.allclose(parts.delta, whole.delta, atol=1e-6)


def test_shared_pretraining_is_built_once_before_runs_fan_out(tmp_path, monkeypatch):
    """compare -j N pretrains each distinct checkpoint once, in the caller, whatever the methods and seeds."""
    from sim.prepare import pretrain_once

    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path / "cache"))
    overrides = {**{f"trainer.config.{k}": v for k, v in MICRO.items()}, "trainer.config.pretrain_steps": 4}
    scenarios = [load_scenario(DEMO, overrides={**overrides, "seed": seed}, method=method)
                 for method in ("diloco", "dn_dylu") for seed in (0, 1)]
    seen = []
    assert pretrain_once(scenarios, lambda label, step, total: seen.append((label, step, total))) == 1
    assert seen[-1] == ("pretrain tiny", 4, 4)
    assert pretrain_once(scenarios) == 0  # cached: nothing to build
    assert len(list((tmp_path / "cache" / "pretrained").glob("*.pt"))) == 1


def test_a_run_follows_its_pretraining_and_a_reused_run_needs_none(tmp_path, monkeypatch):
    """``run`` (the CLI's second bar) hears of each pretraining step; reusing the run pretrains nothing."""
    from sim.runner import run

    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASYNCSIM_RUNS", str(tmp_path / "runs"))
    overrides = {**{f"trainer.config.{k}": v for k, v in MICRO.items()}, "trainer.config.pretrain_steps": 3,
                 "schedule.t_max": 40, "eval.every": 40}
    sc = load_scenario(DEMO, overrides=overrides, method="diloco")
    seen: list = []
    first = run(sc, plots=False, on_pretrain=lambda label, step, total: seen.append((label, step, total)))
    assert seen == [("pretrain tiny", step, 3) for step in (1, 2, 3)] and not first.reused
    again = run(sc, plots=False, on_pretrain=lambda *args: seen.append(args))
    assert again.reused and len(seen) == 3


def test_micro_preset_is_measured_and_listed():
    from trainers.configs import CPU_MS_PER_STEP

    assert set(CPU_MS_PER_STEP) == set(PRESETS)
    assert CPU_MS_PER_STEP["micro"] is not None and CPU_MS_PER_STEP["micro"] < CPU_MS_PER_STEP["tiny"]
    # the scenario's whole protocol (pretraining + local steps) fits in about 10 minutes of one core
    sc = load_scenario("scenarios/lm_micro_paper.yaml")
    assert sc.trainer.config["size"] == "micro"
    steps = sc.trainer.config["pretrain_steps"] + sc.schedule.t_max
    assert steps * CPU_MS_PER_STEP["micro"] / 1000 < 600


def test_gradient_noise_scale_is_reproducible_and_scales_with_sequences(micro):
    theta = micro.init_params()
    first = micro.gradient_noise_scale(theta, small=2, groups=2, per_group=4)
    assert first == micro.gradient_noise_scale(theta, small=2, groups=2, per_group=4)  # a fixed stream
    assert first["trace_sigma"] > 0 and first["grad_norm_sq"] > 0
    assert first["noise_scale_tokens"] == pytest.approx(first["noise_scale_sequences"] * micro.arch.seq_len)
    assert first["noise_scale_sequences"] == pytest.approx(first["trace_sigma"] / first["grad_norm_sq"])


def test_noise_scale_command_reports_the_batch_against_it(tmp_path):
    from typer.testing import CliRunner

    from sim.cli import app

    sets = [f"--set=trainer.config.{k}={v}" for k, v in MICRO.items()] + ["--set=trainer.config.pretrain_steps=0"]
    out = CliRunner().invoke(app, ["noise-scale", DEMO, *sets])
    assert out.exit_code == 0, out.output
    assert "B_simple =" in out.output and "per-worker batch 4 sequences" in out.output
    toy = CliRunner().invoke(app, ["noise-scale", "scenarios/very_heterogeneous.yaml"])
    assert toy.exit_code == 2 and "cannot estimate" in toy.output

    # --out: one CSV row a report reads, the same estimate twice; a file asyncsim did not write is refused
    csv = tmp_path / "noise.csv"
    for _ in range(2):
        wrote = CliRunner().invoke(app, ["noise-scale", DEMO, *sets, "--out", str(csv)])
        assert wrote.exit_code == 0, wrote.output
    row = pd.read_csv(csv).iloc[0]
    assert row["batch_sequences"] == 4 and row["seq_len"] == MICRO["seq_len"]
    assert f"B_simple = {row['noise_scale_sequences']:.1f} sequences" in wrote.output
    mine = tmp_path / "mine.csv"
    mine.write_text("my,data\n")
    refused = CliRunner().invoke(app, ["noise-scale", DEMO, *sets, "--out", str(mine)])
    assert refused.exit_code == 2 and "not made by asyncsim" in refused.output and mine.read_text() == "my,data\n"


def test_runs_that_differ_only_in_their_inner_batch_share_the_pretrained_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path / "cache"))
    base = {**MICRO, "pretrain_steps": 3}
    default = LMTrainer(base, seed=0, num_shards=4)
    bigger = LMTrainer({**base, "batch_size": 16, "pretrain_batch_size": MICRO["batch_size"]}, seed=0, num_shards=4)
    other = LMTrainer({**base, "batch_size": 16}, seed=0, num_shards=4)  # pretrains at 16 too
    assert default.pretrain_key(1) == bigger.pretrain_key(1) != other.pretrain_key(1)


def test_muon_inner_optimizer_steps_the_matrices_differently_and_carries_its_state():
    """trainer.config.inner_optimizer: muon (MuLoCo's split: Muon on the blocks' matrices, AdamW on the rest)."""
    torch.set_num_threads(1)
    muon = LMTrainer({**MICRO, "inner_optimizer": "muon"}, seed=0, num_shards=4)
    adamw = LMTrainer(MICRO, seed=0, num_shards=4)
    theta = adamw.init_params()
    assert torch.equal(theta, muon.init_params())  # the same model and data: only the optimizer differs
    spec = JobSpec(worker=0, shard=1, lrs=(1e-3,) * 3, data_offset=0, keep_optimizer_state=True)
    a, m, again = adamw.local_train(theta, spec), muon.local_train(theta, spec), muon.local_train(theta, spec)
    assert torch.equal(m.delta, again.delta)  # deterministic
    assert not torch.equal(m.delta, a.delta)
    kinds = [type(state).__name__ for state in m.optimizer_state["optimizers"]]
    assert len(kinds) == 2 and m.optimizer_state["optimizers"][0]["param_groups"][0]["adjust_lr_fn"] == "match_rms_adamw"
    # a carried state continues: two rounds of 3 steps come out as one round of 6 on the same data, up to the
    # rounding of theta - delta, which Newton-Schulz amplifies (measured 4e-5 of a 6e-3 step; a fresh Muon: 5e-3)
    first = muon.local_train(theta, spec)
    rest = JobSpec(worker=0, shard=1, lrs=(1e-3,) * 3, data_offset=3 * 4, keep_optimizer_state=True)
    whole = muon.local_train(theta, JobSpec(worker=0, shard=1, lrs=(1e-3,) * 6, data_offset=0)).delta
    carried = (first.delta + muon.local_train(theta - first.delta, rest, first.optimizer_state).delta - whole).abs().max()
    fresh = (first.delta + muon.local_train(theta - first.delta, rest).delta - whole).abs().max()
    assert carried < whole.abs().max() / 50 and carried < fresh / 20


def test_adamw_stays_out_of_the_digest_and_muon_enters_it():
    from pathlib import Path

    from sim.scenario import load_scenario

    ROOT = Path(__file__).resolve().parent.parent
    base = load_scenario(ROOT / "scenarios" / "lm_micro_paper.yaml")
    assert "inner_optimizer" not in base.resolved()["trainer"]["config"]
    same = load_scenario(ROOT / "scenarios" / "lm_micro_paper.yaml", overrides={"trainer.config.inner_optimizer": "adamw"})
    assert same.digest() == base.digest()
    muon = load_scenario(ROOT / "scenarios" / "lm_micro_paper.yaml", overrides={"trainer.config.inner_optimizer": "muon"})
    assert muon.digest() != base.digest() and muon.resolved()["trainer"]["config"]["inner_optimizer"] == "muon"


def test_pretraining_is_adamw_whatever_the_inner_optimizer():
    """The paper pretrains with Adam; the cached checkpoint is shared by AdamW and Muon runs (its key ignores the
    inner optimizer), so both must pretrain alike."""
    torch.set_num_threads(1)
    muon = LMTrainer({**MICRO, "pretrain_steps": 3, "inner_optimizer": "muon"}, seed=0, num_shards=4)
    adamw = LMTrainer({**MICRO, "pretrain_steps": 3}, seed=0, num_shards=4)
    assert muon.pretrain_key() == adamw.pretrain_key()
    assert torch.equal(muon._pretrain_now(muon.pretrain_path(), 1, None), adamw._pretrain_now(adamw.pretrain_path(), 1, None))


def test_pretraining_lr_schedules():
    """constant (as before: warmup, then pretrain_lr) or cosine down to pretrain_final_lr at the last step."""
    from trainers.configs import LMConfig
    from trainers.lm import pretrain_lr

    constant = LMConfig(size="micro", pretrain_steps=1000, pretrain_lr=3e-3, pretrain_warmup=100)
    assert [pretrain_lr(s, constant) for s in (0, 99, 100, 999)] == [3e-5, 3e-3, 3e-3, 3e-3]
    cosine = constant.model_copy(update={"pretrain_schedule": "cosine", "pretrain_final_lr": 1e-3})
    lrs = [pretrain_lr(s, cosine) for s in range(1000)]
    assert lrs[:100] == [pretrain_lr(s, constant) for s in range(100)] and lrs[100] == 3e-3
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:])) and abs(lrs[-1] - 1e-3) < 1e-8
    assert abs(pretrain_lr(550, cosine) - 2e-3) < 1e-12  # halfway down the cosine
    micro = LMTrainer({**MICRO, "pretrain_steps": 3}, seed=0, num_shards=4)
    cos = LMTrainer({**MICRO, "pretrain_steps": 3, "pretrain_schedule": "cosine"}, seed=0, num_shards=4)
    assert micro.pretrain_key() != cos.pretrain_key()
