"""The paper's minimal toy task (Sec. 6): classify a mixture of mixtures of Gaussians.

Each of ``num_classes`` classes owns ``clusters_per_class`` Gaussian clusters
with unit-norm centres in ``dim`` dimensions and isotropic noise. The model is
an MLP trained with AdamW whose state is reset every round, exactly like a
DiLoCo worker. Shards are iid slices of one finite training set; evaluation
uses points drawn fresh from the same mixture (never training points).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainers.base import JobResult, JobSpec, carry_inner_state, epoch_order, flatten_params, load_flat_params, seeded_rng
from trainers.configs import ToyConfig
from trainers.stacked import AdamW, StackedJob, StackedLoss, train_stacked

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Independent seed streams, one per purpose.
_STREAM_CENTRES, _STREAM_TRAIN, _STREAM_EVAL, _STREAM_INIT, _STREAM_ORDER = range(5)


def stacked_mlp_losses(model: torch.nn.Sequential) -> StackedLoss:
    """Each job's mean cross-entropy under its own parameters: the MLP's forward over a leading job dimension.

    Every Linear is one batched matmul over the jobs, so k jobs cost about
    the kernel launches of one; a generic ``vmap`` of the module costs more
    than the small model's arithmetic.
    """
    layers = [(f"{i}.weight", f"{i}.bias") if isinstance(m, torch.nn.Linear) else None for i, m in enumerate(model)]

    def losses(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            if layer is None:
                x = torch.relu(x)
            else:
                # (W x^T)^T + b: the weight's gradient then comes out in the weight's own layout (no transposed copy)
                x = torch.bmm(p[layer[0]], x.transpose(1, 2)).transpose(1, 2) + p[layer[1]][:, None, :]
        n = x.shape[0]
        return F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1), reduction="none").view(n, -1).mean(dim=1)

    return losses


class ToyTrainer:
    """Trainer protocol implementation for the Gaussian-mixture classifier."""

    Config = ToyConfig

    def __init__(self, config: ToyConfig | dict[str, Any] | None = None, *, seed: int = 0, num_shards: int = 4):
        self.config = config if isinstance(config, ToyConfig) else ToyConfig(**(config or {}))
        self.seed = seed
        self.num_shards = num_shards
        self.dtype = _DTYPES[self.config.dtype]
        torch.use_deterministic_algorithms(True)
        cfg = self.config
        centres = seeded_rng(self.seed, _STREAM_CENTRES).standard_normal((cfg.num_classes * cfg.clusters_per_class, cfg.dim))
        self._centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        x, y = self._draw(seeded_rng(self.seed, _STREAM_TRAIN), cfg.shard_size * num_shards)
        # Shards are contiguous slices of an already-random draw: iid and disjoint.
        self._train_x = torch.from_numpy(x)
        self._train_y = torch.from_numpy(y)
        ex, ey = self._draw(seeded_rng(self.seed, _STREAM_EVAL), cfg.eval_size)
        self._eval_x = torch.from_numpy(ex).to(self.dtype)
        self._eval_y = torch.from_numpy(ey)
        self._model = self._build_model()

    # -- data ---------------------------------------------------------------
    def _draw(self, rng: np.random.Generator, n: int, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """n points of the mixture as float32, generated in chunks to bound peak memory."""
        cfg = self.config
        centres = self._centres.astype(np.float32)
        cluster = rng.integers(0, len(centres), size=n)
        x = np.empty((n, cfg.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            noise = rng.standard_normal((stop - start, cfg.dim), dtype=np.float32)
            x[start:stop] = centres[cluster[start:stop]] + np.float32(cfg.noise_std) * noise
        return x, (cluster // cfg.clusters_per_class).astype(np.int64)

    def _shard_positions(self, shard: int, offset: int, count: int) -> np.ndarray:
        """Indices of examples ``offset .. offset+count`` in shard's epoch order.

        Each epoch of a shard is a fresh permutation seeded by (shard, epoch),
        so the examples a job sees depend only on its shard and offset.
        """
        n = self.config.shard_size
        out = epoch_order(n, offset, count, lambda epoch: seeded_rng(self.seed, _STREAM_ORDER, shard, epoch).permutation(n))
        return out + shard * n

    # -- model --------------------------------------------------------------
    def _build_model(self) -> torch.nn.Module:
        cfg = self.config
        widths = [cfg.dim] + [cfg.hidden] * cfg.hidden_layers + [cfg.num_classes]
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(torch.nn.Linear(a, b, dtype=self.dtype))
            if i < len(widths) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    # -- Trainer protocol ---------------------------------------------------
    def init_params(self) -> torch.Tensor:
        """PyTorch's default Linear init, drawn from this run's own generator."""
        gen = torch.Generator().manual_seed(int(seeded_rng(self.seed, _STREAM_INIT).integers(2**62)))
        with torch.no_grad():
            for module in self._model:
                if isinstance(module, torch.nn.Linear):
                    bound = 1.0 / module.in_features**0.5
                    module.weight.uniform_(-bound, bound, generator=gen)
                    module.bias.uniform_(-bound, bound, generator=gen)
        return flatten_params(self._model)

    def shard_sizes(self) -> list[int]:
        return [self.config.shard_size] * self.num_shards

    def batch_size(self) -> int:
        return self.config.batch_size

    def flops_per_step(self) -> float:
        """~6 x parameters x examples per step (forward + backward), for FLOP-rated devices."""
        return 6.0 * sum(p.numel() for p in self._model.parameters()) * self.config.batch_size

    def layer_sizes(self) -> list[int]:
        """One layer per Linear (weight and bias), input to output."""
        return [sum(p.numel() for p in m.parameters()) for m in self._model if isinstance(m, torch.nn.Linear)]

    def local_train(self, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None) -> JobResult:
        cfg = self.config
        torch.set_num_threads(job.threads)
        model = self._model
        load_flat_params(model, theta)
        # A fresh AdamW unless the job carries a state (the paper resets it each round); fused is the
        # fastest CPU kernel and deterministic.
        opt = torch.optim.AdamW(
            model.parameters(), lr=job.lrs[0], betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True
        )
        carry_inner_state(opt, optimizer_state)
        batch = cfg.batch_size * job.batch_multiplier
        positions = self._shard_positions(job.shard, job.data_offset, batch * job.steps)
        positions_t = torch.from_numpy(positions)
        total_loss = 0.0
        for step, lr in enumerate(job.lrs):
            for group in opt.param_groups:
                group["lr"] = lr
            idx = positions_t[step * batch : (step + 1) * batch]
            xb = self._train_x[idx].to(self.dtype)
            loss = F.cross_entropy(model(xb), self._train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item()
        delta = theta - flatten_params(model)
        state = opt.state_dict() if job.keep_optimizer_state else None
        return JobResult(delta=delta, train_loss=total_loss / job.steps, optimizer_state=state)

    def local_train_stacked(self, jobs: Sequence[StackedJob]) -> list[JobResult]:
        """:meth:`local_train` for several jobs at once, as one stacked pass (trainers/stacked.py)."""
        cfg = self.config
        torch.set_num_threads(jobs[0].spec.threads)
        plans = []
        for job in jobs:
            batch = cfg.batch_size * job.spec.batch_multiplier
            positions = self._shard_positions(job.spec.shard, job.spec.data_offset, batch * job.spec.steps)
            plans.append((torch.from_numpy(positions), batch))

        def batch_of(j: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
            positions, batch = plans[j]
            idx = positions[step * batch : (step + 1) * batch]
            return self._train_x[idx].to(self.dtype), self._train_y[idx]

        adamw = AdamW(betas=cfg.betas, weight_decay=cfg.weight_decay)
        return train_stacked(self._model, jobs, batch_of, stacked_mlp_losses(self._model), adamw)

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        load_flat_params(self._model, theta)
        logits = self._model(self._eval_x)
        loss = F.cross_entropy(logits, self._eval_y).item()
        accuracy = (logits.argmax(dim=1) == self._eval_y).double().mean().item()
        return {"loss": loss, "accuracy": accuracy}
