"""The run store: a stored run proves itself before it is served, and one command computes a run at a time.

Run folders are keyed by the scenario's digest (:func:`sim.runner.default_run_folder`),
but a name is only a claim: ``run --out`` may write any run into a store
folder's name, and a file in a folder can be edited or lost. So every path
that reuses a stored run (``run``, ``compare``, ``sweep``, ``reproduce``,
adoption of older folders, runs coming back from a cluster) asks
:func:`reusable`, which re-hashes the tables against the recorded run hash
and checks that the run is the scenario asked for. A folder that fails is
renamed ``NAME.damaged`` (kept, never deleted), named in one line, and the
run computed again.

Two commands sharing a store would compute a missing run twice; a file lock
per run folder (:func:`computing`) makes the second wait for the first and
then reuse its run.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from sim.records import read_summary, set_aside, tables_problem

if TYPE_CHECKING:  # annotations only
    from sim.scenario import Scenario

Notify = Callable[[str], None]


def run_problem(folder: Path, scenario: Scenario) -> str | None:
    """Why ``folder`` does not hold ``scenario``'s run (None when it does).

    Its tables must hash to its recorded run hash (:func:`sim.records.tables_problem`),
    and the run must be this scenario's: its summary records this digest,
    or, for a folder from before a field with a default was added (whose
    recorded digest is the older one), the scenario stored beside it,
    validated today, has this digest.
    """
    problem = tables_problem(folder)
    if problem is not None:
        return problem
    recorded = read_summary(folder).get("scenario_digest")
    want = scenario.digest()
    if recorded == want or stored_digest(folder) == want:
        return None
    return f"it holds the run of another scenario (digest {str(recorded)[:12]}, expected {want[:12]})"


def stored_digest(folder: Path) -> str | None:
    """The digest, by today's rules, of the scenario a run folder stores (None if it no longer validates)."""
    import yaml

    try:
        return stored_scenario(folder).digest()
    except (OSError, ValueError, yaml.YAMLError):
        return None


def stored_scenario(folder: Path) -> Scenario:
    """The scenario a run folder stores (its resolved ``scenario.yaml``), validated by today's rules.

    Raises ``OSError``, ``yaml.YAMLError`` or :class:`sim.errors.ScenarioError` (a ``ValueError``).
    """
    import yaml

    from sim.scenario import scenario_from_dict

    with open(Path(folder) / "scenario.yaml", encoding="utf-8") as fh:
        return scenario_from_dict(yaml.safe_load(fh), str(folder))


def reusable(folder: Path, scenario: Scenario, say: Notify) -> bool:
    """Whether ``folder`` holds ``scenario``'s run, proven; a folder that fails is set aside and named in one line."""
    folder = Path(folder)
    if not folder.exists():
        return False
    problem = run_problem(folder, scenario)
    if problem is None:
        return True
    say(f"{folder}: not reused, {problem}; kept it as {set_aside(folder).name} and computing the run again")
    return False


def lock_path(folder: Path) -> Path:
    """The lock of a run folder being computed: a hidden file beside it in the store."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def computing(folder: Path, say: Notify) -> Iterator[bool]:
    """Hold the run folder's lock while its run is computed; yields whether another command held it first.

    The lock is an advisory file lock (``filelock``, portable), so it is
    released when its holder ends, even by a crash: a stale lock never
    blocks. Its file is removed before the lock is released, so the store
    keeps nothing but runs; a waiter that then wins the removed file's lock
    notices (filelock checks the file still has a name) and takes the lock
    anew. A command that had to wait should look again for the run the other
    one just finished.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(folder)))
    waited = False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited = True
        say(f"another asyncsim is computing {folder.name} in this store; waiting for it to finish")
        lock.acquire()
    try:
        yield waited
    finally:
        lock_path(folder).unlink(missing_ok=True)
        lock.release()
