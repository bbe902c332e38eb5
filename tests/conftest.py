"""Test-wide settings: the run store is never a developer's own (``$ASYNCSIM_RUNS``)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_run_store(monkeypatch):
    """Runs go to ./reports/runs of each test's working directory; ``--runs`` changes are undone afterwards."""
    monkeypatch.setenv("ASYNCSIM_RUNS", "")
    yield
