"""Language-model commands of the ``asyncsim`` CLI: ``models``, ``pretrain`` and ``noise-scale``.

``sim/cli.py`` calls :func:`register` on its app; the shared consoles and
``fail`` come from :mod:`sim.cli_common`, which both import.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``pretrain`` to ``app``."""
    app.command("models")(models)
    app.command("pretrain")(pretrain)
    app.command("noise-scale")(noise_scale)


def models() -> None:
    """List the LM size presets with their real and closed-form parameter counts."""
    from rich import box
    from rich.table import Table

    from sim.cli_common import console
    from trainers.configs import CPU_MS_PER_STEP, PRESETS, closed_form_params
    from trainers.lm import count_params

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    for header in ("preset", "layers x d", "heads", "vocab", "batch", "embed", "params", "ms/step"):
        table.add_column(header, justify="left" if header in ("preset", "layers x d", "embed") else "right", no_wrap=True)
    mismatches = []
    for name, arch in PRESETS.items():
        real, formula = count_params(arch), closed_form_params(arch)
        if real != formula:
            mismatches.append(name)
        table.add_row(
            name,
            f"{arch.layers} x {arch.d_model}",
            f"{arch.heads}x{arch.head_dim}",
            f"{arch.vocab_size:,}",
            f"{arch.batch_size}x{arch.seq_len}",
            "tied" if arch.tied else "untied",
            f"{real:,}",
            "-" if CPU_MS_PER_STEP.get(name) is None else f"{CPU_MS_PER_STEP[name]:g}",
        )
    console.print(table)
    console.print(
        "heads: heads x K/V size; batch: sequences x tokens per inner step.\n"
        "ms/step: one inner AdamW step at that batch, 1 CPU thread, torch 2.13, measured\n"
        "on a 2-core machine; micro runs the paper's 88K-step protocol in ~10 minutes.\n"
        "params: the module's real count. Formula: layers x (4 d w + 8 d^2 + 2 d) + d\n"
        "+ vocab x d x (1 if tied else 2), with d hidden and w heads x K/V size:\n"
        + (f"MISMATCH for {', '.join(mismatches)}" if mismatches else "every preset matches it.")
    )

def pretrain(
    file: Path = typer.Argument(..., help="scenario YAML file with trainer: lm", show_default=False),
    set_: list[str] = typer.Option([], "--set", "-s", help="override a field: KEY=VALUE (repeatable)"),
) -> None:
    """Build (or find) the cached pretrained checkpoint a scenario starts from."""
    import torch
    from rich.progress import MofNCompleteColumn, Progress, TextColumn

    from sim.cli_common import console, err_console, fail
    from sim.errors import ScenarioError, UserError
    from sim.scenario import load_scenario, parse_override
    from sim.trainer_factory import build_trainer

    try:
        scenario = load_scenario(file, overrides=dict(parse_override(s) for s in set_))
        threads = scenario.compute.threads
        torch.set_num_threads(threads)
        trainer = build_trainer(scenario)
    except (ScenarioError, UserError) as exc:
        fail(str(exc), exc.exit_code)
        return
    steps = getattr(getattr(trainer, "config", None), "pretrain_steps", None)
    if not callable(getattr(trainer, "pretrain", None)) or steps is None:
        fail(f"{file}: trainer {scenario.trainer.name!r} has no pretraining (use trainer: lm)")
        return
    if steps == 0:
        fail(f"{file}: trainer.config.pretrain_steps is 0, nothing to pretrain (set e.g. --set trainer.config.pretrain_steps=500)")
        return
    path = trainer.pretrain_path(threads)
    how = "cached" if path.exists() else "built"
    try:
        if how == "cached":
            theta = trainer.pretrain(threads)
        else:
            columns = (*Progress.get_default_columns(), MofNCompleteColumn(), TextColumn("{task.fields[metric]}"))
            with Progress(*columns, console=err_console) as bar:
                task = bar.add_task("pretrain", total=steps, metric="")

                def progress(step: int, total: int, loss: float) -> None:
                    bar.update(task, completed=step, metric=f"train loss {loss:.3f}")

                theta = trainer.pretrain(threads, progress=progress)
    except UserError as exc:  # the cache written whole or not at all; a full disk is one line, exit 3
        fail(str(exc), exc.exit_code)
    metrics = trainer.evaluate(theta)
    console.print(
        f"{how}: {trainer.config.size} LM pretrained {steps} steps "
        f"({threads} thread{'s' if threads > 1 else ''}): validation perplexity {metrics['perplexity']:.2f}, "
        f"loss {metrics['loss']:.4f}"
    )
    console.print(f"checkpoint: {path}")


def noise_scale(
    file: Path = typer.Argument(..., help="scenario YAML file with trainer: lm", show_default=False),
    set_: list[str] = typer.Option([], "--set", "-s", help="override a field: KEY=VALUE (repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the estimate as a one-row CSV (for a report to read)"),
    force: bool = typer.Option(False, "--force", help="replace an --out file asyncsim did not write"),
) -> None:
    """Gradient noise scale at the scenario's starting model: is the batch in the regime where Local-SGD pays?"""
    import torch

    from sim.cli_common import console, fail, fail_with, load
    from sim.errors import UserError
    from sim.outputs import atomic_output, check_output_file
    from sim.trainer_factory import build_trainer

    scenario = load(file, None, list(set_))
    torch.set_num_threads(scenario.compute.threads)
    try:
        if out is not None:
            check_output_file(out, "--out", force)
        trainer = build_trainer(scenario)
        if not callable(getattr(trainer, "gradient_noise_scale", None)):
            fail(f"{file}: trainer {scenario.trainer.name!r} cannot estimate a gradient noise scale (use trainer: lm)")
        est = trainer.gradient_noise_scale(trainer.init_params())
        batch, k, seq = trainer.batch_size(), scenario.workers.k, trainer.arch.seq_len
        if out is not None:
            with atomic_output(out) as tmp:
                tmp.write_text(noise_scale_csv(est, batch, k, seq, scenario.digest()), encoding="utf-8")
    except UserError as exc:
        fail_with(exc)
    b = est["noise_scale_sequences"]
    console.print(f"gradient noise scale B_simple = {b:.1f} sequences = {b * seq:,.0f} tokens (McCandlish et al. 2018)")
    console.print(f"per-worker batch {batch} sequences ({batch / b:.2g} x B); the 1-worker baseline's k x batch "
                  f"{k * batch} ({k * batch / b:.2g} x B)")
    console.print("well below B, a k x larger batch makes nearly k x the progress per step, so the 1-worker k x batch "
                  "baseline is hard to beat per update; near or above B, extra batch buys little and Local-SGD can win")
    if out is not None:
        console.print(f"estimate: {out}")


#: the header of ``noise-scale --out``; :data:`sim.outputs.SIGNATURES` knows the file by it
NOISE_SCALE_HEADER = "noise_scale_sequences,noise_scale_tokens,grad_norm_sq,trace_sigma,batch_sequences,workers,seq_len,scenario_digest"


def noise_scale_csv(est: dict[str, float], batch: int, k: int, seq_len: int, digest: str) -> str:
    """One estimate as a header line and one row, floats written exactly (``repr``) so a report recomputes nothing."""
    row = [repr(float(est[key])) for key in ("noise_scale_sequences", "noise_scale_tokens", "grad_norm_sq", "trace_sigma")]
    return NOISE_SCALE_HEADER + "\n" + ",".join(row + [str(batch), str(k), str(seq_len), digest]) + "\n"
