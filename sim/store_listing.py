"""What a run store holds, and asyncsim's own leftovers in it (``asyncsim runs``, ``runs --clean``).

A store holds complete run folders (``NAME-METHOD-sSEED-DIGEST`` with a
``summary.json``) and, after interruptions or failures, things asyncsim
itself left beside them:

- ``NAME.damaged`` / ``NAME.damaged-N``: a folder that failed its proof
  and was set aside instead of being reused (:func:`sim.records.set_aside`);
- ``.NAME.partial``: an interrupted run's checkpoint (``run --resume``
  continues it);
- ``.NAME.old-PID`` / ``.NAME.tmp-PID``: a replaced or half-written folder
  of a command that died mid-write;
- ``.NAME.lock``: a run's lock file whose holder died.

Only those are leftovers; anything else in the folder is the user's and is
never listed for removal. A leftover still in use (its run's lock is held,
its writer's process alive) is not one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

#: the names asyncsim gives what it leaves in a store, with the part that names the run
_LEFTOVER = re.compile(r"^(?:\.(?P<hidden>.+)\.(?P<kind>partial|lock|old-(?P<pid>\d+)|tmp-(?P<tpid>\d+))"
                       r"|(?P<name>.+)\.damaged(?:-\d+)?)$")


@dataclass(frozen=True)
class StoredRun:
    folder: Path
    method: str
    seed: int
    status: str
    digest: str
    size_bytes: int
    age_seconds: float


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_runs(root: Path) -> list[StoredRun]:
    """The complete run folders in ``root``, by name."""
    runs = []
    now = time.time()
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        summary_path = folder / "summary.json"
        if folder.name.startswith(".") or not summary_path.is_file():
            continue
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        runs.append(StoredRun(folder, str(summary.get("method", "?")), int(summary.get("seed", -1)),
                              str(summary.get("status", "finished")), str(summary.get("scenario_digest", ""))[:12],
                              _size(folder), now - summary_path.stat().st_mtime))
    return runs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked(root: Path, run_name: str) -> bool:
    """Whether a command holds the lock of run ``run_name`` now (it is computing that run)."""
    from filelock import FileLock, Timeout

    from sim.store import lock_path

    path = lock_path(root / run_name)
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def leftovers(root: Path) -> list[Path]:
    """asyncsim's own leftovers in ``root`` that nothing is using, by name."""
    root = Path(root)
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        m = _LEFTOVER.match(path.name)
        if m is None:
            continue
        if m["name"] is not None:
            found.append(path)
            continue
        pid = m["pid"] or m["tpid"]
        if pid is not None and _alive(int(pid)):
            continue  # a command is writing it now
        if m["kind"] in ("partial", "lock") and _locked(root, m["hidden"]):
            continue  # its run is being computed now
        found.append(path)
    return found


def clean(root: Path) -> list[tuple[Path, int]]:
    """Remove :func:`leftovers`; returns what was removed with its size in bytes."""
    removed = []
    for path in leftovers(root):
        size = _size(path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append((path, size))
    return removed
