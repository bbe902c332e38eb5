"""What a run needs in memory, estimated from its scenario before anything is built (issue 21, item 5).

Validation refuses a scenario whose estimate exceeds the machine's memory,
in one line with the estimate, instead of letting the run die later with an
out-of-memory traceback (or the kernel's OOM killer). The estimate is the
bound that ``benchmarks/memory_lm.py`` measures runs against
(``benchmarks/RESULTS.md``: the 20M LM's peak RSS is 0.65 and 0.34 of it at
k = 4 and 16)::

    (jobs in flight + 3) x (model + one AdamW state) + 1 GiB

extended by what that benchmark keeps small on purpose (it trains on one
sequence a step) and by what other schedules keep. With P the trainer's
parameters and b bytes per value (float32: 4), its terms are:

- **model + one AdamW state**, ``U = 3 b P``: the parameters and AdamW's two
  moments; every other term is counted in these units.
- **jobs in flight**, one ``U`` each: a job holds the model it was dispatched
  with and, once computed, its pseudo-gradient. Asynchronous schedules keep
  every worker's job in flight; a synchronous round holds all k
  pseudo-gradients and stacks them to average: k as well; the 1-worker
  baseline (``single``) has one.
- **+ 3**: the server's model and its outer optimizer's state, the trainer's
  own module with its gradients, the AdamW state of the job being computed
  (one at a time), and the temporaries of an outer step.
- **state kept apart from the jobs**: the 1-worker baseline carries its AdamW
  state from round to round (one ``U``); workers that keep their own model
  (streaming: the fragments merged last, its drift and its inner AdamW state;
  eager / delayed: its replica, its outer state, the pseudo-gradients it
  still owes) two ``U`` each, k of them; HALoS's regional servers (a model,
  the model merged last, an outer state) two ``U`` each, one a region. A
  schedule this module does not know is counted like the overlapping ones.
  With ``method.inner_state`` keep or shard, the k stored AdamW states one
  ``U`` each (the baseline's and Streaming DiLoCo's are counted above).
- **activations**: the largest forward and backward pass of one step (or an
  evaluation), as the trainer reports it. Only what lands in this machine's
  memory: an LM on ``device: cpu``; with ``auto`` or ``cuda`` they live on
  the GPU, whose memory this check does not know, and are not counted.
- **data**: the training data the trainer holds in memory (the toy's
  examples). The LM's corpus and tokenizer are in the 1 GiB, as in the
  benchmark.
- **1 GiB**: Python, torch and the libraries.

Not counted: the extra processes of ``--executor process`` (each builds its
own trainer) and GPU memory.

A trainer reports its part from its settings alone, without building a
model: its ``Config`` (the pydantic model that validates ``trainer.config``)
has a method ``memory_needs(*, num_shards, batch_multiplier) -> TrainerNeeds``
(``trainers/configs.py`` for the built-in ones). A user's trainer without
one is not estimated.

The machine's memory is its physical RAM; ``ASYNCSIM_MEMORY_LIMIT`` (bytes,
or with a unit: ``64GiB``) sets the limit instead: for a cluster whose nodes
differ from the machine that validates, or for tests.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from sim.errors import ScenarioError

GIB = 2**30
BASE_BYTES = GIB  # Python, torch and the libraries (benchmarks/memory_lm.py's + 1 GiB)
SERVER_UNITS = 3  # the "+ 3" of the bound
LIMIT_ENV = "ASYNCSIM_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30,
          "t": 2**40, "tib": 2**40, "p": 2**50, "pib": 2**50}


@dataclass(frozen=True)
class TrainerNeeds:
    """What a trainer needs, from its settings alone (see the module docstring)."""

    params: int  # P: values in the flat parameter vector
    value_bytes: int = 4  # bytes per parameter value: float32 4, float64 8
    activation_bytes: int = 0  # the largest forward and backward of one step, if held in this machine's memory
    data_bytes: int = 0  # training (and evaluation) data held in memory


@dataclass(frozen=True)
class Estimate:
    """The terms of the bound, in bytes, and what they count."""

    needs: TrainerNeeds
    jobs: int  # jobs in flight
    kept_units: int  # units of model + AdamW state kept apart from the jobs
    kept_what: str  # what they are, for the message
    stacked: int = 1  # jobs trained in one pass (compute.stack): their activations at once, gradient and start rows

    @property
    def unit(self) -> int:
        """Model + one AdamW state: 3 values a parameter."""
        return 3 * self.needs.value_bytes * self.needs.params

    @property
    def total(self) -> int:
        units = self.jobs + SERVER_UNITS + self.kept_units
        stack_rows = 0 if self.stacked == 1 else 2 * self.stacked * self.needs.value_bytes * self.needs.params
        return (units * self.unit + self.stacked * self.needs.activation_bytes + stack_rows + self.needs.data_bytes
                + BASE_BYTES)

    def describe(self) -> str:
        """The terms in a few words: '5.2e11 float32 parameters: model + AdamW state x (4 jobs in flight + 3) = ...'."""
        n = self.needs
        dtype = {4: "float32", 8: "float64"}.get(n.value_bytes, f"{n.value_bytes}-byte")
        jobs = f"{self.jobs} job{'s' * (self.jobs != 1)} in flight + {SERVER_UNITS}"
        if self.kept_units:
            jobs += f" + {self.kept_what}"
        parts = [f"{count(n.params)} {dtype} parameters: model + AdamW state x ({jobs}) = "
                 f"{size((self.jobs + SERVER_UNITS + self.kept_units) * self.unit)}"]
        activations = "activations" if self.stacked == 1 else f"activations x {self.stacked} stacked jobs"
        for name, value in ((activations, self.stacked * n.activation_bytes), ("data", n.data_bytes)):
            if value >= self.total / 100:  # smaller terms are noise in the message
                parts.append(f"{name} {size(value)}")
        parts.append(f"{size(BASE_BYTES)} for Python and torch")
        return "; ".join(parts)


def schedule_terms(schedule: str, k: int, regions: int) -> tuple[int, int, str]:
    """(jobs in flight, units of model + AdamW state kept apart from them, what those are) of a schedule."""
    if schedule == "single":
        return 1, 1, "its carried AdamW state"
    if schedule in ("async", "sync"):
        return k, 0, ""
    if schedule == "halos":
        return k, 2 * regions, f"2 x {regions} regional server{'s' * (regions != 1)}"
    return k, 2 * k, f"2 x {k} workers' own models and states"  # streaming, eager, delayed, and any new schedule


def estimate(needs: TrainerNeeds, *, schedule: str, k: int, regions: int = 1, inner_state: str = "reset",
             stacked: int = 1) -> Estimate:
    """The memory bound of a run of ``k`` workers on ``schedule`` with a trainer that needs ``needs``; pure.

    ``inner_state`` keep / shard stores one AdamW state per worker / shard (k of them) between rounds
    (sim/inner_state.py), counted one unit each; the baseline and Streaming DiLoCo count theirs already.
    ``stacked`` jobs trained in one pass (``compute.stack``) hold their activations at once, and a gradient
    and a start row each beside the model and AdamW state their jobs count already.
    """
    jobs, kept, what = schedule_terms(schedule, k, regions)
    if inner_state != "reset" and schedule not in ("single", "streaming"):
        kept += k
        what = (what + " + " if what else "") + f"{k} kept inner states"
    return Estimate(needs, jobs, kept, what, max(1, min(stacked, jobs)))


def scenario_estimate(scenario: Any, config: Any, k: int | None = None) -> Estimate:
    """The estimate of a validated scenario whose trainer settings are ``config`` (has ``memory_needs``).

    ``k`` replaces the scenario's number of workers (to see what they cost).
    """
    k = scenario.workers.k if k is None else k
    schedule = scenario.method.schedule
    regions = len({scenario.workers.device(w).region for w in range(min(k, len(scenario.workers.devices)))})
    needs = config.memory_needs(num_shards=k, batch_multiplier=k if schedule == "single" else 1)
    # a micro-batch caps a stacked pass's sequences as it caps one job's (trainers/lm.py): activations as one job's
    stacked = 1 if getattr(config, "micro_batch_size", None) else scenario.compute.stack
    return estimate(needs, schedule=schedule, k=k, regions=regions, inner_state=scenario.method.inner_state,
                    stacked=stacked)


def machine_limit() -> tuple[int, str] | None:
    """(bytes, how to say it) of the memory a run may use here: ``$ASYNCSIM_MEMORY_LIMIT``, else the physical RAM.

    None where neither is known (no ``os.sysconf``): nothing is checked.
    """
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([A-Za-z]*)", text)
        if not m or m.group(2).lower() not in _UNITS:
            raise ScenarioError(f"{LIMIT_ENV}={text!r}: expected a number of bytes, optionally with a unit (e.g. 64GiB)")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()]), f"the limit {LIMIT_ENV} is"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine has"
    except (AttributeError, ValueError, OSError):
        return None


def check(scenario: Any, config_model: Any, source: str) -> None:
    """Refuse ``scenario`` in one line if its estimate exceeds the machine's memory (see the module docstring).

    ``config_model`` is its trainer's settings model; without a
    ``memory_needs`` method the scenario is not estimated.
    """
    if not callable(getattr(config_model, "memory_needs", None)):
        return
    limit = machine_limit()
    if limit is None:
        return
    config = config_model(**scenario.trainer.config)
    est = scenario_estimate(scenario, config)
    if est.total <= limit[0]:
        return
    raise ScenarioError(f"{source}: field '{culprit(scenario, config, est.total)}': the run needs about "
                        f"{size(est.total)} of memory ({est.describe()}), {limit[1]} {size(limit[0])}")


def culprit(scenario: Any, config: Any, total: int) -> str:
    """The field whose value costs the most memory: the one that, back at its default, saves the most.

    Candidates are the trainer's settings that differ from their defaults,
    and ``workers.k`` (against one worker); ``trainer.config`` if none saves
    anything. ``device`` is none: moving the activations to a GPU hides them
    from the estimate, it does not make them smaller.
    """
    saved: dict[str, int] = {"workers.k": total - scenario_estimate(scenario, config, k=1).total}
    for name, field in type(config).model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "device" or getattr(config, name) == default:
            continue
        try:
            saved[f"trainer.config.{name}"] = total - scenario_estimate(scenario, config.model_copy(update={name: default})).total
        except Exception:  # noqa: BLE001  a combination the trainer cannot estimate: not a candidate
            continue
    best = max(saved, key=lambda f: saved[f])
    return best if saved[best] > 0 else "trainer.config"


def size(n: float) -> str:
    """Bytes in binary units, three significant digits: '512 MiB', '23.4 GiB', '48.0 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def count(n: int) -> str:
    """A parameter count: '264,708', '21,105,920', '5.2e11'."""
    return f"{n:,}" if n < 10**9 else f"{n:.1e}".replace("e+", "e")
