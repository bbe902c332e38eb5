"""Payloads the simulator drives, all behind :class:`trainers.base.Trainer`.

Built-in trainers are named by import path and imported only when a
scenario uses them, so the simulator never imports model code directly.
A user's trainer is named the same way: ``trainer: {name: mypkg.mod:MyTrainer}``.
"""

BUILTIN_TRAINERS: dict[str, str] = {
    "toy": "trainers.toy:ToyTrainer",
    "lm": "trainers.lm:LMTrainer",
    "null": "trainers.null:NullTrainer",
}
