"""Tests of shiftattack.data.corrupted and shiftattack.data.video: the published C / P file formats.

Miniature datasets are written in tmp_path, by our writers and, independently,
the way the published generators write them (``np.save`` of the stacked
array, Pillow's JPEG encoder at quality 85, ffmpeg/x264 through PyAV), and read
back; the OpenCV decoders (``cv2.imread``, ``cv2.VideoCapture``, the published
ImageNet-P loader's reader) are the independent references for decoding.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shiftattack.data import LabeledImages, balanced_subset
from shiftattack.data.corrupted import (
    CifarPSequences,
    cifar10_p_length,
    imagenet_c_names,
    load_cifar10_c,
    load_cifar10_p,
    load_imagenet_c,
    to_uint8,
    write_cifar10_c,
    write_cifar10_p,
    write_imagenet_c,
)
from shiftattack.errors import DataError, ShapeError, SpecError


def _pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients, uint8 (n, 3, h, w): JPEG and H.264 keep them within a few levels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(40, 200, 3), rng.uniform(-60, 60, 3), rng.uniform(-60, 60, 3)
        out.append(a[:, None, None] + b[:, None, None] * xx + c[:, None, None] * yy)
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def _labels(n: int, classes: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n).astype(np.int64)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- to_uint8


def test_to_uint8_truncates_as_published() -> None:
    x = torch.tensor([0.999 / 255, 1.0, 254.9 / 255, 0.0, -0.5, 1.5, 128.0 / 255, 127.999 / 255])
    got = to_uint8(x.expand(3, 2, 8))[0, 0].tolist()
    assert got == [0, 255, 254, 0, 0, 255, 128, 127]
    # the published statement, np.uint8(clip(x) * 255) in float64, on random values, any leading dims
    r = torch.rand(2, 5, 3, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    ref = np.uint8(np.clip(r.numpy(), 0, 1) * 255)
    assert to_uint8(r).dtype == torch.uint8 and np.array_equal(to_uint8(r).numpy(), ref)
    # float32 images made from uint8 come back exactly
    u = torch.arange(256, dtype=torch.uint8).expand(3, 1, 256)
    assert torch.equal(to_uint8(u.float() / 255), u)


def test_to_uint8_rejects_bad_input() -> None:
    with pytest.raises(ShapeError, match="float"):
        to_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ShapeError, match=r"\(\.\.\., 3, H, W\)"):
        to_uint8(torch.zeros(1, 4, 2, 2))
    with pytest.raises(DataError, match="NaN"):
        to_uint8(torch.full((3, 2, 2), float("nan")))


# ---------------------------------------------------------------- CIFAR-10-C


def _published_cifar10_c(root: Path, name: str, blocks: np.ndarray, labels: np.ndarray) -> None:
    """Write like make_cifar_c.py: np.save of the severity blocks stacked, labels tiled 5 times, uint8."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{name}.npy", np.concatenate(list(blocks)).astype(np.uint8))  # (5N, H, W, 3)
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))


def test_cifar10_c_write_matches_published_layout_and_round_trips(tmp_path: Path) -> None:
    n, h, w = 12, 6, 7  # any N and size, not only 10000 x 32 x 32
    blocks = _pixels((5, n, h, w, 3))  # published HWC, per severity
    labels = _labels(n)
    ours = write_cifar10_c(
        tmp_path / "ours", "fog", torch.from_numpy(blocks.transpose(0, 1, 4, 2, 3)), labels
    )
    _published_cifar10_c(tmp_path / "ref", "fog", blocks, labels)
    assert ours == tmp_path / "ours" / "fog.npy"
    for f in ("fog.npy", "labels.npy"):  # byte-identical to np.save of the published arrays
        assert (tmp_path / "ours" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes()
    arr = np.load(ours)
    assert arr.dtype == np.uint8 and arr.shape == (5 * n, h, w, 3)
    assert np.load(tmp_path / "ours" / "labels.npy").dtype == np.uint8
    for s in range(1, 6):
        ds = load_cifar10_c(tmp_path / "ref", "fog", s)
        assert isinstance(ds, LabeledImages) and ds.classes is None
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 3, h, w)
        assert np.array_equal(ds.images.numpy(), blocks[s - 1].transpose(0, 3, 1, 2))
        assert ds.labels.tolist() == labels.tolist() and ds.indices.tolist() == list(range(n))
        assert ds.source == f"{tmp_path / 'ref' / 'fog.npy'}:severity={s}"
    assert stat.S_IMODE(os.stat(ours).st_mode) == 0o644 and _no_temp_files(tmp_path)


