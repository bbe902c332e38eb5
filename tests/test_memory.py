"""A run that cannot fit in memory is refused at validation, in one line with its estimate (issue 21, item 5)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.memory import LIMIT_ENV, TrainerNeeds, estimate, scenario_estimate
from sim.scenario import load_scenario
from sim.trainer_names import trainer_config_class
from trainers.configs import ToyConfig, toy_params

ROOT = Path(__file__).resolve().parent.parent
SCEN = str(ROOT / "scenarios" / "very_heterogeneous.yaml")
GIB = 2**30
runner = CliRunner()


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[0]


def estimated(path: str | Path, overrides: dict | None = None) -> int:
    sc = load_scenario(path, overrides=overrides)
    return scenario_estimate(sc, trainer_config_class(sc.trainer.name)(**sc.trainer.config)).total


@pytest.fixture
def no_limit(monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)


def test_the_issues_hidden_layer_of_a_billion_is_refused_by_every_command_before_computing(tmp_path, monkeypatch, no_limit):
    monkeypatch.chdir(tmp_path)
    big = ["-s", "trainer.config.hidden=1000000000"]
    for args in (["validate", SCEN], ["run", SCEN, "--out", "out"], ["compare", SCEN, "--methods", "diloco,dn_dylu"],
                 ["sweep", SCEN, "--grid", "schedule.H=10,20"]):
        result = runner.invoke(app, [*args, *big, "--runs", "store"] if args[0] != "validate" else [*args, *big])
        assert result.exit_code == 2, (args, result.output)
        line = one_error_line(result)
        assert line.startswith(f"error: {SCEN}: field 'trainer.config.hidden': the run needs about ")
        assert re.search(r"needs about [\d.]+ TiB of memory \(5\.2e11 float32 parameters: .*4 jobs in flight \+ 3\)", line)
        assert re.search(r"this machine has [\d.]+ GiB$", line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing computed, nothing written


def test_the_estimate_brackets_the_measured_peak_of_the_memory_benchmark():
    """benchmarks/RESULTS.md: the 20M LM's peak RSS at k = 4 and 16 (dn_dylu); the estimate lies above it, within 4x."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from memory_lm import scenario_overrides

    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    for k in (4, 16):
        m = re.search(rf"memory, 20M LM, dn_dylu, k = {k}: peak RSS / bound \| ([\d.]+) / ([\d.]+) GiB", results)
        assert m, f"no k = {k} row in RESULTS.md"
        peak, bound = float(m.group(1)) * GIB, float(m.group(2)) * GIB
        est = estimated(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml", scenario_overrides("20M", k, "dn_dylu"))
        assert peak < bound <= est + 0.01 * GIB < 4 * peak, (k, peak / GIB, bound / GIB, est / GIB)


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_validates_on_the_projects_24_gib_machine(path, monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "23GiB")  # benchmarks/RESULTS.md's machine: 24 GiB, of which the kernel sees 23.5
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_a_scenario_just_over_the_limit_is_refused_and_one_just_under_passes(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "1PiB")
    need = estimated(SCEN)
    monkeypatch.setenv(LIMIT_ENV, str(need))
    assert runner.invoke(app, ["validate", SCEN]).exit_code == 0
    monkeypatch.setenv(LIMIT_ENV, str(need - 1))
    result = runner.invoke(app, ["validate", SCEN])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"the limit {LIMIT_ENV} is" in line and "needs about 1.3 GiB" in line
    assert "field 'workers.k'" in line  # nothing in the toy's settings is off its defaults: the workers cost most


def test_the_field_named_is_the_one_that_costs_the_memory(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "23GiB")
    lm = str(ROOT / "scenarios" / "lm_20M_k4.yaml")
    workers = one_error_line(runner.invoke(app, ["validate", lm, "-s", "workers.k=100000"]))
    assert "field 'workers.k'" in workers and "100000 jobs in flight" in workers
    # activations count where they land in this machine's memory: the 150M LM's batch of 128 x 256 tokens on the CPU
    # (measured: 363 MB a sequence) cannot fit in 24 GiB; on device: auto they are meant for a GPU
    cpu = one_error_line(runner.invoke(app, ["validate", str(ROOT / "scenarios" / "lm_150M_k4.yaml"),
                                             "-s", "trainer.config.device=cpu"]))
    assert "field 'trainer.config.size'" in cpu and "activations 50.9 GiB" in cpu
    batch = one_error_line(runner.invoke(app, ["validate", str(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml"),
                                               "-s", "trainer.config.batch_size=1000000"]))
    assert "field 'trainer.config.batch_size'" in batch
    # micro-batches bound the activations: the same batch in chunks of 8 fits
    ok = runner.invoke(app, ["validate", str(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml"),
                             "-s", "trainer.config.batch_size=1000000", "-s", "trainer.config.micro_batch_size=8"])
    assert ok.exit_code == 0, ok.output


def test_a_trainer_of_your_own_without_memory_needs_is_not_estimated(tmp_path, monkeypatch):
    pkg = tmp_path / "mymem"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text("from trainers.null import NullTrainer\n\n\nclass Mine(NullTrainer):\n    Config = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    scen = tmp_path / "mine.yaml"
    scen.write_text(Path(SCEN).read_text().replace("name: toy", "name: mymem.model:Mine"))
    monkeypatch.setenv(LIMIT_ENV, "1")  # one byte: anything estimated is refused
    assert runner.invoke(app, ["validate", str(scen)]).exit_code == 0
    assert runner.invoke(app, ["validate", SCEN]).exit_code == 2


def test_a_malformed_limit_is_one_line(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "lots")
    result = runner.invoke(app, ["validate", SCEN])
    assert result.exit_code == 2 and LIMIT_ENV in one_error_line(result)
    for text, limit in (("1048576", 2**20), ("64GiB", 64 * GIB), ("1.5 T", int(1.5 * 2**40))):
        monkeypatch.setenv(LIMIT_ENV, text)
        from sim.memory import machine_limit

        assert machine_limit()[0] == limit


def test_the_check_never_changes_the_scenario(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "1PiB")
    digest = load_scenario(SCEN).digest()
    monkeypatch.delenv(LIMIT_ENV)
    assert load_scenario(SCEN).digest() == digest


def test_the_toys_closed_form_parameter_count_is_the_models():
    from trainers.toy import ToyTrainer

    for cfg in (ToyConfig(shard_size=10, eval_size=10), ToyConfig(hidden=7, hidden_layers=3, dim=5, shard_size=10, eval_size=10),
                ToyConfig(hidden_layers=0, shard_size=10, eval_size=10)):
        assert toy_params(cfg) == sum(p.numel() for p in ToyTrainer(cfg, num_shards=1)._model.parameters())


def test_the_schedules_terms():
    needs = TrainerNeeds(params=1000)
    unit = 12_000
    assert estimate(needs, schedule="async", k=4).total == 7 * unit + GIB  # benchmarks/memory_lm.py's bound
    assert estimate(needs, schedule="sync", k=4).total == 7 * unit + GIB
    assert estimate(needs, schedule="single", k=4).total == 5 * unit + GIB  # one job, its carried AdamW state
    assert estimate(needs, schedule="streaming", k=4).total == 15 * unit + GIB  # every worker's own model and state
    assert estimate(needs, schedule="halos", k=4, regions=2).total == 11 * unit + GIB
    assert estimate(TrainerNeeds(params=1000, value_bytes=8, activation_bytes=5, data_bytes=7),
                    schedule="async", k=1).total == 4 * 24_000 + 12 + GIB


def test_a_stacked_pass_counts_its_jobs_activations_and_rows():
    """compute.stack: the stack's activations at once, and a gradient and a start row per stacked job."""
    needs = TrainerNeeds(params=1000, activation_bytes=500)
    plain = estimate(needs, schedule="async", k=4).total
    assert estimate(needs, schedule="async", k=4, stacked=4).total == plain + 3 * 500 + 4 * 2 * 4 * 1000
    assert estimate(needs, schedule="async", k=4, stacked=16).total == estimate(needs, schedule="async", k=4, stacked=4).total
    assert estimate(needs, schedule="single", k=4, stacked=4).total == estimate(needs, schedule="single", k=4).total
    sc = load_scenario(ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml")
    config = trainer_config_class(sc.trainer.name)(**sc.trainer.config)
    stacked = sc.with_overrides({"compute.stack": 4})
    assert scenario_estimate(stacked, config).total > scenario_estimate(sc, config).total
    capped = config.model_copy(update={"micro_batch_size": 2})  # a micro-batch caps the whole stack's pass
    assert scenario_estimate(stacked, capped).stacked == 1
