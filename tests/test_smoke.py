from sim import load_scenario, simulate


def test_short_run_produces_metrics_and_events():
    sc = load_scenario("scenarios/very_heterogeneous.yaml", overrides={"schedule.t_max": 400, "trainer.config.hidden": 32})
    result = simulate(sc)
    assert result.metrics["t_local"].iloc[-1] >= 400
    assert set(result.events["event"]) >= {"dispatch", "complete", "sync"}
