"""ImageNet-P videos: MP4 (H.264) files read and written through PyAV.

Layout (``../shared/reference/METRICS.md`` "ImageNet-P", ``CORRUPTIONS.md``
section 6): ``root/<perturbation>[_<difficulty>]/<wnid>/<image>.mp4``, one
video per validation image, T frames of 224x224 (31 frames; 41 for
translate). Only the noise perturbations (names containing ``"noise"``) have
the ``_2`` / ``_3`` folders of harder levels; for the others the difficulty
``d`` is a frame stride of the metric (compare frames ``d`` apart) over the
one plain folder.

The published videos were made by ffmpeg 4.0.2 from PNG frames: input rate
1 fps, libx264, ``-preset veryslow``, ``-crf 20``; the noise perturbations
used ``-tune grain`` and no CRF (x264's default, 23). :func:`write_video`
encodes the same way with ``pix_fmt="yuv420p"`` by default (even sizes only).
The published command set no pixel format, and ffmpeg given RGB PNGs most
likely chose ``yuv444p`` (section 7 lists it as not verified); pass
``pix_fmt="yuv444p"`` for that. Decoding converts every frame to RGB24 with
FFmpeg's swscale, as the published ``cv2.VideoCapture`` loader does (its BGR
frames flipped to RGB); the two agree exactly on the videos we tested.

PyAV (``av``) is an optional dependency: ``pip install "shiftattack[video]"``.

Examples:
    >>> videos = ImageNetPVideos("ImageNet-P", "gaussian_noise", 2, limit=1000)  # doctest: +SKIP
    >>> videos[0].shape, int(videos.labels[0])  # doctest: +SKIP
    (torch.Size([31, 3, 224, 224]), 0)
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from shiftattack.data.corrupted import _check_name, _uint8_array, _write_file
from shiftattack.data.dataset import _check_limit, select_indices
from shiftattack.data.folder import _list_dir
from shiftattack.errors import DataError, SpecError

__all__ = ["VIDEO_EXTENSION", "read_video", "write_video", "ImageNetPVideos"]

#: Extension (lower case) of the ImageNet-P video files.
VIDEO_EXTENSION = ".mp4"
_LAYOUT = "the ImageNet-P layout: root/<perturbation>[_<difficulty>]/<wnid>/<image>.mp4"
# x264's named presets and tunings (x264 --fullhelp).
_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_TUNES = ("film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency")
_PIX_FMTS = ("yuv420p", "yuv444p")


def _av() -> Any:
    """Import PyAV, or fail naming the extra that installs it."""
    try:
        import av
    except ImportError as exc:
        raise DataError(
            "ImageNet-P videos need PyAV (av), which is not installed; "
            'install it with: pip install "shiftattack[video]"'
        ) from exc
    return av


def read_video(path: str | os.PathLike[str]) -> Tensor:
    """Decode every frame of a video file to RGB.

    Args:
        path: an MP4 (or any container and codec FFmpeg decodes).

    Returns:
        uint8 ``(T, 3, H, W)``, frames in presentation order, RGB24 as
        converted by FFmpeg's swscale (BT.601, as ``cv2.VideoCapture``).

    Raises:
        DataError: PyAV is missing (naming the extra), the file is missing,
            cannot be decoded, has no video stream or no frames.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no video file {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path} has no video stream")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    except DataError:
        raise
    except Exception as exc:  # av.FFmpegError (InvalidDataError, ...), OSError
        raise DataError(f"cannot decode video {path}: {type(exc).__name__}: {exc}") from exc
    if not frames:
        raise DataError(f"{path} holds no video frames")
    return torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2)))


def _check_encoding(crf: float | None, tune: str | None, preset: str, pix_fmt: str) -> None:
    if crf is not None and (isinstance(crf, bool) or not isinstance(crf, (int, float)) or not 0 <= crf <= 51):
        raise SpecError(f"crf must be a number from 0 to 51 (or None for x264's default, 23), got {crf!r}")
    if tune is not None and tune not in _TUNES:
        raise SpecError(f"tune must be None or one of {', '.join(_TUNES)}, got {tune!r}")
    if preset not in _PRESETS:
        raise SpecError(f"preset must be one of {', '.join(_PRESETS)}, got {preset!r}")
    if pix_fmt not in _PIX_FMTS:
        raise SpecError(f"pix_fmt must be one of {', '.join(_PIX_FMTS)}, got {pix_fmt!r}")


