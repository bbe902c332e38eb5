"""One set of CPU kernels on every x86 machine, so a run's bits do not depend on which CPU computed it.

torch picks its CPU kernels by what the processor offers: ATen's vectorised
loops (AVX2 or AVX-512), MKL's matrix products and oneDNN's primitives each
dispatch on the instruction set, and each path rounds differently. Two
machines with the same torch can then end the same scenario with other bits;
it happened to this project: the micro LM's headline runs, made on another
machine, pretrained to perplexity 23.1774, and the same scenario here to
23.1948 (reports/paper_lm_micro, README "Reproducible bit for bit").

Before torch loads, :func:`pin_cpu_kernels` asks all three for their AVX2
paths (``ATEN_CPU_CAPABILITY``, MKL's conditional numerical reproducibility
``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``), which every x86 machine since 2013 has.
On an AVX2 machine this changes nothing (the shipped toy and LM run hashes
are the same with and without it); on an AVX-512 machine it gives up some
speed for the AVX2 machine's bits. A value already set in the environment
is kept, so ``ATEN_CPU_CAPABILITY=avx512`` (say) takes the faster path on
purpose. The capability a run used is recorded in its summary
(``versions.cpu``, :func:`cpu_capability`). Other architectures (ARM) are
left alone.
"""
from __future__ import annotations

import os
import platform

#: the environment that pins each library to its AVX2 kernels (x86 only)
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_kernels() -> None:
    """Ask torch's CPU libraries for their AVX2 paths unless the environment already chose (call before torch loads)."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        for key, value in AVX2_KERNELS.items():
            os.environ.setdefault(key, value)


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use in this process (``AVX2``, ``AVX512``, ``DEFAULT``...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())
