"""The ``corrupt`` command: write a suite in its published file format, for other tools to read.

* cifar10-c: ``<corruption>.npy`` uint8 (5N, H, W, 3), severity-major, and ``labels.npy``;
* imagenet-c: ``<corruption>/<severity>/<class>/<name>.JPEG``, JPEG quality 85;
* cifar10-p: ``<perturbation>.npy`` uint8 (N, T, H, W, 3);
* imagenet-p: ``<perturbation>[_<difficulty>]/<class>/<name>.mp4`` (libx264, needs the video extra).

Pixels are those :mod:`.generate` gives the benchmark for the same seed. Each file is
written atomically; a corruption or perturbation whose file exists is skipped with
``--resume``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shiftattack._progress import tqdm
from shiftattack.data import LabeledImages
from shiftattack.data.corrupted import imagenet_c_names, write_cifar10_c, write_cifar10_p, write_imagenet_c
from shiftattack.jobs.benchmark.generate import corrupted_chunks, sequence_chunks
from shiftattack.jobs.benchmark.sources import Suite

__all__ = ["write_suite"]


def _c_done(root: Path, suite: Suite, name: str, severities: list[int]) -> bool:
    if suite.name == "cifar10-c":
        return (root / f"{name}.npy").exists()
    return all((root / name / str(s)).is_dir() for s in severities)


def write_suite(
    root: Path,
    suite: Suite,
    names: list[str],
    clean: LabeledImages,
    *,
    severities: list[int],
    difficulty: int,
    seed: int,
    device: torch.device,
    resume: bool,
    progress: bool,
    frames: dict[str, int] | None = None,
) -> list[str]:
    """Generate and write every name of ``suite``; return the names written (skipped ones excluded)."""
    written = []
    n = len(clean)
    todo = [nm for nm in names if not (resume and _exists(root, suite, nm, severities, difficulty))]
    per = len(severities) if suite.kind == "c" else 1
    bar = tqdm(total=len(todo) * per * n, unit="img", disable=not progress, desc=f"corrupt {suite.name}")
    for name in todo:
        bar.set_postfix_str(name)
        if suite.kind == "c":
            _write_c(root, suite, name, clean, severities, seed, device, bar)
        else:
            _write_p(root, suite, name, clean, difficulty, seed, device, bar, (frames or {}).get(name, 31))
        written.append(name)
    bar.close()
    return written


def _exists(root: Path, suite: Suite, name: str, severities: list[int], difficulty: int) -> bool:
    if suite.kind == "c":
        return _c_done(root, suite, name, severities)
    if suite.name == "cifar10-p":
        return (root / f"{name}.npy").exists()
    folder = f"{name}_{difficulty}" if difficulty > 1 and "noise" in name else name
    return (root / folder).is_dir()


def _write_c(root, suite, name, clean, severities, seed, device, bar) -> None:
    blocks = []
    for s in severities:
        chunks = []
        for start, x in corrupted_chunks(
            clean.images, name, s, params=suite.params, seed=seed, device=device, crop=suite.crop
        ):
            if suite.name == "imagenet-c":
                idx = clean.indices[start : start + x.shape[0]]
                write_imagenet_c(
                    root,
                    name,
                    s,
                    x,
                    clean.labels[start : start + x.shape[0]],
                    clean.classes or [str(c) for c in range(int(clean.labels.max()) + 1)],
                    imagenet_c_names(idx.tolist()),
                )
            else:
                chunks.append(x)
            bar.update(x.shape[0])
        if chunks:
            blocks.append(torch.cat(chunks))
    if suite.name == "cifar10-c":
        write_cifar10_c(root, name, torch.stack(blocks), clean.labels)


def _write_p(root, suite, name, clean, difficulty, seed, device, bar, frames) -> None:
    chunks = []
    for start, seq in sequence_chunks(
        clean.images,
        name,
        params=suite.params,
        difficulty=difficulty,
        seed=seed,
        device=device,
        crop=suite.crop,
        frames=frames,
    ):
        if suite.name == "imagenet-p":
            from shiftattack.data.video import write_video

            folder = f"{name}_{difficulty}" if difficulty > 1 and "noise" in name else name
            classes = clean.classes or [str(c) for c in range(int(clean.labels.max()) + 1)]
            names = imagenet_c_names(clean.indices[start : start + seq.shape[0]].tolist())
            for i, video in enumerate(seq):
                label = int(clean.labels[start + i])
                stem = Path(names[i]).stem
                tune = "grain" if "noise" in name else None
                write_video(
                    root / folder / classes[label] / f"{stem}.mp4", video, crf=None if tune else 20, tune=tune
                )
        else:
            chunks.append(seq)
        bar.update(seq.shape[0])
    if suite.name == "cifar10-p":
        write_cifar10_p(root, name, torch.cat(chunks))


def corrupt_suite(
    *,
    suite: str,
    data: str,
    out: str,
    names: list[str],
    severities: list[int],
    difficulty: int,
    limit: int | None,
    resize: int | None,
    seed: int,
    device: str,
    overwrite: bool,
    resume: bool,
    progress: bool,
    strict: bool = False,
) -> list[str]:
    """Load ``data``, generate ``suite`` and write it under ``out``; return the names written."""
    from shiftattack.corruptions import check_available, list_corruptions
    from shiftattack.corruptions.perturbations import list_perturbations, n_frames
    from shiftattack.data import load_dataset
    from shiftattack.errors import SpecError
    from shiftattack.jobs.benchmark.run import _select, _suite
    from shiftattack.runtime.engine import resolve_device
    from shiftattack.runtime.results import check_output_dir, open_output_dir

    s = _suite(suite)
    if s.kind == "c":
        chosen = _select(names, list_corruptions(), "corruption")
        check_available(chosen)  # frost's photographs: before any file is written
        if not severities or any(v not in (1, 2, 3, 4, 5) for v in severities):
            raise SpecError(f"severities must be among 1..5, got {severities}")
        if s.name == "cifar10-c" and sorted(set(severities)) != [1, 2, 3, 4, 5]:
            raise SpecError(
                "CIFAR-10-C files hold all 5 severities (severity-major blocks); drop --severities"
            )
    else:
        chosen = _select(names, list_perturbations(), "perturbation")
    if not resume:
        check_output_dir(out, overwrite)
    dev = resolve_device(device)
    clean = load_dataset(data, limit=limit, progress=progress, resize=resize or s.resize, strict=strict)
    if len(clean) == 0:
        raise SpecError(f"{data} holds no images")
    root = open_output_dir(out, overwrite=True)
    frames = {n: n_frames(n, s.params) for n in chosen} if s.kind == "p" else None
    return write_suite(
        root,
        s,
        chosen,
        clean,
        severities=sorted(set(severities)),
        difficulty=difficulty,
        seed=seed,
        device=dev,
        resume=resume,
        progress=progress,
        frames=frames,
    )
