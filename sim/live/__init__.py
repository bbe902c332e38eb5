"""A scenario run as a real asynchronous system: workers are Ray actors, the server runs the same schedule.

The simulated engine (sim/engine.py) decides *what* the server does with
each arrival through the schedules (sim/schedules/) and outer updates
(sim/outer/); *when* things happen comes from its planner. A live run keeps
the first and replaces the second:

- :mod:`sim.live.clock`: simulated seconds read off the real clock, at a
  time scale S (S real seconds per simulated second);
- :mod:`sim.live.fleet`: one Ray actor per worker trains each job with the
  scenario's trainer and holds its result until S x the job's planned
  duration (download, compute, upload) has passed since its real dispatch;
  models and pseudo-gradients travel through Ray's object store;
- :mod:`sim.live.engine`: the engine with arrivals taken in the order they
  really come in, timed events (device churn, the grace window's close,
  HALoS's pushes) acted on when the real clock reaches them;
- :mod:`sim.live.against`: how far the live run is from the simulation.

Everything else (dispatch specs, DyLU step counts, shard draws, the outer
updates, the records) is the simulation's code, so when every arrival comes
in the simulated order the final model is the simulation's, bit for bit.
"""