def write_video(
    path: str | os.PathLike[str],
    frames: Tensor | np.ndarray,
    *,
    crf: float | None = 20,
    tune: str | None = None,
    preset: str = "veryslow",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode frames as an H.264 MP4 at 1 frame per second, atomically (CORRUPTIONS.md section 6).

    The published settings: ``crf=20`` for most perturbations;
    ``crf=None, tune="grain"`` for the noise ones (x264's default CRF, 23).
    RGB is converted to YUV by FFmpeg's swscale (BT.601, limited range), so
    the round trip is lossy even at ``crf=0``: a few 8-bit levels, more at
    sharp colour edges with ``yuv420p`` (chroma at half resolution).

    Args:
        path: the output file (missing parent folders are created); the container is MP4
            whatever its extension.
        frames: uint8 ``(T, 3, H, W)`` RGB, ``T >= 1``.
        crf: x264 constant rate factor, 0..51; ``None`` leaves x264's default.
        tune: an x264 tuning (``"grain"``, ...) or ``None``.
        preset: an x264 preset.
        pix_fmt: ``"yuv420p"`` (needs even ``H`` and ``W``) or ``"yuv444p"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        SpecError: bad ``crf``, ``tune``, ``preset`` or ``pix_fmt``, or odd
            sizes with ``yuv420p``.
        ShapeError: ``frames`` is not uint8 ``(T, 3, H, W)``.
        DataError: PyAV is missing (naming the extra) or the encoder fails.
    """
    _check_encoding(crf, tune, preset, pix_fmt)
    arr = _uint8_array(frames, ("T", 3, "H", "W"), "frames")
    h, w = arr.shape[2:]
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise SpecError(
            f"yuv420p needs even frame sizes, got {w}x{h} (WxH); pad or crop the frames, "
            f"or pass pix_fmt='yuv444p'"
        )
    av = _av()
    options = {"preset": preset}
    if crf is not None:
        options["crf"] = str(crf)
    if tune is not None:
        options["tune"] = tune
    rgb = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))

    def encode(fh: BinaryIO) -> None:
        with av.open(fh, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=1, options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            for t, image in enumerate(rgb):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = t, Fraction(1, 1)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush the encoder's delayed frames

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_file(path, encode)
    except av.FFmpegError as exc:
        raise DataError(f"cannot encode video {path}: {type(exc).__name__}: {exc}") from exc
    return path


class ImageNetPVideos:
    """The videos of one ImageNet-P perturbation and difficulty, read one at a time.

    Lists ``root/<name>/<wnid>/*.mp4``, or ``root/<name>_<difficulty>/...``
    when ``difficulty > 1`` and ``name`` contains ``"noise"`` (only the noise
    perturbations have harder folders; for the others ``difficulty`` is the
    metric's frame stride and is only stored). Classes are the sorted wnid
    folder names, as torchvision's ``ImageFolder``; videos are in sorted
    name order within a class, class by class.

    Attributes:
        root: the perturbation folder listed.
        name, difficulty: as given.
        classes: wnids in label order.
        paths: the video files kept (after ``limit``), in dataset order.
        labels: int64 ``(n,)``, the class index of each kept video.
        indices: int64 ``(n,)``, each kept video's position in the full listing.

    ``videos[i]`` decodes video ``i``: uint8 ``(T, 3, H, W)``.

    Raises:
        SpecError: bad ``name``, ``difficulty`` or ``limit``.
        DataError: PyAV is missing (naming ``pip install "shiftattack[video]"``),
            the folder is missing (naming it, the expected layout and what
            ``root`` holds), it has no class folders or no videos, or a class
            folder holds a file that is not ``.mp4``.
    """

    def __init__(
        self, root: str | os.PathLike[str], name: str, difficulty: int = 1, *, limit: int | None = None
    ) -> None:
        _av()
        self.name = _check_name(name, "perturbation name")
        if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)) or difficulty < 1:
            raise SpecError(f"difficulty must be a positive integer, got {difficulty!r}")
        self.difficulty = int(difficulty)
        if limit is not None:
            limit = _check_limit(limit)
        root = Path(root)
        folder = root / (f"{name}_{difficulty}" if difficulty > 1 and "noise" in name else name)
        if not folder.is_dir():
            if root.is_dir():
                found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
                have = f"; {root} holds: {', '.join(found) or '(no folders)'}"
            else:
                have = f"; the folder {root} does not exist"
            raise DataError(f"no folder {folder}; expected {_LAYOUT}{have}")
        self.root = folder
        listing = _list_dir(folder)
        self.classes = sorted(listing.folders)
        if not self.classes:
            raise DataError(f"no class folders in {folder}; expected {_LAYOUT}")
        paths, labels = [], []
        for label, cls in enumerate(self.classes):
            for file in sorted(listing.folders[cls]):
                if not file.lower().endswith(VIDEO_EXTENSION):
                    raise DataError(f"not an .mp4 video: {folder / cls / file}; expected {_LAYOUT}")
                paths.append(folder / cls / file)
                labels.append(label)
        if not paths:
            raise DataError(f"no .mp4 videos in the {len(self.classes)} class folders of {folder}")
        chosen = select_indices(np.asarray(labels, dtype=np.int64), limit)
        self.paths = [paths[i] for i in chosen]
        self.labels = torch.tensor([labels[i] for i in chosen], dtype=torch.int64)
        self.indices = torch.from_numpy(chosen)

    def __len__(self) -> int:
        """Number of videos ``n`` (after ``limit``)."""
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        """Decode video ``i``: uint8 ``(T, 3, H, W)`` (see :func:`read_video`)."""
        return read_video(self.paths[i])
