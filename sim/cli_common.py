"""What every ``asyncsim`` command shares: consoles, the one-line error, scenario loading, options.

One vocabulary across commands: each shared option is defined once here and
used by every command that takes it, with the same name, meaning and
default (``tests/test_cli_vocabulary.py`` checks it). Nothing here imports
torch, so ``--help``, ``validate``, ``methods`` and ``profiles`` start fast.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console

from sim.errors import ScenarioError, UserError
from sim.scenario import Scenario, load_scenario, parse_override

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a user error as exactly one line (control characters escaped) and exit."""
    line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
    err_console.print(f"error: {line}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_with(exc: UserError) -> NoReturn:
    """:func:`fail` with a user error's message and exit code."""
    fail(str(exc), exc.exit_code)


def load(file: Path, method: Optional[str], sets: list[str]) -> Scenario:
    """A scenario with ``--method`` and ``--set`` applied, or a one-line error."""
    try:
        overrides = dict(parse_override(s) for s in sets)
        return load_scenario(file, overrides=overrides, method=method)
    except ScenarioError as exc:
        fail_with(exc)


def split_list(text: str, option: str, example: str) -> list[str]:
    """``a,b,c`` -> [a, b, c]; an empty list is an error naming the option."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        fail(f"{option} {text!r}: expected a comma-separated list, e.g. {example}")
    return items


def parse_seeds(text: str) -> list[int]:
    items = split_list(text, "--seed", "0,1,2")
    try:
        return [int(x) for x in items]
    except ValueError:
        fail(f"--seed {text!r}: expected comma-separated integers, e.g. 0,1,2")


def parse_method_sets(items: list[str]) -> dict[str, list[str]]:
    """``METHOD:KEY=VALUE`` items -> {method: [KEY=VALUE, ...]} (a tuned setting for one method only)."""
    per_method: dict[str, list[str]] = {}
    for item in items:
        method, sep, setting = item.partition(":")
        if not sep or "=" not in setting or not method.strip():
            fail(f"--method-set {item!r}: expected METHOD:KEY=VALUE, e.g. async_diloco:method.outer.lr=0.1")
        per_method.setdefault(method.strip(), []).append(setting)
    return per_method


def use_runs_dir(runs: Optional[Path]) -> None:
    """Point the run store at ``--runs`` (also seen by worker processes, through the environment)."""
    if runs is not None:
        os.environ["ASYNCSIM_RUNS"] = str(runs)


def cluster_of(executor: str, address: Optional[str], store: Optional[Path]) -> Any:
    """``--executor ray`` (with ``--address``, ``--store``) as a :class:`sim.cluster.Cluster`; None for local runs."""
    from sim.cluster import Cluster

    if executor not in ("local", "ray"):
        fail(f"--executor {executor!r}: expected local or ray (whole runs; 'asyncsim run --executor' places jobs)")
    if executor == "local":
        if address is not None or store is not None:
            fail(f"{'--address' if address is not None else '--store'} needs --executor ray")
        return None
    if store is not None:
        store = store.resolve()  # every node must see the same path, not its own working directory's
        use_runs_dir(store)  # the shared store is the run store: reports read the runs from it
    return Cluster(address=address, store=store)


def default_jobs(threads: int = 1) -> int:
    """Parallel processes when ``-j`` is not given: the cores, divided by each run's torch threads."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def canonical_command(command: str, args: list[str], **options: Any) -> str:
    """The command line that reproduces a report, rebuilt from parsed options."""
    parts = ["asyncsim", command, *args]
    for key, value in options.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v is not False:
                parts += [flag] if v is True else [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


# -- the shared options: one definition each ------------------------------------------

FILE_ARG = typer.Argument(..., help="scenario YAML file", show_default=False)
SET_OPT = typer.Option([], "--set", "-s", help="override a field: KEY=VALUE, e.g. schedule.H=100 (repeatable)")
METHOD_HELP = "method preset(s): one for run, comma-separated for the others (asyncsim methods lists them)"
SEED_HELP = "seed(s): one for run, comma-separated for the others, e.g. 0,1,2"
JOBS_OPT = typer.Option(None, "--jobs", "-j", min=1, help="processes computing in parallel (default: cores / compute.threads)")
RUNS_EXECUTOR_OPT = typer.Option("local", "--executor", "-e", help="local | ray: where whole runs are computed (local processes, or one Ray task each; never changes results)")
ADDRESS_OPT = typer.Option(None, "--address", help="Ray cluster address, e.g. ray://head:10001 or head:6379 (default: start a local Ray)")
STORE_OPT = typer.Option(None, "--store", help="with --executor ray: a run store every node sees; tasks write their run folders there (default: results come back to this machine's store)")
RUNS_OPT = typer.Option(None, "--runs", envvar="ASYNCSIM_RUNS", help="run store: where run folders go and are reused from (default reports/runs)")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="no progress bars")
FORCE_OPT = typer.Option(False, "--force", help="replace an output asyncsim would otherwise refuse to: a report made by another command, a file it did not write")
NAME_OPT = typer.Option(None, "--name", help="report folder name under reports/ (instead of --out)")
METHOD_SET_OPT = typer.Option([], "--method-set", help="METHOD:KEY=VALUE, a setting for one method only, e.g. a tuned lr (repeatable)")


def method_opt(default: Optional[str]) -> Any:
    return typer.Option(default, "--method", "--methods", "-m", help=METHOD_HELP)


def seed_opt(default: Optional[str]) -> Any:
    return typer.Option(default, "--seed", "--seeds", help=SEED_HELP)


def out_opt(what: str) -> Any:
    return typer.Option(None, "--out", "-o", help=what)
