"""What every attack-like run needs: the model, the data, the threat, the run's folder and its batches.

:class:`RunConfig` holds the fields that ``attack`` and ``certify`` share (the command
line's model, data, threat and run options); each job's config adds its own. All fields
are keyword-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from shiftattack.defaults import CHUNK_SIZE

__all__ = ["RunConfig"]


@dataclass(kw_only=True)
class RunConfig:
    """Model, data, threat and run options shared by the ``attack`` and ``certify`` jobs.

    Attributes:
        model: a ``--model`` spec; weights, pretrained, antialias, trust_pickle, mean, std: how to
            load it (:func:`~shiftattack.models.load_model`).
        data: a ``--data`` spec; limit, resize, strict: how to read it.
        shifts: a ``--shifts`` spec; mode: the border mode; fill: the vacated value (zero mode).
        crop_size: (h, w) windows in crop mode; canvas_pad, canvas_pad_mode: the canvas (px).
        out: the output folder; overwrite, resume: what to do with an existing one.
        batch_size: (image, shift) pairs per forward pass; chunk_size: images per stored unit.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; seed: seed of random draws.
        precision: ``fp32``, ``bf16`` or ``fp16``: the model runs under ``torch.autocast`` with that
            dtype and every reported figure is about the model at that precision
            (:mod:`~shiftattack.runtime.precision`).
    """

    model: str
    data: str
    shifts: str
    mode: str
    out: str
    weights: str | None = None
    pretrained: bool = False
    antialias: int | None = None
    random_weights: bool = False
    trust_pickle: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    limit: int | None = None
    resize: int | None = None
    strict: bool = False
    fill: float = 0.0
    crop_size: tuple[int, int] | None = None
    canvas_pad: int = 0
    canvas_pad_mode: str = "zero"
    batch_size: int = 256
    chunk_size: int = CHUNK_SIZE
    device: str = "auto"
    seed: int = 0
    precision: str = "fp32"
    overwrite: bool = False
    resume: bool = False
