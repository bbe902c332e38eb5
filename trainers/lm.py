"""Language modelling payload: a chinchilla-style decoder-only transformer (paper Table 6).

Model. Pre-norm blocks (RMSNorm, as in Chinchilla) of causal self-attention
through ``torch.nn.functional.scaled_dot_product_attention`` and a 4x GELU
MLP; no biases; rotary position embeddings (relative positions like
Chinchilla's, and no position parameters, so counts are those of Table 6);
a final RMSNorm and a linear head. Attention width is ``heads x head_dim``
(K/V size 64), which need not equal the hidden size (60M/150M: 16 x 64 =
1024 vs 896). Initialisation follows GPT-2: every weight matrix and the
embedding N(0, 0.02), the two residual output projections of each block
N(0, 0.02 / sqrt(2 layers)), norms at 1. (PyTorch's default N(0, 1)
embedding through a tied head makes CPU steps hit denormals, 5x slower.)

Tied or untied embeddings: each preset uses the tying that makes its real
parameter count match its name, since the paper's names are inconsistent
with a single choice (with 4x MLPs, 64-wide heads and a 32,000 vocabulary):

=======  ======================  ======  ===========  =====================
preset   layers x hidden, heads  tied    parameters   with the other tying
=======  ======================  ======  ===========  =====================
20M      6 x 256, 4              untied  21,105,920   12,913,920 tied
60M      3 x 896, 16             tied    58,955,904   87,627,904 untied
150M     12 x 896, 16            tied    149,804,928  178,476,928 untied
small    4 x 256, 4, vocab 4096  tied    4,196,608
tiny     2 x 128, 2, vocab 2048  tied    656,000
micro    2 x 64, 2 x 32, v 512   tied    131,392
=======  ======================  ======  ===========  =====================

``tied: true/false`` overrides it; ``asyncsim models`` prints the counts and
checks them against :func:`closed_form_params`. ``micro``, ``tiny`` and
``small`` are CPU sizes: measured on this project's 2-core machine with torch
2.13, one thread, fused AdamW, ``tiny`` at its default batch (8 x 128 tokens)
takes about 70 ms a step.

``micro`` is the largest shape that runs the paper's whole protocol (24K
pretraining steps, then 64K local steps at H = 50 on k = 4 workers: 88K
AdamW steps) in about 10 minutes on one core. Measured ms per inner step
(2026-11-30, same machine, one thread, 250 steps in rounds of 50 with a fresh
AdamW each, no evaluation; time grows with tokens per step, not with width):

=================================  =========  ===========  ===================
shape (layers x d, heads x K/V)    vocab      batch x seq  ms/step (88K steps)
=================================  =========  ===========  ===================
2 x 64, 2 x 32                     512        8 x 64       9.4  (13.8 min)
2 x 64, 2 x 32                     256        8 x 64       7.8  (11.4 min)
2 x 48, 2 x 24                     512        8 x 64       6.4  (9.4 min)
1 x 64, 2 x 32                     512        8 x 64       5.6  (8.2 min)
2 x 32, 2 x 16                     512        8 x 64       4.8  (7.1 min)
2 x 64, 2 x 32                     512        8 x 32       4.9  (7.2 min)
**2 x 64, 2 x 32 (micro)**         512        4 x 64       4.7  (6.9 min)
3 x 64, 2 x 32                     512        8 x 64       13.0 (19.1 min)
2 x 96, 2 x 48                     512        8 x 64       14.5 (21.3 min)
=================================  =========  ===========  ===================

``micro`` keeps two layers, 64-token context and the 64-wide model, and
halves the batch: 256 tokens a step. Evaluation (every 1,000 local steps on
32,768 held-out tokens) and the simulator add the rest of the ~10 minutes.

Training. A job is Algorithm 4: load the dispatch-time parameters, create a
fresh fused AdamW (or load the carried state for the 1-worker baseline), and
take one step per learning rate in ``job.lrs`` on ``batch_size x
batch_multiplier`` sequences of the job's shard, in an order that is a pure
function of (seed, shard, data offset). ``micro_batch_size`` splits a large
batch into gradient-accumulation chunks (same maths, different bits, so it
is part of the config). Gradients are clipped to ``grad_clip`` (global norm).

Pretraining (paper: 24K of 88K steps with Adam before Local-SGD): with
``pretrain_steps > 0``, :meth:`LMTrainer.init_params` returns a model trained
that many AdamW steps on the whole training split (linear warmup, then a
constant learning rate: a checkpoint from the middle of a run, like the
paper's). It depends on the model, the data, the pretraining settings,
``pretrain_seed``, the torch version, the device type and the number of
torch threads, never on the scenario's seed or number of workers, so all
methods, seeds and worker counts share it. It is cached on disk under
``$ASYNCSIM_CACHE`` (default ``.cache/asyncsim/`` in the working directory)
keyed by a hash of all of that; ``asyncsim pretrain FILE`` builds it with a
progress bar.

Determinism. ``torch.use_deterministic_algorithms(True)``; results depend
on the thread count (the scenario's ``compute.threads``, set by the engine
for every job and for evaluation). On CUDA, ``CUBLAS_WORKSPACE_CONFIG`` is
set to ``:4096:8`` before CUDA starts, and deterministic mode restricts
scaled-dot-product attention to its deterministic kernels, so runs should
repeat bit for bit on the same GPU model and software stack (not tested
here: this project's machines have no GPU). CPU and GPU results differ in
the last bits (different kernels and summation orders), so their run hashes
differ: ``device: auto`` picks CUDA when available; pin ``device: cpu`` to
compare run hashes across machines.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainers.base import (FieldError, JobResult, JobSpec, UserError, carry_inner_state, flatten_params, load_flat_params,
                           seeded_int, seeded_rng)
from trainers.configs import EVAL_BATCH as _EVAL_BATCH
from trainers.configs import PRESETS, Arch, LMConfig, closed_form_params  # noqa: F401  (PRESETS re-exported)
from trainers.data import (
    TokenizedCorpus,
    atomic_write,
    cache_dir,
    digest,
    epoch_order,
    file_lock,
    gather_windows,
    load_corpus,
    make_shards,
    num_windows,
)
from trainers.stacked import AdamW, StackedJob, StackedLoss, train_stacked

# Independent seed streams, one per purpose.
_STREAM_INIT, _STREAM_SHARDS, _STREAM_ORDER, _STREAM_NOISE = range(4)
_PRETRAIN_VERSION = 1  # bump when pretraining changes (invalidates cached checkpoints)


# -- model ------------------------------------------------------------------------


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.heads, self.head_dim = arch.heads, arch.head_dim
        width = arch.heads * arch.head_dim
        self.attn_norm = nn.RMSNorm(arch.d_model)
        self.qkv = nn.Linear(arch.d_model, 3 * width, bias=False)
        self.attn_out = nn.Linear(width, arch.d_model, bias=False)
        self.mlp_norm = nn.RMSNorm(arch.d_model)
        self.mlp_in = nn.Linear(arch.d_model, arch.mlp_ratio * arch.d_model, bias=False)
        self.mlp_out = nn.Linear(arch.mlp_ratio * arch.d_model, arch.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(a.transpose(1, 2).reshape(B, T, -1))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))


def pretrain_lr(step: int, cfg: Any) -> float:
    """Pretraining's lr at ``step``: a linear warmup to ``pretrain_lr``, then constant, or a cosine to ``pretrain_final_lr``.

    With the constant schedule the Local-SGD phase starts with a drop from
    ``pretrain_lr`` to its own lr.max (3e-3 to 1e-3 on the micro LM): an
    annealing step that lowers the loss by itself in the first rounds. The
    cosine ends at the phase's lr.max, so the phase continues the schedule.
    """
    warm = min(1.0, (step + 1) / cfg.pretrain_warmup) if cfg.pretrain_warmup else 1.0
    if cfg.pretrain_schedule == "constant" or step < cfg.pretrain_warmup:
        return cfg.pretrain_lr * warm
    span = max(cfg.pretrain_steps - cfg.pretrain_warmup, 1)
    ratio = min((step - cfg.pretrain_warmup) / span, 1.0)
    return cfg.pretrain_final_lr + 0.5 * (cfg.pretrain_lr - cfg.pretrain_final_lr) * (1 + math.cos(math.pi * ratio))


class Optimizers:
    """Several optimizers over disjoint parameters, stepped as one (Muon's matrices and AdamW's rest).

    It offers what a job uses of an optimizer: its parameter groups (the
    learning-rate plan sets each group's lr), ``zero_grad``, ``step`` and a
    state dict of plain data, so a kept inner state travels as AdamW's does.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, saved in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(saved)


def muon_with_adamw(model: nn.Module, lr: float, cfg: Any) -> Optimizers:
    """Muon on the transformer blocks' weight matrices, AdamW on the embedding, norms and head (MuLoCo's split).

    Muon orthogonalises each matrix's momentum (Newton-Schulz, torch.optim.Muon's
    defaults: momentum 0.95, Nesterov, 5 steps). ``adjust_lr_fn="match_rms_adamw"``
    scales its update to AdamW's RMS, so both follow the same per-step learning
    rates (Eq. 3) and weight decay; only the direction of the matrices' steps changes.
    """
    matrices = [p for block in model.blocks for p in block.parameters() if p.ndim == 2]
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return Optimizers(
        torch.optim.Muon(matrices, lr=lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(rest, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=True),
    )


class Transformer(nn.Module):
    """Decoder-only LM; ``forward(tokens)`` returns logits (B, T, vocab)."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.embed = nn.Embedding(arch.vocab_size, arch.d_model)
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.layers))
        self.final_norm = nn.RMSNorm(arch.d_model)
        self.head = None if arch.tied else nn.Linear(arch.d_model, arch.vocab_size, bias=False)
        inv_freq = 1.0 / 10000 ** (torch.arange(0, arch.head_dim, 2, dtype=torch.float32) / arch.head_dim)
        angles = torch.outer(torch.arange(arch.seq_len, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> None:
        """GPT-2 init, drawn on the CPU from ``generator`` (device-independent values)."""
        residual_std = 0.02 / math.sqrt(2 * self.arch.layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            std = residual_std if name.endswith(("attn_out.weight", "mlp_out.weight")) else 0.02
            p.copy_(torch.empty(p.shape).normal_(0.0, std, generator=generator))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        x = self.final_norm(x)
        return F.linear(x, self.embed.weight if self.head is None else self.head.weight)


def lm_loss(model: nn.Module, windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of windows (B, seq_len + 1)."""
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction=reduction)


def stacked_lm_losses(model: Transformer) -> StackedLoss:
    """Each job's mean next-token loss under its own parameters: :class:`Transformer`'s forward over a job dimension.

    The same arithmetic as :class:`Transformer` and :class:`Block`, with
    every linear map a batched matmul over the jobs and attention called once
    on (jobs x batch, heads, T, head_dim): on a CPU, attention has no ``vmap``
    batching rule and would run job by job, and a 5-D call takes the slow
    unfused path (tests/test_stacked.py checks this forward against the
    module's).
    """
    arch = model.arch

    def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # x (n, ..., in), w (n, out, in)
        return torch.bmm(x.flatten(1, -2), w.transpose(1, 2)).view(*x.shape[:-1], w.shape[1])

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],)) * w[:, None, None, :]

    def losses(p: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, B, T = inputs.shape
        cos, sin = model.rope_cos[:T], model.rope_sin[:T]
        x = torch.stack([F.embedding(inputs[i], p["embed.weight"][i]) for i in range(n)])
        for b in range(arch.layers):
            w = {name: p[f"blocks.{b}.{name}.weight"] for name in ("attn_norm", "qkv", "attn_out", "mlp_norm", "mlp_in", "mlp_out")}
            q, k, v = linear(rms(x, w["attn_norm"]), w["qkv"]).view(n, B, T, 3, arch.heads, arch.head_dim).permute(3, 0, 1, 4, 2, 5)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            heads = (n * B, arch.heads, T, arch.head_dim)  # 4-D: the fused CPU kernel, not the math fallback
            a = F.scaled_dot_product_attention(q.reshape(heads), k.reshape(heads), v.reshape(heads), is_causal=True)
            x = x + linear(a.view(n, B, arch.heads, T, arch.head_dim).transpose(2, 3).reshape(n, B, T, -1), w["attn_out"])
            x = x + linear(F.gelu(linear(rms(x, w["mlp_norm"]), w["mlp_in"])), w["mlp_out"])
        x = rms(x, p["final_norm.weight"])
        logits = linear(x, p["embed.weight"] if arch.tied else p["head.weight"])
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return per_token.view(n, -1).mean(dim=1)

    return losses


def count_params(arch: Arch) -> int:
    """Real parameter count of the module (built on the meta device: no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Transformer(arch).parameters())


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise FieldError("trainer.config.device", "cuda, but no CUDA device is available; use device: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        # Deterministic cuBLAS; must be set before CUDA initialises.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


# -- trainer ----------------------------------------------------------------------


ProgressFn = Callable[[int, int, float], None]


class LMTrainer:
    """Trainer protocol implementation for the transformer language model."""

    Config = LMConfig

    def __init__(self, config: LMConfig | dict[str, Any] | None = None, *, seed: int = 0, num_shards: int = 4):
        self.config = config if isinstance(config, LMConfig) else LMConfig(**(config or {}))
        self.seed = seed
        self.num_shards = num_shards
        self.arch = self.config.arch()
        self.device = resolve_device(self.config.device)
        torch.use_deterministic_algorithms(True)
        self.corpus: TokenizedCorpus = load_corpus(self.config.data, self.arch.vocab_size)
        if self.corpus.vocab_size > self.arch.vocab_size:  # pragma: no cover - the BPE trainer respects its size
            raise UserError(f"tokenizer has {self.corpus.vocab_size} tokens, more than the model's {self.arch.vocab_size}")
        L = self.arch.seq_len
        self._n_train = num_windows(self.corpus.train, L)
        self._shards = make_shards(self._n_train, num_shards, self.config.data.shards, seeded_rng(self.seed, _STREAM_SHARDS))
        n_eval = min(max(self.config.data.eval_tokens // L, 1), num_windows(self.corpus.validation, L))
        if n_eval == 0:
            raise FieldError("trainer.config.data.validation_fraction", f"the validation text is shorter than one sequence of {L + 1} tokens; raise it")
        self._eval = gather_windows(self.corpus.validation, np.arange(n_eval), L)
        self._model = Transformer(self.arch).to(self.device)
        #: what local training calls for the loss: the model, or its compiled twin (compute.compile)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self._model
        self._stacked_losses: StackedLoss | None = None

    def compile_model(self) -> None:
        """Train later jobs through ``torch.compile`` (Inductor) of the model: the Local-SGD phase only.

        Why: at the micro size a step is mostly per-op overhead; fused kernels make
        it 1.10-1.36x faster on one CPU core (benchmarks/RESULTS.md). Compiled
        kernels round differently from eager ones, so ``compute.compile`` is
        part of the run's identity. Pretraining and evaluation stay eager, so
        the cached pretrained checkpoint is shared by both modes. Shapes are
        static (a round's batch never changes size); a stack of another height
        compiles once more, hence the raised recompile limit.
        """
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self._forward = torch.compile(self._model, dynamic=False)
        self._stacked_losses = torch.compile(stacked_lm_losses(self._model), dynamic=False)

    # -- helpers ------------------------------------------------------------------
    def _shard_windows(self, shard: int, offset: int, count: int) -> np.ndarray:
        """Window indices ``offset .. offset+count`` of shard's epoch order (seeded by shard, epoch)."""
        windows = self._shards[shard]
        order = epoch_order(len(windows), offset, count, lambda e: seeded_rng(self.seed, _STREAM_ORDER, shard, e).permutation(len(windows)))
        return windows[order]

    def _fresh_params(self, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seeded_int(seed, _STREAM_INIT))
        self._model.init_weights(gen)
        return flatten_params(self._model).cpu()

    def _optimizer(self, lr: float) -> torch.optim.Optimizer | Optimizers:
        """The inner optimizer of a round (``inner_optimizer``)."""
        if self.config.inner_optimizer == "muon":
            return muon_with_adamw(self._model, lr, self.config)
        return self._adamw(lr)

    def _adamw(self, lr: float) -> torch.optim.Optimizer:
        """Fused AdamW: the fastest kernel on CPU, and deterministic; pretraining always uses it (the paper's Adam)."""
        cfg = self.config
        return torch.optim.AdamW(
            self._model.parameters(), lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=True
        )

    def _step(self, opt: torch.optim.Optimizer | Optimizers, windows: torch.Tensor, lr: float,
              forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
        """One AdamW step on ``windows`` (accumulated over micro-batches) through ``forward``; returns the mean loss."""
        forward = self._model if forward is None else forward
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        n = windows.shape[0]
        chunk = self.config.micro_batch_size or n
        total = 0.0
        for start in range(0, n, chunk):
            part = windows[start : start + chunk].to(self.device, non_blocking=True)
            loss = lm_loss(forward, part)
            if chunk < n:  # accumulate: each chunk's mean weighted by its share of the batch
                (loss * (part.shape[0] / n)).backward()
            else:
                loss.backward()
            total += loss.item() * part.shape[0]
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._model.parameters(), self.config.grad_clip)
        opt.step()
        return total / n

    # -- pretraining ----------------------------------------------------------------
    def pretrain_key(self, threads: int | None = None) -> str:
        """Hash of everything the pretrained checkpoint depends on."""
        cfg = self.config
        return digest(
            {
                "v": _PRETRAIN_VERSION,
                # the batch that pretraining uses, not the Local-SGD one: runs that differ only in
                # their inner batch share one checkpoint (and defaults keep their old keys)
                "arch": {**asdict(self.arch), "batch_size": cfg.pretrain_batch_size or self.arch.batch_size},
                "corpus": self.corpus.key,
                "steps": cfg.pretrain_steps,
                "lr": cfg.pretrain_lr,
                "warmup": cfg.pretrain_warmup,
                # added later: only when not the constant lr, so the checkpoints cached before keep their keys
                **({"schedule": [cfg.pretrain_schedule, cfg.pretrain_final_lr]}
                   if cfg.pretrain_schedule != "constant" else {}),
                "batch": cfg.pretrain_batch_size or self.arch.batch_size,
                "micro_batch": cfg.micro_batch_size,
                "seed": cfg.pretrain_seed,
                "adamw": [cfg.weight_decay, list(cfg.betas), cfg.eps, cfg.grad_clip],
                "threads": threads or torch.get_num_threads(),
                "device": self.device.type,
                "torch": torch.__version__,
            }
        )

    def pretrain_path(self, threads: int | None = None):
        return cache_dir() / "pretrained" / f"{self.pretrain_key(threads)[:24]}.pt"

    def pretrain(self, threads: int | None = None, progress: ProgressFn | None = None) -> torch.Tensor:
        """The pretrained parameters: from the cache, or trained now and cached."""
        threads = threads or torch.get_num_threads()
        path = self.pretrain_path(threads)
        if path.exists():
            return torch.load(path, weights_only=True)["theta"]
        # One process pretrains, the others wait for its checkpoint (same cache key).
        with file_lock(path.with_name(path.name + ".lock")):
            if path.exists():
                return torch.load(path, weights_only=True)["theta"]
            return self._pretrain_now(path, threads, progress)

    def _pretrain_now(self, path, threads: int, progress: ProgressFn | None) -> torch.Tensor:
        cfg = self.config
        if progress is None:  # say why the first run of a scenario pauses before its first round
            print(f"pretraining the {cfg.size} LM for {cfg.pretrain_steps} steps (cached for later runs: {path})", file=sys.stderr)
        torch.set_num_threads(threads)
        load_flat_params(self._model, self._fresh_params(cfg.pretrain_seed))
        self._model.train()
        opt = self._adamw(cfg.pretrain_lr)
        batch = cfg.pretrain_batch_size or self.arch.batch_size
        rng = lambda e: seeded_rng(cfg.pretrain_seed, _STREAM_ORDER, e).permutation(self._n_train)  # noqa: E731
        order = epoch_order(self._n_train, 0, batch * cfg.pretrain_steps, rng)
        for step in range(cfg.pretrain_steps):
            lr = pretrain_lr(step, cfg)
            windows = gather_windows(self.corpus.train, order[step * batch : (step + 1) * batch], self.arch.seq_len)
            loss = self._step(opt, windows, lr)
            if progress is not None:
                progress(step + 1, cfg.pretrain_steps, loss)
        theta = flatten_params(self._model).cpu()
        atomic_write(path, lambda tmp: torch.save({"theta": theta, "key": self.pretrain_key(threads)}, tmp))
        return theta

    # -- Trainer protocol -------------------------------------------------------------
    def init_params(self) -> torch.Tensor:
        """The pretrained model when ``pretrain_steps > 0``, else a fresh GPT-2 init from the seed."""
        if self.config.pretrain_steps > 0:
            return self.pretrain()
        return self._fresh_params(self.seed)

    def shard_sizes(self) -> list[int]:
        return [len(s) for s in self._shards]

    def batch_size(self) -> int:
        return self.arch.batch_size

    def flops_per_step(self) -> float:
        """~6 x parameters x tokens per inner step, for FLOP-rated device profiles."""
        return 6.0 * closed_form_params(self.arch) * self.arch.batch_size * self.arch.seq_len

    def layer_sizes(self) -> list[int]:
        """One layer per block; the embedding goes with the first, the final norm (and an untied head) with the last."""
        model = self._model
        sizes = [sum(p.numel() for p in block.parameters()) for block in model.blocks]
        sizes[0] += model.embed.weight.numel()
        sizes[-1] += sum(p.numel() for p in model.final_norm.parameters())
        sizes[-1] += 0 if model.head is None else model.head.weight.numel()
        return sizes

    def local_train(self, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None) -> JobResult:
        torch.set_num_threads(job.threads)
        load_flat_params(self._model, theta)
        self._model.train()
        opt = self._optimizer(job.lrs[0])  # fresh unless the job carries a state (the paper resets it each round)
        carry_inner_state(opt, optimizer_state)
        batch = self.arch.batch_size * job.batch_multiplier
        order = self._shard_windows(job.shard, job.data_offset, batch * job.steps)
        total = 0.0
        for step, lr in enumerate(job.lrs):
            windows = gather_windows(self.corpus.train, order[step * batch : (step + 1) * batch], self.arch.seq_len)
            total += self._step(opt, windows, lr, self._forward)
        delta = theta - flatten_params(self._model).cpu()
        state = opt.state_dict() if job.keep_optimizer_state else None
        return JobResult(delta=delta, train_loss=total / job.steps, optimizer_state=state)

    def local_train_stacked(self, jobs: Sequence[StackedJob]) -> list[JobResult]:
        """:meth:`local_train` for several jobs at once, as one stacked pass (trainers/stacked.py).

        Muon's Newton-Schulz step has no stacked form here: with ``inner_optimizer: muon`` the jobs train one by one.
        ``micro_batch_size`` bounds one forward pass's sequences across the stack (the memory it was set for), so
        each job's batch is accumulated in chunks of ``micro_batch_size // jobs``.
        """
        if self.config.inner_optimizer != "adamw":
            return [self.local_train(job.theta, job.spec, job.state) for job in jobs]
        torch.set_num_threads(jobs[0].spec.threads)
        self._model.train()
        cfg, seq_len = self.config, self.arch.seq_len
        plans = []
        for job in jobs:
            batch = self.arch.batch_size * job.spec.batch_multiplier
            plans.append((self._shard_windows(job.spec.shard, job.spec.data_offset, batch * job.spec.steps), batch))

        def batch_of(j: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
            order, batch = plans[j]
            windows = gather_windows(self.corpus.train, order[step * batch : (step + 1) * batch], seq_len).to(self.device)
            return windows[:, :-1], windows[:, 1:]

        adamw = AdamW(betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
        # micro_batch_size caps the sequences of one forward pass, the whole stack's: each job's share of it
        chunk = None if cfg.micro_batch_size is None else max(1, cfg.micro_batch_size // len(jobs))
        losses = stacked_lm_losses(self._model) if self._stacked_losses is None else self._stacked_losses
        return train_stacked(self._model, jobs, batch_of, losses, adamw, chunk=chunk)

    def gradient_noise_scale(self, theta: torch.Tensor, small: int = 4, groups: int = 8, per_group: int = 32) -> dict[str, float]:
        """The simple gradient noise scale at ``theta``: :func:`gradient_noise_scale`."""
        return gradient_noise_scale(self, theta, small, groups, per_group)

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        """Mean next-token loss and perplexity on the fixed held-out windows."""
        load_flat_params(self._model, theta)
        self._model.eval()
        total, tokens = 0.0, 0
        for start in range(0, self._eval.shape[0], _EVAL_BATCH):
            part = self._eval[start : start + _EVAL_BATCH].to(self.device)
            total += float(lm_loss(self._model, part, reduction="sum"))
            tokens += part[:, 1:].numel()
        loss = total / tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def gradient_noise_scale(trainer: LMTrainer, theta: torch.Tensor, small: int = 4, groups: int = 8,
                         per_group: int = 32) -> dict[str, float]:
    """The simple gradient noise scale B = tr(Sigma) / |G|^2 at ``theta`` (McCandlish et al. 2018, App. A).

    B is the batch size (in sequences) around which doubling the batch
    stops halving the steps needed: far below it, a k x larger batch is
    almost k x the progress per step, which is what the 1-worker k x batch
    baseline gets and Local-SGD workers do not. Estimated from gradients
    of ``per_group`` batches of ``small`` training sequences each (their
    mean is the big batch), in ``groups`` independent groups drawn with a
    fixed stream, so the estimate is reproducible.
    """
    load_flat_params(trainer._model, theta)
    trainer._model.train()
    rng = seeded_rng(trainer.seed, _STREAM_NOISE)
    big = small * per_group
    g_small_sq, g_big_sq = [], []
    for _ in range(groups):
        windows = rng.choice(trainer._n_train, size=big, replace=False)
        grads = []
        for start in range(0, big, small):
            trainer._model.zero_grad(set_to_none=True)
            lm_loss(trainer._model, gather_windows(trainer.corpus.train, windows[start:start + small], trainer.arch.seq_len)
                    .to(trainer.device)).backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in trainer._model.parameters()]).double().cpu())
        stacked = torch.stack(grads)
        g_small_sq.append(float((stacked ** 2).sum(dim=1).mean()))
        g_big_sq.append(float((stacked.mean(dim=0) ** 2).sum()))
    trainer._model.zero_grad(set_to_none=True)
    small_sq, big_sq = float(np.mean(g_small_sq)), float(np.mean(g_big_sq))
    true_sq = (big * big_sq - small * small_sq) / (big - small)
    trace = (small_sq - big_sq) / (1 / small - 1 / big)
    return {"noise_scale_sequences": trace / true_sq, "noise_scale_tokens": trace / true_sq * trainer.arch.seq_len,
            "grad_norm_sq": true_sq, "trace_sigma": trace}
