"""The prepared GPU script's CPU fallback (benchmarks/gpu.py): it must run where no GPU is lent, so it is ready when one is."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmark_runs_on_the_cpu_and_finds_its_run_hashes_identical(tmp_path_factory):
    env = {**os.environ, "ASYNCSIM_CACHE": str(tmp_path_factory.getbasetemp() / "asyncsim-cache")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "run hashes" in out.stdout and "-> identical" in out.stdout
    assert "| micro, k = 4 |" in out.stdout  # the rows for benchmarks/RESULTS.md
