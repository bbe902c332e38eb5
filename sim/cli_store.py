"""The run store's own command: ``runs`` (list it, ``--clean`` its leftovers; sim/store_listing.py).

``sim/cli.py`` calls :func:`register` on its app.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli_common import RUNS_OPT, console, narrow_table, use_runs_dir


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)


def runs(
    store: Optional[Path] = RUNS_OPT,
    method: Optional[str] = typer.Option(None, "--method", "-m", help="only this method's runs"),
    seed: Optional[int] = typer.Option(None, "--seed", help="only this seed's runs"),
    clean: bool = typer.Option(False, "--clean", help="remove asyncsim's own leftovers (set-aside damaged runs, interrupted checkpoints, half-written folders, stale locks) and say what was removed; nothing else is touched"),
) -> None:
    """List the run store: each run's method, seed, status, digest, size and age; and its leftovers."""
    from sim.runner import runs_dir
    from sim.store_listing import clean as clean_store
    from sim.store_listing import leftovers, list_runs

    use_runs_dir(store)
    root = runs_dir()
    if not root.is_dir():
        console.print(f"{root}: no run store yet", markup=False)
        return
    shown = [r for r in list_runs(root) if (method is None or r.method == method) and (seed is None or r.seed == seed)]
    table = narrow_table("run", "seed", "status", "MB", "age", wrap="run")
    for r in shown:
        table.add_row(r.folder.name, str(r.seed), r.status, f"{r.size_bytes / 1e6:.1f}", _age(r.age_seconds))
    if shown:
        console.print(table)
    total = sum(r.size_bytes for r in shown) / 1e6
    console.print(f"{len(shown)} runs, {total:.1f} MB in {root}", markup=False)
    if clean:
        removed = clean_store(root)
        for path, size in removed:
            console.print(f"removed {path.name} ({size / 1e6:.1f} MB)", markup=False)
        console.print(f"removed {len(removed)} leftovers" if removed else "no leftovers to remove", markup=False)
        return
    left = leftovers(root)
    if left:
        console.print(f"{len(left)} leftovers ({', '.join(p.name for p in left[:3])}{' ...' if len(left) > 3 else ''}); "
                      "asyncsim runs --clean removes them", markup=False)


def _age(seconds: float) -> str:
    """``40 s``, ``12 min``, ``5 h``, ``3 d``: how old a stored run is."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
