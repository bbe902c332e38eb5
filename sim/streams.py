"""The purposes of a run's independent RNG streams, each keyed off the scenario seed.

Every stream is ``SeedSequence([seed, purpose, ...])``
(:func:`trainers.base.seeded_rng`), so the trainer's own streams (model
init, data order), the shard draws (Eq. 2), the device jitter and the churn
timelines never shift one another, and adding a purpose shifts none.
"""
from __future__ import annotations

#: the trainer's integer seed, from which it derives its own streams
STREAM_TRAINER = 0
#: which shard each job samples (Eq. 2)
STREAM_SHARDS = 1
#: the devices' per-job time jitter
STREAM_JITTER = 2
#: churn timelines, one sub-stream per worker: ``(seed, STREAM_CHURN, w)``
STREAM_CHURN = 3
