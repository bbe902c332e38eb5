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
from rich.table import Table
from typer.core import TyperGroup

from sim.errors import ScenarioError, UserError
from sim.scenario import Scenario, check_distinct, load_scenario, parse_override

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


def refuse_repeats(values: list[Any], option: str, text: str) -> None:
    """Fail naming ``option`` when a value appears twice (:func:`sim.scenario.check_distinct`, as one line)."""
    try:
        check_distinct(values, option, text)
    except ScenarioError as exc:
        fail_with(exc)


def split_list(text: str, option: str, example: str) -> list[str]:
    """``a,b,c`` -> [a, b, c]; an empty list or a repeated item is an error naming the option."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        fail(f"{option} {text!r}: expected a comma-separated list, e.g. {example}")
    refuse_repeats(items, option, text)
    return items


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; a seed given twice (``0,00`` too) is refused, it would be counted as two runs."""
    items = split_list(text, "--seed", "0,1,2")
    try:
        seeds = [int(x) for x in items]
    except ValueError:
        fail(f"--seed {text!r}: expected comma-separated integers, e.g. 0,1,2")
    refuse_repeats(seeds, "--seed", text)
    return seeds


#: what to do instead when an option that takes one value is given twice ({first}, {second}: the two values)
REPEAT_HINTS = {
    "--sweep": "compare sweeps one axis; for a grid use asyncsim sweep FILE --grid {first} --grid {second}",
    "--method": "give it once; several methods go in one comma-separated list, e.g. --methods {first},{second}",
    "--seed": "give it once; several seeds go in one comma-separated list, e.g. --seeds {first},{second}",
}
#: repeatable options of KEY=VALUE items (--method-set: METHOD:KEY=VALUE): one KEY twice keeps only the last
KEYED_OPTIONS = ("--set", "--wide-set", "--method-set")


def _option_uses(command: Any, args: list[str]) -> list[tuple[Any, str, str]]:
    """Each valued option in ``args`` as (parameter, flag as typed, value), read the way click will read it.

    Parameters are told apart by ``param_type_name``: typer carries its own copy of click, so its classes are not
    ``click.Option``.
    """
    flags = {flag: p for p in command.params if p.param_type_name == "option" for flag in p.opts + p.secondary_opts}
    uses, i = [], 0
    while i < len(args) and args[i] != "--":
        token = args[i]
        i += 1
        if token.startswith("--"):
            flag, eq, value = token.partition("=")
        else:  # -j4: a short flag with its value attached
            flag, eq, value = token[:2], token[2:], token[2:]
        param = flags.get(flag)
        if param is None or param.is_flag or param.count:
            continue  # an argument, an unknown option (click names it) or a flag (twice is harmless)
        if not eq:
            value = args[i] if i < len(args) else ""
            i += 1
        uses.append((param, flag, value))
    return uses


def lost_option(command: Any, args: list[str]) -> str | None:
    """Why ``args`` would silently lose an option: a one-value option given twice, or a KEY set twice; else None.

    Click keeps the last value of an option given twice, so ``compare
    --sweep H=10,20 --sweep workers=4,8`` would run without the H axis.
    """
    single: dict[str, str] = {}
    keyed: dict[tuple[str, str], str] = {}
    for param, flag, value in _option_uses(command, args):
        name = param.opts[0]
        if not param.multiple:
            if name in single:
                hint = REPEAT_HINTS.get(name, "give it once").format(first=single[name], second=value)
                return f"{name} is given twice ({single[name]!r}, then {flag} {value!r}) and takes one value; {hint}"
            single[name] = value
        elif name in KEYED_OPTIONS:
            key = value.partition("=")[0].strip()
            if (name, key) in keyed:
                return f"{name} {key} is given twice ({keyed[name, key]!r}, then {value!r}); give it once"
            keyed[name, key] = value
    return None


class OneValueGroup(TyperGroup):
    """The ``asyncsim`` command group: an option that click would drop silently is refused in one line instead."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        problem = lost_option(command, rest) if command is not None else None
        if problem:
            fail(problem)
        return name, command, rest


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


def method_opt(default: Optional[str], single: bool = False) -> Any:
    """``--method``; ``single``: a command that runs one method (its help says so, and it has no ``--methods``)."""
    if single:
        return typer.Option(default, "--method", "-m", help="method preset (asyncsim methods lists them)")
    return typer.Option(default, "--method", "--methods", "-m", help=METHOD_HELP)


def seed_opt(default: Optional[str], single: bool = False) -> Any:
    """``--seed``; ``single``: a command that runs one seed."""
    if single:
        return typer.Option(default, "--seed", help="seed")
    return typer.Option(default, "--seed", "--seeds", help=SEED_HELP)


def out_opt(what: str) -> Any:
    return typer.Option(None, "--out", "-o", help=what)


def narrow_table(*headers: str, wrap: str) -> Table:
    """A table for an 80-column terminal: compact borders; only the ``wrap`` column wraps, nothing is cut with '…'."""
    from rich import box

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=header != wrap, overflow="fold", ratio=1 if header == wrap else None)
    return table