def test_cifar10_c_limit_picks_the_same_images_for_every_corruption_and_severity(tmp_path: Path) -> None:
    n = 30
    labels = _labels(n, classes=4)
    for name, seed in (("snow", 0), ("contrast", 1)):
        write_cifar10_c(tmp_path, name, torch.from_numpy(_pixels((5, n, 3, 4, 4), seed)), labels)
    want = balanced_subset(labels, 9)
    for name, seed in (("snow", 0), ("contrast", 1)):
        full = _pixels((5, n, 3, 4, 4), seed)
        for s in range(1, 6):
            ds = load_cifar10_c(tmp_path, name, s, limit=9)
            assert ds.indices.tolist() == want.tolist()
            assert ds.labels.tolist() == labels[want].tolist()
            assert np.array_equal(ds.images.numpy(), full[s - 1][want])


def test_cifar10_c_reads_through_a_memory_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10_c(tmp_path, "fog", torch.from_numpy(_pixels((5, 4, 3, 2, 2))), _labels(4))
    seen = []
    real = np.load

    def spy(path, *args, **kwargs):
        seen.append((Path(path).name, kwargs.get("mmap_mode"), kwargs.get("allow_pickle")))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    load_cifar10_c(tmp_path, "fog", 2, limit=2)
    assert ("fog.npy", "r", False) in seen and all(m == "r" and not p for _, m, p in seen)


def test_cifar10_c_labels_file_must_agree(tmp_path: Path) -> None:
    images = torch.from_numpy(_pixels((5, 6, 3, 2, 2)))
    labels = _labels(6)
    write_cifar10_c(tmp_path, "fog", images, labels)
    write_cifar10_c(tmp_path, "frost", images, torch.from_numpy(labels))  # same labels: fine
    other = labels.copy()
    other[0] = (other[0] + 1) % 3
    with pytest.raises(DataError, match="labels.npy exists with different labels"):
        write_cifar10_c(tmp_path, "snow", images, other)
    assert not (tmp_path / "snow.npy").exists()
    with pytest.raises(SpecError, match="0..255"):
        write_cifar10_c(tmp_path / "b", "fog", images, labels + 300)
    with pytest.raises(ShapeError, match=r"\(5, N, 3, H, W\)"):
        write_cifar10_c(tmp_path / "b", "fog", images[:4], labels)
    with pytest.raises(ShapeError, match="uint8"):
        write_cifar10_c(tmp_path / "b", "fog", images.float(), labels)
    with pytest.raises(SpecError, match="label file"):
        write_cifar10_c(tmp_path / "b", "labels", images, labels)


