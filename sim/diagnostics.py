"""Per-update diagnostics, recorded on each sync event when ``eval.diagnostics`` is on (issue 23).

Why DN + DyLU stalls on the micro LM is a question about the pseudo-gradients
themselves: how large each is per local step, how well it points along the
fleet's mean direction, and how far the outer step moves the model. Three
columns on every ``sync`` row answer it:

* ``delta_norm``: ||g||, the pseudo-gradient as the server received it
  (divide by ``steps`` for its size per local step);
* ``cosine``: cos(g, mean of the last k pseudo-gradients synced, itself
  included), k the number of workers: for a synchronous round, the round's
  mean; asynchronously, the mean of a round's worth of arrivals;
* ``update_norm``: ||theta after - theta before|| of the outer step that
  applied it (a synchronous round's one step, on each of its rows).

Off by default, and then absent from the event log, so runs and their
hashes are as before; on, the setting enters the run's identity.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import torch

#: the event columns diagnostics add (sim/records.py)
DIAGNOSTIC_COLUMNS = ("delta_norm", "cosine", "update_norm")


class Diagnostics:
    """The recent pseudo-gradients a cosine is measured against."""

    def __init__(self, k: int):
        self.recent: deque[torch.Tensor] = deque(maxlen=k)

    def measure(self, deltas: list[torch.Tensor]) -> list[tuple[float, float]]:
        """(||g||, cos(g, mean direction)) of each pseudo-gradient synced together, in order."""
        import torch

        for delta in deltas:
            self.recent.append(delta.detach().clone())
        mean = torch.stack(list(self.recent)).mean(dim=0)
        out = []
        for delta in deltas:
            norm = float(delta.norm())
            denominator = norm * float(mean.norm())
            out.append((norm, float(delta.flatten() @ mean.flatten()) / denominator if denominator > 0 else float("nan")))
        return out

    def columns(self, deltas: list[torch.Tensor], before: torch.Tensor, after: torch.Tensor) -> list[dict[str, float]]:
        """The diagnostic columns of pseudo-gradients synced together by one outer step from ``before`` to ``after``."""
        moved = step_norm(before, after)
        return [{"delta_norm": norm, "cosine": cos, "update_norm": moved} for norm, cos in self.measure(deltas)]


def step_norm(before: torch.Tensor, after: torch.Tensor) -> float:
    """||after - before||: how far one outer step moved the model."""
    return float((after - before).norm())
