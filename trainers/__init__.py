"""Payloads the simulator drives, all behind :class:`trainers.base.Trainer`.

Built-in trainers are named by import path and imported only when a
scenario uses them, so the simulator never imports model code directly.
A user's trainer is named the same way: ``trainer: {name: mypkg.mod:MyTrainer}``.
"""
from trainers.kernels import pin_cpu_kernels

pin_cpu_kernels()  # before torch loads anywhere below: one set of CPU kernels on every x86 machine

BUILTIN_TRAINERS: dict[str, str] = {
    "toy": "trainers.toy:ToyTrainer",
    "lm": "trainers.lm:LMTrainer",
    "null": "trainers.null:NullTrainer",
}
