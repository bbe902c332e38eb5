"""Test-wide settings: the run store is never a developer's own (``$ASYNCSIM_RUNS``); property tests draw the
same examples on every machine (a CI run is reproducible; ``--hypothesis-profile=default`` explores new ones)."""
from __future__ import annotations

import pytest
from hypothesis import settings

# no per-example deadline: a loaded CI machine (or mutmut's instrumented code) is slow, and timing is never
# the property under test
settings.register_profile("asyncsim", derandomize=True, deadline=None)
settings.load_profile("asyncsim")


@pytest.fixture(autouse=True)
def _own_run_store(monkeypatch):
    """Runs go to ./reports/runs of each test's working directory; ``--runs`` changes are undone afterwards."""
    monkeypatch.setenv("ASYNCSIM_RUNS", "")
    yield
