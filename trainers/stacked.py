"""Several local rounds trained as one pass over stacked parameters (``compute.stack``).

A job is a pure function of its start model, spec and inner state (Algorithm
4), so jobs whose inputs are known can train together: their parameters are
stacked on a leading job dimension, one vmapped forward and backward
(``torch.func``) gives every job's gradient on its own batch, and one AdamW
update moves them all: ``torch.optim.AdamW(fused=True)``'s own kernel
(decoupled weight decay, then the bias-corrected step of Kingma & Ba,
Algorithm 1), called per job so each keeps its own learning-rate plan
(Eq. 3), step count and inner state. Gradient clipping is per job, on the
norm of its per-parameter norms, as ``torch.nn.utils.clip_grad_norm_`` does it.

Jobs with fewer local steps (DyLU, Eq. 6) are sorted to the end of the stack
and leave it when they finish: the active jobs are always a prefix, so each
step works on views and never copies the stack.

Why not bit for bit: a batched matmul and an unbatched one may sum in a
different order, and a batched kernel may even take another path for a job
whose operands sit at another alignment in the stack, so a stacked run
agrees with a serial one to float rounding only, and a job's bits may depend
on its place in the stack. The mode is therefore part of a run's identity
(``compute.stack``), every serial run keeps its bits, and the executor makes
each stack a function of the jobs waiting alone (sim/executors.py).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.func import functional_call, vmap

from trainers.base import JobResult, JobSpec

#: a job's batch for one local step: ``batch(job_index, step)`` -> the tensors its loss takes
BatchFn = Callable[[int, int], tuple[torch.Tensor, ...]]
#: each job's mean loss: ``losses(params, *batches)``, both with a leading job dimension -> a tensor (jobs,)
StackedLoss = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class AdamW:
    """The inner AdamW's constants (torch's names); ``grad_clip`` is the global-norm clip (None: none)."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float | None = None


@dataclass(frozen=True)
class StackedJob:
    theta: torch.Tensor  # the flat start model
    spec: JobSpec
    state: dict[str, Any] | None = None  # a carried torch AdamW state dict (None: a fresh AdamW)


def train_stacked(model: torch.nn.Module, jobs: Sequence[StackedJob], batch: BatchFn, losses: StackedLoss,
                  adamw: AdamW, chunk: int | None = None) -> list[JobResult]:
    """Train ``jobs`` together; results in the order given.

    ``batch(j, s)`` gives job ``j``'s step-``s`` batch as a tuple of tensors;
    ``losses(params, *batches)`` takes the parameters with a leading job
    dimension (name -> tensor, ``model``'s names) and the jobs' batches
    stacked the same way, and returns each job's mean loss. The sum of the
    jobs' losses has each job's own gradient in its own row, so one backward
    pass serves them all. ``chunk`` splits a step's batch into micro-batches
    whose gradients are accumulated, each weighted by its share, as the serial
    trainers do.
    """
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [math.prod(s) for s in shapes]
    order = sorted(range(len(jobs)), key=lambda j: -jobs[j].spec.steps)  # stable: equal steps keep their order
    k, steps = len(jobs), [jobs[j].spec.steps for j in order]
    theta = torch.stack([jobs[j].theta for j in order]).to(next(model.parameters()).device)
    start = theta.clone()
    m, v, count = _moments([jobs[j].state for j in order], theta, sizes)

    slots = list(zip(names, itertools.accumulate(sizes, initial=0), sizes, shapes))  # each parameter's columns

    def params_of(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: flat[:, lo:lo + size].view(flat.shape[0], *shape) for name, lo, size, shape in slots}

    totals = [0.0] * k
    gradient = torch.empty_like(theta)
    for step in range(steps[0]):
        n = sum(1 for s in steps if s > step)  # the jobs still training: a prefix
        stacked = [torch.stack(t) for t in zip(*(batch(order[i], step) for i in range(n)))]
        size = stacked[0].shape[1]
        g = gradient[:n]
        step_loss = torch.zeros(n, dtype=torch.float64)
        for lo in range(0, size, chunk or size):
            piece = [t[:, lo:lo + (chunk or size)] for t in stacked]
            share = piece[0].shape[1]
            params = {name: t.detach().requires_grad_(True) for name, t in params_of(theta[:n]).items()}
            value = losses(params, *piece)
            # one leaf per parameter: a gradient through views of one flat leaf would fill a zero stack per view
            grads = torch.autograd.grad(value.sum(), list(params.values()))
            for target, grad in zip(params_of(g).values(), grads):  # one copy each, into the flat rows
                if share == size:
                    target.copy_(grad)
                elif lo == 0:  # micro-batches: each one's mean weighted by its share of the batch
                    torch.mul(grad, share / size, out=target)
                else:
                    target.add_(grad, alpha=share / size)
            step_loss += value.detach().double().cpu() * share
        for i, value in enumerate((step_loss / size).tolist()):
            totals[i] += value
        if adamw.grad_clip is not None:
            _clip_rows(g, sizes, adamw.grad_clip)
        _adamw_rows(theta[:n], g, m[:n], v[:n], count[:n], [jobs[order[i]].spec.lrs[step] for i in range(n)], adamw)
    results: dict[int, JobResult] = {}
    for i, j in enumerate(order):
        spec = jobs[j].spec
        state = _state_dict(m[i], v[i], count[i], shapes, sizes, spec.lrs[-1], adamw) if spec.keep_optimizer_state else None
        results[j] = JobResult(delta=(start[i] - theta[i]).cpu(), train_loss=totals[i] / spec.steps, optimizer_state=state)
    return [results[j] for j in range(k)]


