"""The settings of every built-in trainer, importable without torch.

A scenario is validated against its trainer's ``Config`` (a pydantic model),
and ``asyncsim validate``, ``--help`` and ``models`` should answer in a
fraction of a second, so these models live apart from the trainers' torch
code. Each trainer module re-exports its own (``trainers.toy.ToyConfig``...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.memory import TrainerNeeds

#: built-in trainer name -> its settings model (see ``trainers.BUILTIN_TRAINERS`` for the classes)
BUILTIN_CONFIGS: dict[str, str] = {"toy": "ToyConfig", "lm": "LMConfig", "null": "NullConfig"}


# -- toy ------------------------------------------------------------------------------

class ToyConfig(BaseModel):
    """Sizes of the toy task; defaults follow the authors' public notebook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(512, gt=0)
    num_classes: int = Field(4, ge=2)
    clusters_per_class: int = Field(8, ge=1)
    noise_std: float = Field(0.5, ge=0)
    hidden: int = Field(512, gt=0, description="width of each hidden layer")
    hidden_layers: int = Field(1, ge=0)
    shard_size: int = Field(32_000, gt=0, description="training examples per shard (notebook: 128k over 4)")
    eval_size: int = Field(4096, gt=0)
    batch_size: int = Field(32, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    dtype: Literal["float32", "float64"] = "float32"

    def memory_needs(self, *, num_shards: int, batch_multiplier: int) -> TrainerNeeds:
        """Parameters, activations and the examples held in memory (sim/memory.py), without building the model.

        The training set is float32 (``num_shards`` shards) with int64
        labels; a step holds, for each example, its float32 row and, in
        ``dtype``, the input, two values a hidden unit (linear and ReLU
        outputs) and three a class, twice (forward and backward).
        """
        vb = 8 if self.dtype == "float64" else 4
        examples = self.shard_size * num_shards
        data = examples * (4 * self.dim + 16) + self.eval_size * (vb * self.dim + 8)
        per_example = 4 * self.dim + 2 * vb * (self.dim + 2 * self.hidden * self.hidden_layers + 3 * self.num_classes)
        evaluation = self.eval_size * vb * (2 * self.hidden + 3 * self.num_classes)
        activations = max(self.batch_size * batch_multiplier * per_example, evaluation)
        return TrainerNeeds(params=toy_params(self), value_bytes=vb, activation_bytes=activations, data_bytes=data)


def toy_params(cfg: ToyConfig) -> int:
    """The toy MLP's parameter count from its settings alone (weights and biases of each Linear)."""
    widths = [cfg.dim] + [cfg.hidden] * cfg.hidden_layers + [cfg.num_classes]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))



# -- null -----------------------------------------------------------------------------

class NullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(4, gt=0, le=10**8, description="length of the parameter vector")
    shard_size: int = Field(1_000_000, gt=0, le=10**15)
    batch_size: int = Field(1, gt=0, le=10**6)
    dtype: Literal["float32", "float64"] = "float64"

    def memory_needs(self, *, num_shards: int, batch_multiplier: int) -> TrainerNeeds:
        """Its parameter vector only: it trains nothing and holds no data (sim/memory.py)."""
        return TrainerNeeds(params=self.dim, value_bytes=8 if self.dtype == "float64" else 4)



# -- language model ---------------------------------------------------------------------

