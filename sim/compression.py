"""What a compressed transfer does to the values: encode, then decode, deterministically.

A pseudo-gradient uploaded as ``bf16``, ``int8`` or ``fp4`` reaches the server
changed, and the outer update accumulates what it receives (in float32, as
the papers do). Modelling only the shorter transfer would tell a user that
compression is free. Formats:

* ``fp32``: unchanged.
* ``bf16``: round to nearest even (torch's float32 -> bfloat16 conversion);
  relative error at most 2^-8.
* ``int8``: symmetric, one scale per block of ``block`` consecutive values of
  the flat vector (the MX formats' layout: blocks, not tensors, so one outlier
  costs only its block). The scale is a power of two, ``s = 2^ceil(log2(amax
  / 127))``, stored in one byte (an E8M0 exponent); values are
  ``round_half_even(x / s)`` in [-127, 127]. Error per value at most s / 2 <=
  amax / 127.
* ``fp4``: E2M1 (the values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives,
  as MXFP4 uses; Streaming DiLoCo sends 4-bit outer gradients too, E2M1 or
  E3M0: the part of its paper we could read does not say), a power-of-two scale per block,
  ``s = 2^ceil(log2(amax / 6))`` so nothing saturates; each value goes to the
  nearest grid point (ties to the even grid index). Error per value at most
  s <= amax / 3.

Power-of-two scales make every codec idempotent (decoding and encoding again
changes nothing), so a value that crossed the wire twice is not degraded
twice, and the product ``q x s`` is exact in float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch

from sim.network import DEFAULT_BLOCK, NetworkSpec

Format = Literal["fp32", "bf16", "int8", "fp4"]
#: payload bits per value, without the block scales
VALUE_BITS: dict[str, int] = {"fp32": 32, "bf16": 16, "int8": 8, "fp4": 4}
#: bytes of one block scale (an E8M0 exponent)
SCALE_BYTES = 1
#: the largest magnitude of a block-scaled format's grid: a block's amax is scaled to at most this
LARGEST: dict[str, float] = {"int8": 127.0, "fp4": 6.0}

_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def wire_bytes(n: int, fmt: Format, block: int = DEFAULT_BLOCK) -> int:
    """Bytes on the wire for ``n`` values: the payload plus one scale per block (int8, fp4)."""
    payload = math.ceil(n * VALUE_BITS[fmt] / 8)
    return payload + (math.ceil(n / block) * SCALE_BYTES if fmt in ("int8", "fp4") else 0)


def payload_bytes(net: NetworkSpec, n: int) -> tuple[int, int]:
    """(upload, download) bytes of one pseudo-gradient and one model of ``n`` values on ``net``'s encodings."""
    return wire_bytes(n, net.dtype, net.block), wire_bytes(n, net.model_dtype, net.block)


def _blocks(flat: torch.Tensor, block: int) -> torch.Tensor:
    """The flat vector as rows of ``block`` values, zero-padded at the end."""
    return torch.nn.functional.pad(flat, (0, (-flat.numel()) % block)).reshape(-1, block)


def _block_scales(blocks: torch.Tensor, top: float) -> torch.Tensor:
    """Power-of-two scale per block with ``amax / scale`` in (top / 2, top]; 1 for all-zero blocks."""
    amax = blocks.abs().amax(dim=1, keepdim=True)
    exponent = torch.ceil(torch.log2(amax / top))
    return torch.where(amax > 0, torch.exp2(exponent), torch.ones_like(amax))


def _round_to_grid(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Nearest point of an ascending non-negative ``grid`` to ``|u|`` (ties to the even index), sign kept."""
    mag = u.abs()
    upper = torch.searchsorted(grid, mag.contiguous()).clamp(1, len(grid) - 1)
    lo, hi = grid[upper - 1], grid[upper]
    take_hi = (mag - lo > hi - mag) | ((mag - lo == hi - mag) & (upper % 2 == 0))
    return torch.where(take_hi, hi, lo) * torch.sign(u)


def roundtrip(x: torch.Tensor, fmt: Format, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """decode(encode(x)): the values that arrive after a transfer in ``fmt``, in ``x``'s dtype (the run's)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    flat = x.detach().reshape(-1)
    if fmt == "fp32":
        return flat.to(torch.float32).to(x.dtype).reshape(x.shape)
    if fmt == "bf16":
        return flat.to(torch.bfloat16).to(x.dtype).reshape(x.shape)
    if fmt not in ("int8", "fp4"):
        raise ValueError(f"unknown format {fmt!r}; expected fp32, bf16, int8 or fp4")
    blocks = _blocks(flat, block)
    scale = _block_scales(blocks, LARGEST[fmt])
    if fmt == "int8":
        decoded = torch.round(blocks / scale).clamp(-127, 127) * scale  # torch.round: half to even
    else:
        decoded = _round_to_grid(blocks / scale, _E2M1.to(blocks.device, blocks.dtype)) * scale
    return decoded.reshape(-1)[: flat.numel()].reshape(x.shape)


def error_bound(x: torch.Tensor, fmt: Format, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Largest |roundtrip(x) - x| each value may have, from its block's amax (see the module docstring)."""
    flat = x.detach().reshape(-1)
    if fmt == "fp32":
        return (flat.abs() * (2.0**-24 if flat.dtype == torch.float64 else 0.0)).reshape(x.shape)
    if fmt == "bf16":
        return (flat.abs() * 2.0**-8).reshape(x.shape)
    blocks = _blocks(flat, block)
    scale = _block_scales(blocks, LARGEST[fmt])
    bound = (scale / 2 if fmt == "int8" else scale).expand_as(blocks)
    return bound.reshape(-1)[: flat.numel()].reshape(x.shape)


class Links:
    """What the server and the workers receive: the model on download, pseudo-gradients on upload.

    ``fp32`` (and no network, and the 1-worker baseline, which sends nothing)
    leaves the values as they are, so such runs keep their hashes; other
    formats decode(encode(x)) on the way, so a worker trains from the model it
    received and the outer update accumulates, in float32, what arrived.
    """

    def __init__(self, upload: Format = "fp32", download: Format = "fp32", block: int = DEFAULT_BLOCK):
        self.upload_format, self.download_format, self.block = upload, download, block

    def download(self, theta: torch.Tensor) -> torch.Tensor:
        """The model a job starts from (a copy: the server's theta moves on)."""
        return theta.clone() if self.download_format == "fp32" else roundtrip(theta, self.download_format, self.block)

    def upload(self, result: Any) -> Any:
        """A job's result with its pseudo-gradient as the server receives it."""
        if self.upload_format == "fp32":
            return result
        return dataclasses.replace(result, delta=self.received(result.delta))

    def received(self, delta: torch.Tensor) -> torch.Tensor:
        """A pseudo-gradient (or a region server's accumulated change) as the receiving server sees it."""
        return delta if self.upload_format == "fp32" else roundtrip(delta, self.upload_format, self.block)
