"""Each worker's inner optimizer state between rounds: ``method.inner_state`` (reset, keep or shard).

The paper resets it: "when worker B picks up the data shard worker A just
finishes training on, we reset the AdamW's optimizer state. In other words,
each local worker-side training is an independent training process with a
new optimizer" (Liu et al. 2024, App. 10.1, following DiLoCo). Others keep
it: the HALoS authors' workers, torchft's Streaming DiLoCo, and a single
data-parallel run, which is one optimizer throughout. On the micro LM the
difference is the largest single lever measured (reports/lm_micro_diloco_keep_inner_state).

* ``reset``: every round starts a fresh AdamW (no state is stored);
* ``keep``: a worker continues its own last round's state, whatever shard it
  trains on next;
* ``shard``: the state follows the data: a round on shard i continues the
  last round that arrived from shard i, whichever worker ran it, so each
  shard is one training process handed from worker to worker (the state
  would travel with the shard; its bytes are not simulated on the links).

A round's state is what the job that *arrived* returned: a round lost to
churn leaves the stored state as it was (the worker or shard continues from
before it), and a round discarded at the end changes nothing. With
``shard``, two rounds in flight on one shard both start from the state
stored at their dispatch; the later arrival's state is the one kept.

The state travels in the job's inputs and outputs, so a job stays a pure
function of its inputs, and the states are part of a checkpoint, so a
resumed run ends with the same bytes. Schedules that carry a state of their
own (the 1-worker baseline, Streaming DiLoCo's workers) keep doing so; the
engine consults this store for every other schedule (sim/engine.py).
"""
from __future__ import annotations

from typing import Any


class InnerStates:
    """The stored inner optimizer states, by worker (``keep``) or by shard (``shard``); empty under ``reset``."""

    def __init__(self, mode: str):
        if mode not in ("reset", "keep", "shard"):
            raise ValueError(f"inner_state {mode!r}: expected reset, keep or shard")
        self.mode = mode
        self.states: dict[int, Any] = {}

    @property
    def carried(self) -> bool:
        """Whether jobs carry a state in and out (their spec asks the trainer for the state after the round)."""
        return self.mode != "reset"

    def _key(self, worker: int, shard: int) -> int:
        return worker if self.mode == "keep" else shard

    def start(self, worker: int, shard: int) -> Any:
        """The state a round of ``worker`` on ``shard`` starts from (None: a fresh optimizer)."""
        return self.states.get(self._key(worker, shard)) if self.carried else None

    def arrived(self, worker: int, shard: int, state: Any) -> None:
        """A round arrived with the state its optimizer ended in."""
        if self.carried:
            self.states[self._key(worker, shard)] = state

    def state_dict(self) -> dict[str, Any]:
        return {"states": dict(self.states)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.states = {int(key): value for key, value in state["states"].items()}
