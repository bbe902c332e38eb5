"""Streaming DiLoCo's fragments: which values of the flat model vector each fragment holds.

Douillard et al. (2025, Sec. 2.2, Fig. 2) split the model into P fragments
*strided* over layers, layer l in fragment l mod P, so every fragment spans
the network's depth (they found strided slightly better than sequential
blocks of layers, and settled on about 3 layers per fragment, Fig. 6). A
trainer that reports its layers (:class:`trainers.base.ReportsLayers`) gets
strided fragments; one that does not is cut into P contiguous, nearly equal
slices.
"""
from __future__ import annotations

from typing import Sequence

import torch

from sim.errors import FieldError


def fragment_indices(num_params: int, fragments: int, layer_sizes: Sequence[int] | None) -> list[torch.Tensor]:
    """Sorted positions of each fragment in the flat vector; together they are each position exactly once."""
    if layer_sizes is None:
        bounds = [num_params * p // fragments for p in range(fragments + 1)]
        if any(a == b for a, b in zip(bounds, bounds[1:])):
            raise FieldError("method.streaming.fragments", f"{fragments} fragments of a model of {num_params} values "
                            "leave one empty")
        return [torch.arange(a, b) for a, b in zip(bounds, bounds[1:])]
    if sum(layer_sizes) != num_params:
        raise ValueError(f"layer sizes add up to {sum(layer_sizes)}, the model has {num_params} values")
    if fragments > len(layer_sizes):
        raise FieldError("method.streaming.fragments", f"{fragments} fragments, but the trainer's model has only "
                        f"{len(layer_sizes)} layers to stride over")
    starts = [sum(layer_sizes[:l]) for l in range(len(layer_sizes))]
    return [torch.cat([torch.arange(starts[l], starts[l] + layer_sizes[l]) for l in range(p, len(layer_sizes), fragments)])
            for p in range(fragments)]