def test_cifar10_c_malformed_files(tmp_path: Path) -> None:
    write_cifar10_c(tmp_path, "fog", torch.from_numpy(_pixels((5, 8, 3, 4, 4))), _labels(8))
    with pytest.raises(DataError, match=r"no file .*snow\.npy.*CIFAR-10-C layout.*holds: fog"):
        load_cifar10_c(tmp_path, "snow", 1)
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10_c(tmp_path / "missing", "fog", 1)
    data = (tmp_path / "fog.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 10])  # truncated
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_cifar10_c(tmp_path, "cut", 1)
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(DataError, match="cannot read"):
        load_cifar10_c(tmp_path, "junk", 1)
    np.save(tmp_path / "flt.npy", np.zeros((40, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match="dtype float32"):
        load_cifar10_c(tmp_path, "flt", 1)
    np.save(tmp_path / "chw.npy", np.zeros((40, 3, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"shape \(40, 3, 4, 4\)"):
        load_cifar10_c(tmp_path, "chw", 1)
    np.save(tmp_path / "rows.npy", np.zeros((41, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="not a multiple of 5"):
        load_cifar10_c(tmp_path, "rows", 1)
    np.save(tmp_path / "long.npy", np.zeros((45, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="45 rows"):
        load_cifar10_c(tmp_path, "long", 1)
    labels = np.load(tmp_path / "labels.npy")
    labels[-1] = (labels[-1] + 1) % 3
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(DataError, match="severity 5 differ"):
        load_cifar10_c(tmp_path, "fog", 1)
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(DataError, match=r"no file .*labels\.npy"):
        load_cifar10_c(tmp_path, "fog", 1)
    for bad in (0, 6, 2.0, True):
        with pytest.raises(SpecError, match="severity"):
            load_cifar10_c(tmp_path, "fog", bad)
    with pytest.raises(SpecError, match="plain name"):
        load_cifar10_c(tmp_path, "../fog", 1)


# ---------------------------------------------------------------- CIFAR-10-P


def test_cifar10_p_round_trip_and_subsets(tmp_path: Path) -> None:
    seqs = _pixels((7, 4, 5, 6, 3))  # published (N, T, H, W, 3)
    np.save(tmp_path / "ref.npy", seqs)  # as make_cifar_p.py writes
    path = write_cifar10_p(tmp_path, "ours", torch.from_numpy(seqs.transpose(0, 1, 4, 2, 3)))
    assert path.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert cifar10_p_length(tmp_path, "ref") == 7
    full = load_cifar10_p(tmp_path, "ref")
    assert full.dtype == torch.uint8 and full.shape == (7, 4, 3, 5, 6)
    assert np.array_equal(full.numpy(), seqs.transpose(0, 1, 4, 2, 3))
    assert torch.equal(load_cifar10_p(tmp_path, "ref", indices=[5, 1, 2]), full[[5, 1, 2]])
    assert torch.equal(load_cifar10_p(tmp_path, "ref", indices=torch.tensor([6])), full[[6]])
    assert torch.equal(load_cifar10_p(tmp_path, "ref", limit=3), full[:3])
    seq = CifarPSequences(tmp_path, "ours", indices=np.array([4, 0]))
    assert (
        len(seq) == 2 and seq.frames == 4 and torch.equal(seq[0], full[4]) and torch.equal(seq[-1], full[0])
    )


def test_cifar10_p_errors(tmp_path: Path) -> None:
    write_cifar10_p(tmp_path, "rotate", torch.from_numpy(_pixels((3, 2, 3, 4, 4))))
    with pytest.raises(DataError, match=r"no file .*scale\.npy.*CIFAR-10-P layout.*holds: rotate"):
        load_cifar10_p(tmp_path, "scale")
    with pytest.raises(SpecError, match="not both"):
        load_cifar10_p(tmp_path, "rotate", limit=1, indices=[0])
    with pytest.raises(SpecError, match=r"0\.\.2"):
        load_cifar10_p(tmp_path, "rotate", indices=[3])
    with pytest.raises(SpecError, match="integer"):
        load_cifar10_p(tmp_path, "rotate", indices=[0.5])
    np.save(tmp_path / "four.npy", np.zeros((3, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"CIFAR-10-P layout"):
        cifar10_p_length(tmp_path, "four")
    with pytest.raises(ShapeError, match=r"\(N, T, 3, H, W\)"):
        write_cifar10_p(tmp_path, "x", torch.zeros(3, 2, 4, 4, 3, dtype=torch.uint8))


# ---------------------------------------------------------------- ImageNet-C


def test_imagenet_c_jpeg_round_trip_and_layout(tmp_path: Path) -> None:
    n = 7
    images = _smooth(n, 24, 20)
    labels = np.array([2, 0, 1, 2, 0, 2, 1])
    wnids = ["n01440764", "n01443537", "n01484850"]
    names = imagenet_c_names(np.arange(n) + 100)
    assert names[0] == "00000100.JPEG"
    write_imagenet_c(tmp_path, "fog", 3, torch.from_numpy(images), torch.from_numpy(labels), wnids, names)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(f"fog/3/{wnids[y]}/{name}" for y, name in zip(labels, names, strict=True))
    for i in range(n):
        path = tmp_path / "fog" / "3" / wnids[labels[i]] / names[i]
        buf = io.BytesIO()  # the published encoder call: Pillow, quality 85, optimize=True
        Image.fromarray(images[i].transpose(1, 2, 0)).save(buf, format="JPEG", quality=85, optimize=True)
        assert path.read_bytes() == buf.getvalue()
    ds = load_imagenet_c(tmp_path, "fog", 3, progress=False)
    assert ds.classes == wnids and ds.source == str(tmp_path / "fog" / "3")
    order = np.lexsort((np.asarray(names), labels))  # ImageFolder order: class, then file name
    assert ds.labels.tolist() == labels[order].tolist()
    got = ds.images.numpy().astype(int)
    assert np.abs(got - images[order]).max() <= 6  # JPEG q85 on smooth gradients
    limited = load_imagenet_c(tmp_path, "fog", 3, limit=3, progress=False)
    assert limited.labels.tolist() == [0, 1, 2] and _no_temp_files(tmp_path)


def test_imagenet_c_decoding_matches_opencv(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    images = _pixels((3, 3, 16, 24), seed=5)
    write_imagenet_c(
        tmp_path, "snow", 5, torch.from_numpy(images), [1, 0, 1], ["a", "b"], imagenet_c_names([0, 1, 2])
    )
    ds = load_imagenet_c(tmp_path, "snow", 5, progress=False)
    for k, rel in enumerate(["a/00000001.JPEG", "b/00000000.JPEG", "b/00000002.JPEG"]):
        ref = cv2.imread(str(tmp_path / "snow" / "5" / rel))[..., ::-1].transpose(2, 0, 1)
        assert np.abs(ds.images[k].numpy().astype(int) - ref).max() <= 1


def test_imagenet_c_errors(tmp_path: Path) -> None:
    img = torch.from_numpy(_smooth(2, 8, 8))
    write_imagenet_c(tmp_path, "fog", 1, img, [0, 1], ["a", "b"], ["x.JPEG", "y.jpg"])
    with pytest.raises(DataError, match=r"no folder .*fog.2.*ImageNet-C layout.*holds: 1"):
        load_imagenet_c(tmp_path, "fog", 2)
    with pytest.raises(DataError, match=r"no folder .*snow.1.*holds: fog"):
        load_imagenet_c(tmp_path, "snow", 1)
    with pytest.raises(DataError, match="no folder"):
        load_imagenet_c(tmp_path / "nowhere", "fog", 1)
    with pytest.raises(SpecError, match="JPEG"):
        write_imagenet_c(tmp_path, "fog", 1, img, [0, 1], ["a", "b"], ["x.png", "y.jpg"])
    with pytest.raises(SpecError, match="twice"):
        write_imagenet_c(tmp_path, "fog", 1, img, [0, 0], ["a", "b"], ["x.JPEG", "x.JPEG"])
    with pytest.raises(SpecError, match="plain name"):
        write_imagenet_c(tmp_path, "fog", 1, img, [0, 1], ["a", "b"], ["x.JPEG", "../y.JPEG"])
    with pytest.raises(SpecError, match="index classes"):
        write_imagenet_c(tmp_path, "fog", 1, img, [0, 2], ["a", "b"], ["x.JPEG", "y.JPEG"])
    with pytest.raises(ShapeError, match="uint8"):
        write_imagenet_c(tmp_path, "fog", 1, img.float(), [0, 1], ["a", "b"], ["x.JPEG", "y.JPEG"])
    with pytest.raises(SpecError, match=">= 0"):
        imagenet_c_names([-1])


# ---------------------------------------------------------------- ImageNet-P video


def _frames(t: int = 5, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.from_numpy(_smooth(t, h, w, seed=3))


def test_video_round_trip_through_av(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    from shiftattack.data.video import read_video, write_video

    frames = _frames()
    path = write_video(tmp_path / "v.mp4", frames)
    assert _no_temp_files(tmp_path) and stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert write_video(tmp_path / "again.mp4", frames).read_bytes() == path.read_bytes()  # deterministic
    with av.open(str(path)) as container:  # libx264 at 1 fps, yuv420p, as section 6
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 1 and container.format.name.startswith("mov,mp4")
    back = read_video(path)
    assert back.dtype == torch.uint8 and back.shape == (5, 3, 32, 32)
    diff = (back.int() - frames.int()).abs()
    assert diff.max() <= 8 and diff.float().mean() < 2.5
    # the noise sequences' settings (no CRF, -tune grain) and 4:4:4
    grain = read_video(write_video(tmp_path / "g.mp4", frames, crf=None, tune="grain", pix_fmt="yuv444p"))
    assert (grain.int() - frames.int()).abs().max() <= 8


def test_read_video_matches_the_published_opencv_reader(tmp_path: Path) -> None:
    pytest.importorskip("av")
    cv2 = pytest.importorskip("cv2")
    from shiftattack.data.video import read_video, write_video

    path = write_video(tmp_path / "v.mp4", torch.from_numpy(_pixels((5, 3, 16, 24))), preset="medium")
    cap = cv2.VideoCapture(str(path))  # ImageNet-P/video_loader.py: read until exhausted, BGR -> RGB
    ref = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        ref.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not ref:
        pytest.skip("this OpenCV build cannot decode MP4")
    ours = read_video(path)
    assert ours.shape == (len(ref), 3, 16, 24)
    assert (ours.int() - torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2).int()).abs().max() <= 1


def test_write_video_errors_leave_nothing(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from shiftattack.data.video import read_video, write_video

    with pytest.raises(SpecError, match="even"):
        write_video(tmp_path / "odd.mp4", _frames(2, 31, 32))
    with pytest.raises(SpecError, match="preset"):
        write_video(tmp_path / "p.mp4", _frames(2), preset="glacial")
    with pytest.raises(SpecError, match="crf"):
        write_video(tmp_path / "c.mp4", _frames(2), crf=60)
    with pytest.raises(ShapeError, match=r"\(T, 3, H, W\)"):
        write_video(tmp_path / "s.mp4", _frames(2).permute(0, 2, 3, 1))
    assert not list(tmp_path.iterdir())
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="cannot decode"):
        read_video(tmp_path / "bad.mp4")
    with pytest.raises(DataError, match="no video file"):
        read_video(tmp_path / "none.mp4")


def test_imagenet_p_videos_listing(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from shiftattack.data.video import ImageNetPVideos, write_video

    clip = _frames(3, 16, 16)
    for folder in ("gaussian_noise", "gaussian_noise_2", "translate"):
        for wnid, files in (("n02", ["b", "a"]), ("n01", ["c"]), ("n03", ["d", "e"])):
            (tmp_path / folder / wnid).mkdir(parents=True)
            for f in files:
                write_video(tmp_path / folder / wnid / f"{f}.mp4", clip, preset="ultrafast")
    noise2 = ImageNetPVideos(tmp_path, "gaussian_noise", 2)
    assert noise2.root == tmp_path / "gaussian_noise_2" and noise2.classes == ["n01", "n02", "n03"]
    assert [p.relative_to(noise2.root).as_posix() for p in noise2.paths] == [
        "n01/c.mp4", "n02/a.mp4", "n02/b.mp4", "n03/d.mp4", "n03/e.mp4",
    ]  # fmt: skip
    assert noise2.labels.dtype == torch.int64 and noise2.labels.tolist() == [0, 1, 1, 2, 2]
    assert len(noise2) == 5 and noise2[0].shape == (3, 3, 16, 16) and noise2[0].dtype == torch.uint8
    assert ImageNetPVideos(tmp_path, "gaussian_noise").root == tmp_path / "gaussian_noise"
    translate = ImageNetPVideos(tmp_path, "translate", 3, limit=3)  # not noise: the plain folder
    assert translate.root == tmp_path / "translate" and translate.difficulty == 3
    assert translate.labels.tolist() == [0, 1, 2] and translate.indices.tolist() == [0, 1, 3]
    with pytest.raises(
        DataError, match=r"no folder .*gaussian_noise_3.*ImageNet-P layout.*holds: gaussian_noise"
    ):
        ImageNetPVideos(tmp_path, "gaussian_noise", 3)
    (tmp_path / "translate" / "n01" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"not an \.mp4"):
        ImageNetPVideos(tmp_path, "translate")
    with pytest.raises(SpecError, match="difficulty"):
        ImageNetPVideos(tmp_path, "translate", 0)


def test_missing_av_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shiftattack.data.video import ImageNetPVideos, read_video, write_video

    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    for call in (
        lambda: read_video(tmp_path / "v.mp4"),
        lambda: write_video(tmp_path / "v.mp4", _frames(2)),
        lambda: ImageNetPVideos(tmp_path, "translate"),
    ):
        with pytest.raises(DataError, match=r'pip install "shiftattack\[video\]"'):
            call()
