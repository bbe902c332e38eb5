"""Shared helpers of the benchmarks: paths, machine facts, timing, profiles, result rows.

Every benchmark script prints its details for a human and, for each target
it checks, one machine-readable line ``BENCH_RESULT {json}`` that
``run_all.py`` collects into the summary table.
"""
from __future__ import annotations

import cProfile
import ctypes
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The LM's corpus and pretrained checkpoint are cached under the working directory.
os.chdir(ROOT)

LM_SCENARIO = ROOT / "scenarios" / "lm_tiny_very_heterogeneous.yaml"
TOY_SCENARIO = ROOT / "scenarios" / "very_heterogeneous.yaml"
RESULT_TAG = "BENCH_RESULT "


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> float:
    return os.getloadavg()[0]


def tree_state() -> str:
    """The commit measured, and the tracked files outside benchmarks/ that differ from it."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "no git"
    changed = [p for p in git("diff", "--name-only", "HEAD").splitlines() if not p.startswith("benchmarks/")]
    return f"{head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


def machine_line() -> str:
    import torch

    return (
        f"{os.cpu_count()} cores ({cpu_model()}), torch {torch.__version__}, python {platform.python_version()}, "
        f"load {load_average():.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, tree {tree_state()}"
    )


def header(title: str) -> None:
    """Print the benchmark's title and the machine; pins malloc (see :func:`pin_malloc`)."""
    malloc = pin_malloc()
    print(f"\n== {title} ==")
    print(f"   {machine_line()}, {malloc}")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 1 << 30


def pin_malloc() -> str:
    """Make glibc's malloc keep and reuse freed memory (this process and the ones it starts).

    By default glibc adapts its mmap threshold as blocks are freed and
    returns the top of the heap to the OS, so whether a step's multi-MB
    tensors come from reused memory or from freshly faulted pages changes
    from run to run: 0.2-0.45 million minor page faults in a 12 s tiny-LM
    phase, or none, moving either side of a ratio by 5-10%. Pinning the
    thresholds (both sides alike) removes that noise. Set
    ``ASYNCSIM_BENCH_MALLOC=default`` to measure with glibc's defaults.
    """
    if os.environ.get("ASYNCSIM_BENCH_MALLOC") == "default":
        return "glibc malloc defaults"
    # read at start-up by processes started from here (the process executor's pool)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(TRIM_THRESHOLD))
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        ok = False
    return "malloc pinned (mmap threshold 32 MiB, trim threshold 1 GiB)" if ok else "malloc defaults (no glibc mallopt)"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of ``fn()`` and its value."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds of this process for ``fn()``, and its value.

    On a shared machine CPU time of single-threaded work is the steadier of
    the two: it does not count the time other processes held the core.
    """
    cpu = time.process_time()
    wall, value = timed(fn)
    return wall, time.process_time() - cpu, value


def profile_top(fn: Callable[[], Any], top: int = 15, sort: str = "tottime") -> tuple[str, Any]:
    """Run ``fn`` under cProfile; the ``top`` entries by ``sort`` as text, and ``fn``'s value."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        value = fn()
    finally:
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    # drop pstats' preamble up to the column header
    text = out.getvalue()
    start = text.find("   ncalls")
    return (text[start:] if start >= 0 else text).rstrip(), value


def emit(name: str, measured: float | None, target: float | None, unit: str, *, higher_is_better: bool, note: str = "",
         ok: bool | None = None) -> None:
    """Print one result row for run_all.py (measured None = skipped, with ``note`` saying why).

    ``ok``: the verdict when the caller decides it (a tie inside the run-to-run spread meets "no slower");
    otherwise measured against target.
    """
    if ok is None and measured is not None and target is not None:
        ok = measured >= target if higher_is_better else measured <= target
    row = {
        "name": name,
        "measured": measured,
        "target": target,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "ok": ok,
        "note": note,
        "load": round(load_average(), 2),
    }
    print(RESULT_TAG + json.dumps(row), flush=True)


def skip(name: str, reason: str, target: float | None = None, unit: str = "", higher_is_better: bool = True) -> None:
    print(f"SKIPPED {name}: {reason}", flush=True)
    emit(name, None, target, unit, higher_is_better=higher_is_better, note=f"skipped: {reason}")


def lm_unavailable() -> str | None:
    """Why the tiny-LM benchmarks cannot run here, or None when they can."""
    if not (ROOT / "trainers" / "lm.py").exists():
        return "trainers/lm.py does not exist yet"
    if not LM_SCENARIO.exists():
        return f"{LM_SCENARIO.relative_to(ROOT)} does not exist yet"
    try:
        from sim import load_scenario
        from sim.trainer_factory import build_trainer

        sc = load_scenario(LM_SCENARIO)
        with torch_threads(sc.compute.threads):  # the checkpoint's cache key includes the thread count
            build_trainer(sc).init_params()  # builds the cached pretrained checkpoint once
    except Exception as exc:  # noqa: BLE001 - any failure of the LM side is a reason to skip
        return f"the tiny LM failed to build: {type(exc).__name__}: {exc}"
    return None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
