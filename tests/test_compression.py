"""Compressed transfers change the values, within each format's bound, and the same way every time."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.compression import DEFAULT_BLOCK, error_bound, roundtrip, wire_bytes

FORMATS = ("fp32", "bf16", "int8", "fp4")

vectors = st.builds(
    lambda seed, n, scale, outliers: _vector(seed, n, scale, outliers),
    st.integers(0, 2**31 - 1), st.integers(1, 300), st.sampled_from([1e-6, 1e-2, 1.0, 1e3]), st.booleans(),
)


def _vector(seed: int, n: int, scale: float, outliers: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * scale
    if outliers and n > 3:
        x[::7] *= 100.0
        x[1::5] = 0.0
    return x


@settings(max_examples=60, deadline=None)
@given(vectors, st.sampled_from(FORMATS), st.sampled_from([1, 8, 32, 64]))
def test_roundtrip_error_within_bound_and_idempotent(x, fmt, block):
    y = roundtrip(x, fmt, block)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert bool(((y - x).abs() <= error_bound(x, fmt, block) * (1 + 1e-6)).all())
    assert torch.equal(roundtrip(y, fmt, block), y)  # a second crossing changes nothing
    assert torch.equal(roundtrip(x, fmt, block), y)  # deterministic
    assert bool(((y == 0) | (torch.sign(y) == torch.sign(x))).all())  # never flips a sign


def test_formats_hit_their_grids():
    x = torch.tensor([0.1, -0.37, 1.0, 3.3, -5.9, 6.0, 0.0, 2.5])
    assert torch.equal(roundtrip(x, "fp32"), x)
    assert torch.equal(roundtrip(x, "bf16"), x.to(torch.bfloat16).float())
    q = roundtrip(x, "int8", block=8)  # amax 6 -> scale 2^ceil(log2(6/127)) = 2^-4
    assert torch.equal(q / 2**-4, torch.round(x / 2**-4))
    f = roundtrip(x, "fp4", block=8)  # amax 6 -> scale 1: the E2M1 grid itself, 2.5 ties to 2 (even index)
    assert f.tolist() == [0.0, -0.5, 1.0, 3.0, -6.0, 6.0, 0.0, 2.0]
    assert not torch.equal(roundtrip(x, "int8"), x) and not torch.equal(roundtrip(x, "fp4"), x)


@pytest.mark.parametrize("fmt, bits", [("fp32", 32), ("bf16", 16), ("int8", 8), ("fp4", 4)])
def test_bytes_on_the_wire(fmt, bits):
    from trainers.configs import PRESETS, closed_form_params

    n = closed_form_params(PRESETS["micro"])
    scales = math.ceil(n / DEFAULT_BLOCK) if fmt in ("int8", "fp4") else 0
    assert wire_bytes(n, fmt) == n * bits // 8 + scales
    if fmt == "int8":  # a quarter of fp32, plus one byte per block
        assert wire_bytes(n, "int8") / wire_bytes(n, "fp32") == pytest.approx(0.25 * (1 + 1 / DEFAULT_BLOCK), rel=1e-4)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown format"):
        roundtrip(torch.ones(3), "int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block"):
        roundtrip(torch.ones(3), "int8", block=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_runs_get_float64_values_exact_on_the_grid(fmt):
    x = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = roundtrip(x, fmt, 16)
    assert y.dtype == torch.float64 and bool(((y - x).abs() <= error_bound(x, fmt, 16) * (1 + 1e-9)).all())
    assert torch.equal(roundtrip(y, fmt, 16), y)
