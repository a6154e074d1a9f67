"""The ``train`` job's configuration, apart from the job so that the command line can read its
defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """What ``shiftattack train`` runs; defaults suit ``cifar_convnet`` on two CPU cores."""

    model: str
    data: str
    out: str
    weights: str | None = None
    pretrained: bool = False
    antialias: int | None = None
    trust_pickle: bool = False
    epochs: int = 15
    test_data: str | None = None
    limit: int | None = None
    test_limit: int | None = None
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"
    warmup: float = 0.25
    augment_pad: int = 4
    precision: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