class DataConfig(BaseModel):
    """Where the LM's text comes from and how it is split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: Literal["shakespeare", "c4"] = Field(
        "shakespeare", description="built-in corpus: the committed offline one, or C4 from the hub"
    )
    path: str | None = Field(None, description="local .txt/.jsonl/.parquet file, folder or glob; replaces corpus")
    text_field: str = Field("text", description="field holding the text in jsonl/parquet files")
    max_documents: int | None = Field(
        None, gt=0, description="use only the first N training documents (C4 default 100,000)"
    )
    validation_documents: int = Field(2000, gt=0, description="C4 validation documents to read")
    validation_fraction: float = Field(
        0.05, gt=0, lt=1, description="share of documents held out where the corpus has no validation split"
    )
    eval_tokens: int = Field(32_768, gt=0, description="size of the fixed held-out evaluation set, in tokens")
    shards: Literal["iid", "by_source"] = "iid"


@dataclass(frozen=True)
class Arch:
    """A model size: architecture plus the batch geometry it defaults to."""

    layers: int
    d_model: int
    heads: int
    head_dim: int
    vocab_size: int
    tied: bool
    seq_len: int
    batch_size: int
    mlp_ratio: int = 4


PRESETS: dict[str, Arch] = {
    # micro: the paper's whole LM protocol (24K pretraining + 64K local steps) in
    # about 10 minutes on one CPU core; see the module docstring for the measurement.
    "micro": Arch(layers=2, d_model=64, heads=2, head_dim=32, vocab_size=512, tied=True, seq_len=64, batch_size=4),
    "tiny": Arch(layers=2, d_model=128, heads=2, head_dim=64, vocab_size=2048, tied=True, seq_len=128, batch_size=8),
    "small": Arch(layers=4, d_model=256, heads=4, head_dim=64, vocab_size=4096, tied=True, seq_len=256, batch_size=8),
    "20M": Arch(layers=6, d_model=256, heads=4, head_dim=64, vocab_size=32_000, tied=False, seq_len=256, batch_size=128),
    "60M": Arch(layers=3, d_model=896, heads=16, head_dim=64, vocab_size=32_000, tied=True, seq_len=256, batch_size=128),
    "150M": Arch(layers=12, d_model=896, heads=16, head_dim=64, vocab_size=32_000, tied=True, seq_len=256, batch_size=128),
}


#: Measured ms per inner AdamW step at the preset's default batch, one CPU thread,
#: torch 2.13, this project's 2-core machine (2026-11-30); None: not measured on a CPU
#: (the 20M step at 128 x 256 tokens took over a minute, the larger ones more).
CPU_MS_PER_STEP: dict[str, float | None] = {"micro": 4.8, "tiny": 63.4, "small": 675.5, "20M": None, "60M": None, "150M": None}


#: sequences the LM evaluates at a time (trainers/lm.py)
EVAL_BATCH = 16


def closed_form_params(arch: Arch) -> int:
    """Parameter count from the architecture alone (no biases, RMSNorm weights only)."""
    d, width = arch.d_model, arch.heads * arch.head_dim
    attention = d * 3 * width + width * d
    mlp = 2 * d * arch.mlp_ratio * d
    per_layer = attention + mlp + 2 * d
    embeddings = arch.vocab_size * d * (1 if arch.tied else 2)
    return arch.layers * per_layer + d + embeddings


class LMConfig(BaseModel):
    """The LM trainer's settings (``trainer.config`` of a scenario)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: settings added after runs were stored: left out of the resolved scenario at these values, so the
    #: digests of every scenario written before them hold (sim/scenario.py)
    OMIT_AT_DEFAULT: ClassVar[dict[str, Any]] = {"inner_optimizer": "adamw", "pretrain_schedule": "constant",
                                                 "pretrain_final_lr": 1e-3}

    size: Literal["micro", "tiny", "small", "20M", "60M", "150M"] = "tiny"
    # Overrides of the preset; None keeps the preset's value.
    layers: int | None = Field(None, gt=0)
    d_model: int | None = Field(None, gt=0)
    heads: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    vocab_size: int | None = Field(None, ge=258, description="BPE vocabulary: 256 bytes + end-of-text + merges")
    tied: bool | None = None
    seq_len: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0, description="sequences per inner step per worker")
    micro_batch_size: int | None = Field(None, gt=0, description="gradient-accumulation chunk (memory)")
    # Inner optimizer: AdamW (the paper: default betas, weight decay 0.1), or Muon on the blocks' matrices with
    # AdamW on the rest (MuLoCo, arXiv 2505.23725), at the same learning-rate plan (trainers/lm.py).
    inner_optimizer: Literal["adamw", "muon"] = "adamw"
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0, description="global gradient-norm clip; null for none")
    # Pretraining before Local-SGD (paper: 24K steps with Adam).
    pretrain_steps: int = Field(0, ge=0)
    pretrain_lr: float = Field(3e-3, gt=0)
    pretrain_warmup: int = Field(100, ge=0)
    pretrain_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="after the warmup: constant pretrain_lr, or a cosine down to pretrain_final_lr")
    pretrain_final_lr: float = Field(1e-3, gt=0, description="where the cosine ends: the Local-SGD phase's lr.max, "
                                     "so the inner rounds start where pretraining stopped")
    pretrain_batch_size: int | None = Field(None, gt=0, description="default: batch_size")
    pretrain_seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _even_head_dim(self) -> "LMConfig":
        if self.arch().head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary position embeddings (got {self.arch().head_dim})")
        return self

    def memory_needs(self, *, num_shards: int, batch_multiplier: int) -> TrainerNeeds:
        """Parameters (:func:`closed_form_params`), rotary tables and, on ``device: cpu``, activations (sim/memory.py).

        On ``auto`` or ``cuda`` the activations are meant for a GPU, whose
        memory validation does not know: they are not counted. On the CPU the
        largest of a training step's chunk (``micro_batch_size``, or the
        whole batch: k x batch for the 1-worker baseline), a pretraining
        step's chunk and an evaluation batch, at :func:`activation_bytes`.
        """
        arch = self.arch()
        rope = 2 * arch.seq_len * arch.head_dim * 4
        activations = 0
        if self.device == "cpu":
            chunks = [arch.batch_size * batch_multiplier]
            if self.pretrain_steps:
                chunks.append(self.pretrain_batch_size or arch.batch_size)
            chunk = max(min(self.micro_batch_size or n, n) for n in chunks)
            evaluation = min(EVAL_BATCH, max(self.data.eval_tokens // arch.seq_len, 1))
            activations = max(chunk * activation_bytes(arch), evaluation * activation_bytes(arch, training=False))
        return TrainerNeeds(params=closed_form_params(arch), activation_bytes=activations, data_bytes=rope)

    def arch(self) -> Arch:
        base = PRESETS[self.size]
        overrides = {k: getattr(self, k) for k in ("layers", "d_model", "heads", "head_dim", "vocab_size", "tied", "seq_len", "batch_size")}
        return Arch(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})


def activation_bytes(arch: Arch, training: bool = True) -> int:
    """Peak memory of one sequence through the LM on the CPU: a training step's forward and backward, or an evaluation.

    Per token, in float32 values: training holds 3 x vocab for the logits
    (the log-softmax kept for backward, then its gradient and the logits'),
    and per layer 7 x d_model, 13 x the attention width (heads x head_dim:
    q, k, v, the rotary products, the attention output) and 2 x the MLP
    width; evaluation (no gradients) 2 x vocab (logits and log-softmax) and
    4 x the MLP width. Measured (2026-12-06, torch 2.13, CPU, one thread) as
    the slope of peak RSS of one fused-AdamW step between 8 and 16 sequences
    of 256 tokens, against this formula: 20M 145 MB a sequence (142), 60M 169
    (180), 150M 363 (427), the 20M with a 258-token vocabulary 46 (45);
    evaluation 20M 64 (70), 150M 81 (80).
    """
    d, width, mlp = arch.d_model, arch.heads * arch.head_dim, arch.mlp_ratio * arch.d_model
    if training:
        per_token = 3 * arch.vocab_size + arch.layers * (7 * d + 13 * width + 2 * mlp)
    else:
        per_token = 2 * arch.vocab_size + 4 * mlp
    return 4 * arch.seq_len * per_token
