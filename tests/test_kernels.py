"""torch's CPU kernels are pinned to one instruction set on x86 and recorded in every run (trainers/kernels.py)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from sim.summary import made_with_other_versions, software_versions

ROOT = Path(__file__).resolve().parent.parent
X86 = platform.machine().lower() in ("x86_64", "amd64")
PROBE = ("import json, os, sim, torch; print(json.dumps({'cpu': str(torch.backends.cpu.get_cpu_capability()), "
         "'env': {k: os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA')}}))")


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**clean, "PYTHONPATH": str(ROOT), **env})
    return json.loads(out.stdout)


@pytest.mark.skipif(not X86, reason="the pin is for x86 machines only")
def test_importing_asyncsim_pins_the_avx2_kernels_and_keeps_a_users_choice():
    pinned = _probe()
    assert pinned["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert pinned["cpu"] in ("AVX2", "DEFAULT")  # never AVX-512, on any x86 machine
    chosen = _probe(ATEN_CPU_CAPABILITY="default")
    assert chosen["cpu"] == "DEFAULT" and chosen["env"]["ATEN_CPU_CAPABILITY"] == "default"


def test_a_run_records_its_kernels_and_a_reused_run_from_other_kernels_says_so():
    now = software_versions()
    assert now["cpu"] and set(now) == {"asyncsim", "torch", "numpy", "cpu"}
    assert made_with_other_versions({"versions": now}) is None
    older = {key: value for key, value in now.items() if key != "cpu"}  # made before the kernels were recorded
    assert made_with_other_versions({"versions": older}) is None
    elsewhere = made_with_other_versions({"versions": {**now, "cpu": "AVX512"}})
    assert elsewhere is not None and "cpu AVX512" in elsewhere
