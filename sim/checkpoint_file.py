"""A checkpoint on disk: one file that proves itself before a run continues from it.

A resumed run must end with the same bytes as an uninterrupted one, so
continuing from a damaged file is worse than starting afresh: it finishes
quietly with another run's numbers under this run's name. The file is

    asyncsim-checkpoint\\n
    {"format": 2, "scenario_digest": ..., "bytes": N, "sha256": ...}\\n
    N bytes of ``torch.save(state)``

so a reader can tell, before it unpickles anything, a checkpoint that is
damaged (checksum), truncated (fewer bytes than recorded), foreign (not an
asyncsim checkpoint), another scenario's (digest) or written in an older or
newer format, and say which in one line. The payload is still loaded with
``weights_only=True``: a checkpoint never runs code.

Writes are atomic (a temporary sibling, then ``os.replace``) and the
temporary file is removed on any failure, a full disk included.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sim.errors import UserError
from sim.outputs import writing

MAGIC = b"asyncsim-checkpoint\n"
#: 1: a bare ``torch.save`` file, before checkpoints carried a header; 2: header + checksum
FORMAT = 2

#: what a run does with a checkpoint it cannot trust: stop in one line, or set it aside and start afresh
BadCheckpoint = Literal["stop", "restart"]


class CheckpointRefused(UserError):
    """A checkpoint that is not safe to continue from; ``reason`` says which kind (damaged, truncated, ...)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(path, reason)  # both in args: survives a process pool's pickling
        self.path, self.reason = Path(path), reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (its ``scenario_digest`` goes into the header) atomically to ``path``."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {"format": FORMAT, "scenario_digest": state["scenario_digest"], "bytes": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()}
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
                fh.write(payload)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: Path, scenario_digest: str) -> dict[str, Any]:
    """The state saved at ``path`` for the scenario ``scenario_digest``; :class:`CheckpointRefused` says why not."""
    import torch

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointRefused(path, f"unreadable checkpoint ({exc.strerror or exc})") from None
    payload = _payload(path, data, scenario_digest)
    try:  # plain data only: a checkpoint never unpickles (and so never runs) code
        return torch.load(io.BytesIO(payload), weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointRefused(path, f"refused to load a checkpoint that holds more than tensors and plain data "
                                      f"({_clip(first)})") from None
    except (RuntimeError, ValueError, EOFError) as exc:  # its checksum held, so it was written this way
        raise CheckpointRefused(path, f"unreadable checkpoint ({type(exc).__name__}: {_clip(str(exc))})") from None


def _payload(path: Path, data: bytes, scenario_digest: str) -> bytes:
    """The checked ``torch.save`` bytes of a checkpoint file's contents."""
    if not data.startswith(MAGIC):
        if data.startswith(b"PK\x03\x04"):  # a zip archive: torch.save's own format, as format 1 wrote it
            raise CheckpointRefused(path, "older checkpoint (format 1, written before checkpoints carried a "
                                          "checksum): it cannot be verified")
        if MAGIC.startswith(data):
            raise CheckpointRefused(path, f"truncated checkpoint (only {len(data)} bytes)")
        raise CheckpointRefused(path, "foreign file: not an asyncsim checkpoint")
    line, newline, payload = data[len(MAGIC):].partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or not {"format", "scenario_digest", "bytes", "sha256"} <= set(header):
        what = "truncated" if not newline else "damaged"
        raise CheckpointRefused(path, f"{what} checkpoint (its header is unreadable)")
    if header["format"] != FORMAT:
        age = "older" if isinstance(header["format"], int) and header["format"] < FORMAT else "newer"
        raise CheckpointRefused(path, f"{age} checkpoint (format {header['format']}, this asyncsim reads "
                                      f"format {FORMAT})")
    if header["scenario_digest"] != scenario_digest:
        raise CheckpointRefused(path, f"another scenario's checkpoint (digest {str(header['scenario_digest'])[:12]}, "
                                      f"this run's is {scenario_digest[:12]})")
    if len(payload) < header["bytes"]:
        raise CheckpointRefused(path, f"truncated checkpoint ({len(payload)} of {header['bytes']} bytes)")
    if len(payload) > header["bytes"] or hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointRefused(path, "damaged checkpoint (its checksum does not match its contents)")
    return payload


def _clip(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters, cut at a word with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


@dataclass
class Checkpointing:
    """Where and how often a run saves its state, whether to continue from it, and what to do if it is bad."""

    path: Path
    every: int = 0  # server updates between checkpoints; 0: only when stopped by a signal
    resume: bool = False
    if_bad: BadCheckpoint = "stop"

    def save(self, state: dict[str, Any]) -> None:
        write_checkpoint(self.path, state)

    def load(self, scenario_digest: str, say: Any = None) -> dict[str, Any] | None:
        """The saved state to resume from, or None (not resuming, nothing saved, or a bad file set aside).

        A checkpoint that fails :func:`read_checkpoint` stops the run in one
        line (``if_bad="stop"``, the file untouched), or is renamed
        ``checkpoint.pt.damaged`` and the run starts afresh (``"restart"``).
        """
        if not (self.resume and self.path.exists()):
            return None
        try:
            return read_checkpoint(self.path, scenario_digest)
        except CheckpointRefused as exc:
            if self.if_bad == "stop":
                raise UserError(f"{exc}; not resumed and nothing changed: remove it, or pass "
                                "--bad-checkpoint restart to start afresh") from None
            aside = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, aside)
            if say is not None:
                say(f"{exc}; kept it as {aside.name} and starting the run afresh")
            return None