def vmapped_losses(model: torch.nn.Module, loss: Callable[..., torch.Tensor]) -> StackedLoss:
    """Stacked losses for any module, by ``vmap`` over ``functional_call``: ``loss(model(*inputs), targets)`` per job.

    The batch's last tensor is the targets, the others the model's inputs.
    Fine for small models; a model whose layers have no batching rule (CPU
    attention) is faster with a stacked forward of its own (trainers/lm.py).
    """
    def one(params: dict[str, torch.Tensor], *batch: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(model, params, batch[:-1]), batch[-1])

    return vmap(one)


def _clip_rows(g: torch.Tensor, sizes: Sequence[int], max_norm: float) -> None:
    """``clip_grad_norm_`` per row (job), in place: the norm of the per-parameter norms, scaled by
    ``max_norm / (norm + 1e-6)`` when that is below 1."""
    norms, offset = [], 0
    for size in sizes:
        norms.append(g[:, offset:offset + size].norm(dim=1))
        offset += size
    total = torch.stack(norms).norm(dim=0)
    g.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0)[:, None])


def _adamw_rows(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, steps: Sequence[torch.Tensor],
                lrs: Sequence[float], adamw: AdamW) -> None:
    """One AdamW step per row (job), in place, with the kernel ``torch.optim.AdamW(fused=True)`` calls.

    Each job has its own learning rate and step count, so each row is its own
    call; the update is elementwise, so a row costs what the serial trainer's
    step costs, and the arithmetic is the serial trainer's.
    """
    beta1, beta2 = adamw.betas
    for i, lr in enumerate(lrs):
        steps[i].add_(1)
        torch._fused_adamw_([p[i]], [g[i]], [m[i]], [v[i]], [], [steps[i]], amsgrad=False, lr=lr, beta1=beta1,
                            beta2=beta2, weight_decay=adamw.weight_decay, eps=adamw.eps, maximize=False)


def _moments(states: Sequence[dict[str, Any] | None], theta: torch.Tensor,
             sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Each job's first and second moments and step count from its carried AdamW state (zeros when fresh)."""
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    count = [torch.zeros((), dtype=torch.float32, device=theta.device) for _ in states]  # as fused AdamW keeps it
    for i, state in enumerate(states):
        if state is None or not state.get("state"):
            continue
        per_param = [state["state"][index] for index in range(len(sizes))]
        m[i] = torch.cat([s["exp_avg"].reshape(-1) for s in per_param]).to(theta)
        v[i] = torch.cat([s["exp_avg_sq"].reshape(-1) for s in per_param]).to(theta)
        count[i].fill_(float(per_param[0]["step"]))
    return m, v, count


def _state_dict(m: torch.Tensor, v: torch.Tensor, count: torch.Tensor, shapes: Sequence[torch.Size],
                sizes: Sequence[int], lr: float, adamw: AdamW) -> dict[str, Any]:
    """A job's moments as ``torch.optim.AdamW(...).state_dict()`` lays them out, so serial and stacked jobs share it."""
    state, offset = {}, 0
    for index, (shape, size) in enumerate(zip(shapes, sizes)):
        state[index] = {"step": torch.tensor(float(count), dtype=torch.float32),
                        "exp_avg": m[offset:offset + size].view(shape).clone(),
                        "exp_avg_sq": v[offset:offset + size].view(shape).clone()}
        offset += size
    group = {"lr": lr, "betas": adamw.betas, "eps": adamw.eps, "weight_decay": adamw.weight_decay, "amsgrad": False,
             "foreach": None, "maximize": False, "capturable": False, "differentiable": False, "fused": True,
             "decoupled_weight_decay": True, "params": list(range(len(sizes)))}
    return {"state": state, "param_groups": [group]}
