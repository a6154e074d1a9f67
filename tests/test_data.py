"""Tests of shiftattack.data: every layout, the class-balanced limit, and every error."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shiftattack.data import LabeledImages, balanced_subset, load_dataset
from shiftattack.errors import DataError, DataWarning, SpecError

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _pixels(n: int, h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    """Random uint8 images, shape (n, h, w, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def _write_folder(root: Path, per_class: dict[str, np.ndarray]) -> None:
    """root/<class>/<NNN>.png, one PNG per image of (n, H, W, 3)."""
    for cls, imgs in per_class.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            (root / cls / f"{i:03d}.png").write_bytes(_png_bytes(img))


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------- layouts


def test_npz_round_trip(tmp_path: Path) -> None:
    x, y = _pixels(7), np.array([2, 0, 1, 2, 0, 1, 1], dtype=np.int32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    ds = load_dataset(str(path), progress=False)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (7, 3, 4, 5)
    assert torch.equal(ds.images, _nchw(x))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y.tolist()
    assert ds.indices.tolist() == list(range(7))
    assert ds.classes is None and ds.source == str(path) and len(ds) == 7
    f = ds.float_images(2, 5)
    assert f.dtype == torch.float32 and f.shape == (3, 3, 4, 5)
    assert torch.equal(f, _nchw(x[2:5]).float() / 255)
    assert ds.fingerprint() == load_dataset(path, progress=False).fingerprint()


def test_npz_limit_and_fingerprint(tmp_path: Path) -> None:
    x, y = _pixels(9), np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=x, y=y)
    full = load_dataset(path)
    ds = load_dataset(path, limit=4)
    assert ds.indices.tolist() == [0, 1, 2, 3]
    assert torch.equal(ds.images, _nchw(x[:4])) and ds.labels.tolist() == [0, 1, 2, 0]
    assert ds.fingerprint() != full.fingerprint()
    assert len(load_dataset(path, limit=100)) == 9  # more than N: everything, no error
    x2 = x.copy()
    x2[8, 0, 0, 0] ^= 1
    np.savez(path, x=x2, y=y)
    assert load_dataset(path).fingerprint() != full.fingerprint()


def test_image_folder(tmp_path: Path) -> None:
    cats, dogs = _pixels(3, seed=1), _pixels(2, seed=2)
    _write_folder(tmp_path / "data", {"dog": dogs, "cat": cats})
    (tmp_path / "data" / "empty").mkdir()  # a class with no images keeps its label
    (tmp_path / "data" / "README.txt").write_text("files beside the class folders are ignored")
    ds = load_dataset(tmp_path / "data", progress=False)
    assert ds.classes == ["cat", "dog", "empty"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.indices.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(ds.images, _nchw(np.concatenate([cats, dogs])))
    lim = load_dataset(tmp_path / "data", limit=3)
    assert lim.indices.tolist() == [0, 1, 3] and lim.labels.tolist() == [0, 0, 1]
    assert torch.equal(lim.images, _nchw(np.stack([cats[0], cats[1], dogs[0]])))


def test_image_folder_split_suffix(tmp_path: Path) -> None:
    imgs = _pixels(2, seed=3)
    _write_folder(tmp_path / "data" / "test", {"a": imgs[:1], "b": imgs[1:]})
    _write_folder(tmp_path / "data" / "train", {"a": imgs, "b": imgs})
    ds = load_dataset(f"{tmp_path / 'data'}:test")
    assert ds.classes == ["a", "b"] and torch.equal(ds.images, _nchw(imgs))
    assert len(load_dataset(f"{tmp_path / 'data'}:train")) == 4
    with pytest.raises(DataError, match="split folders"):
        load_dataset(tmp_path / "data")
    with pytest.raises(DataError, match="no split folder 'val'"):
        load_dataset(f"{tmp_path / 'data'}:val")


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_zip_with_split_suffix(tmp_path: Path) -> None:
    test, train = _pixels(4, seed=4), _pixels(2, seed=5)
    members = {
        "train/cat/0000.png": _png_bytes(train[0]),
        "train/dog/0000.png": _png_bytes(train[1]),
        "test/dog/0001.png": _png_bytes(test[3]),
        "test/cat/0001.png": _png_bytes(test[1]),
        "test/cat/0000.png": _png_bytes(test[0]),
        "test/dog/0000.PNG": _png_bytes(test[2]),  # extensions are case-insensitive
        "__MACOSX/test/cat/._0000.png": b"resource fork junk",
    }
    path = tmp_path / "d.zip"
    _write_zip(path, members)
    ds = load_dataset(f"{path}:test", progress=False)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(ds.images, _nchw(test)), "pixels exact, files in sorted order"
    assert ds.source == f"{path}:test"
    tr = load_dataset(f"{path}:train")
    assert torch.equal(tr.images, _nchw(train)) and tr.labels.tolist() == [0, 1]
    lim = load_dataset(f"{path}:test", limit=2)
    assert lim.indices.tolist() == [0, 2] and torch.equal(lim.images, _nchw(test[[0, 2]]))
    with pytest.raises(DataError, match=r"split folders \(test, train\).*:test"):
        load_dataset(path)
    with pytest.raises(DataError, match="no split folder 'val'.*test, train"):
        load_dataset(f"{path}:val")


def test_zip_root_and_wrapper_folder(tmp_path: Path) -> None:
    imgs = _pixels(2, seed=6)
    flat, wrapped = tmp_path / "flat.zip", tmp_path / "wrapped.zip"
    _write_zip(flat, {"a/0.png": _png_bytes(imgs[0]), "b/0.png": _png_bytes(imgs[1])})
    _write_zip(wrapped, {"set/a/0.png": _png_bytes(imgs[0]), "set/b/0.png": _png_bytes(imgs[1])})
    for path in (flat, wrapped):
        ds = load_dataset(path)
        assert ds.classes == ["a", "b"] and torch.equal(ds.images, _nchw(imgs))


def _cifar_row(img: np.ndarray) -> np.ndarray:
    """(32, 32, 3) -> the CIFAR row: R plane, G plane, B plane, each row-major."""
    return img.transpose(2, 0, 1).reshape(-1)


def _write_cifar(root: Path, batches: dict[str, tuple[np.ndarray, list[int]]], proto: int) -> None:
    root.mkdir()
    for name, (imgs, labels) in batches.items():
        d = {
            b"batch_label": name.encode(),
            b"data": np.stack([_cifar_row(im) for im in imgs]),
            b"labels": labels,
        }
        (root / name).write_bytes(pickle.dumps(d, protocol=proto))
    meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES[:3]], b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=proto))


@pytest.mark.parametrize("proto", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_python_batches(tmp_path: Path, proto: int) -> None:
    imgs = _pixels(7, 32, 32, seed=7)
    root = tmp_path / "cifar-10-batches-py"
    batches = {
        "data_batch_1": (imgs[:2], [0, 1]),
        "data_batch_2": (imgs[2:5], [2, 2, 0]),
        "test_batch": (imgs[5:], [1, 0]),
    }
    _write_cifar(root, batches, proto)
    row = batches["data_batch_1"][0][0].transpose(2, 0, 1).reshape(-1)
    assert row[0] == imgs[0, 0, 0, 0] and row[1024 + 32 * 2 + 5] == imgs[0, 2, 5, 1]
    assert row[2048 + 32 * 31 + 30] == imgs[0, 31, 30, 2]
    for spec in (str(root), f"{root}:test"):
        ds = load_dataset(spec)
        assert ds.images.shape == (2, 3, 32, 32) and torch.equal(ds.images, _nchw(imgs[5:]))
        assert ds.labels.tolist() == [1, 0] and ds.classes == CIFAR_CLASSES[:3]
    tr = load_dataset(f"{root}:train")
    assert torch.equal(tr.images, _nchw(imgs[:5])) and tr.labels.tolist() == [0, 1, 2, 2, 0]
    assert tr.images[0, 1, 2, 5] == imgs[0, 2, 5, 1]  # channel G, row 2, column 5
    lim = load_dataset(f"{root}:train", limit=4)
    assert lim.indices.tolist() == [0, 1, 2, 4] and torch.equal(lim.images, _nchw(imgs[[0, 1, 2, 4]]))
    with pytest.raises(SpecError, match="unknown split 'val'"):
        load_dataset(f"{root}:val")


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    root = tmp_path / "batches"
    root.mkdir()
    (root / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_dataset(root)


def test_non_rgb_modes_are_converted(tmp_path: Path) -> None:
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    rgba = _pixels(1, seed=8)[0]
    rgba = np.concatenate([rgba, np.full((4, 5, 1), 7, np.uint8)], axis=-1)
    cls = tmp_path / "data" / "x"
    cls.mkdir(parents=True)
    (cls / "0_gray.png").write_bytes(_png_bytes(gray, "L"))
    (cls / "1_rgba.png").write_bytes(_png_bytes(rgba, "RGBA"))
    Image.fromarray(gray, "L").convert("P").save(cls / "2_pal.bmp")
    Image.fromarray(np.stack([gray, gray], -1), "LA").save(cls / "3_la.png")
    with pytest.warns(DataWarning, match=r"converted 4 of 4 images to RGB \(2 L, 1 LA, 1 RGBA\)"):
        ds = load_dataset(tmp_path / "data")
    assert ds.images.shape == (4, 3, 4, 5)
    g = torch.from_numpy(gray)
    for i in (0, 2, 3):
        assert all(torch.equal(ds.images[i, c], g) for c in range(3)), i
    assert torch.equal(ds.images[1], _nchw(rgba[None, ..., :3])[0]), "alpha dropped"


# ------------------------------------------------------------ balanced_subset


def _round_robin(labels: list[int], limit: int) -> list[int]:
    """Reference: the literal round-robin over classes in label order."""
    queues = {c: [i for i, y in enumerate(labels) if y == c] for c in sorted(set(labels))}
    out: list[int] = []
    while len(out) < min(limit, len(labels)):
        for q in queues.values():
            if q and len(out) < limit:
                out.append(q.pop(0))
    return sorted(out)


def test_balanced_subset_examples() -> None:
    y = np.repeat(np.arange(10), 30)
    np.random.default_rng(0).shuffle(y)
    idx = balanced_subset(y, 20)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [2] * 10
    for c in range(10):  # the first two of each class
        assert idx[y[idx] == c].tolist() == np.flatnonzero(y == c)[:2].tolist()
    assert np.array_equal(idx, balanced_subset(torch.from_numpy(y), 20))
    uneven = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    assert balanced_subset(uneven, 6).tolist() == [0, 1, 2, 5, 6, 7]
    assert balanced_subset(uneven, 3).tolist() == [0, 5, 6]
    assert balanced_subset(uneven, 4).tolist() == [0, 1, 5, 6]
    assert balanced_subset(uneven, 99).tolist() == list(range(8))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.integers(1, 45))
def test_balanced_subset_matches_round_robin(labels: list[int], limit: int) -> None:
    got = balanced_subset(np.array(labels, dtype=np.int64), limit)
    assert got.tolist() == _round_robin(labels, limit)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit(tmp_path: Path, limit: object) -> None:
    with pytest.raises(SpecError, match="limit must be a positive integer"):
        balanced_subset(np.zeros(4, dtype=np.int64), limit)  # type: ignore[arg-type]
    path = tmp_path / "d.npz"
    np.savez(path, x=_pixels(2), y=np.array([0, 1]))
    with pytest.raises(SpecError, match="limit must be a positive integer"):
        load_dataset(path, limit=limit)  # type: ignore[arg-type]


def test_labeled_images_checks_its_fields() -> None:
    with pytest.raises(DataError, match="labels must be int64 of shape"):
        LabeledImages(
            torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
            torch.zeros(3, dtype=torch.int64),
            torch.arange(2),
            None,
            "t",
        )


# ------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory: .*nope"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(f"{tmp_path / 'nope.zip'}:test")


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown dataset layout.*accepted layouts: an .npz"):
        load_dataset(tmp_path / "notes.txt")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(_png_bytes(_pixels(1)[0]))
    with pytest.raises(DataError, match="unknown dataset layout.*ImageFolder"):
        load_dataset(flat)
    with pytest.raises(SpecError, match="applies only to a .zip or a directory"):
        load_dataset(f"{tmp_path / 'notes.txt'}:test")


@pytest.mark.parametrize(
    ("name", "data"),
    [("notes.txt", b"not an image"), ("broken.png", b"\x89PNG\r\n\x1a\n garbage")],
)
def test_non_image_file_in_folder(tmp_path: Path, name: str, data: bytes) -> None:
    """A non-image name, or an image file that cannot be decoded, is skipped with one warning kept in
    ``warnings`` (or, strict, an error naming it)."""
    _write_folder(tmp_path / "d", {"a": _pixels(2), "b": _pixels(1)})
    (tmp_path / "d" / "b" / name).write_bytes(data)
    with pytest.raises(DataError, match=f"b/{name}"):
        load_dataset(tmp_path / "d", strict=True)
    path = tmp_path / "d.zip"
    _write_zip(path, {"test/a/0.png": _png_bytes(_pixels(1)[0]), f"test/b/{name}": data,
                      "test/b/1.png": _png_bytes(_pixels(1)[0])})
    with pytest.raises(DataError, match=f"test/b/{name}"):
        load_dataset(f"{path}:test", strict=True)
    what = "unreadable image file" if name.endswith(".png") else "file.*that are not images"
    with pytest.warns(DataWarning, match=f"skipped 1 {what}.*b/{name}"):
        ds = load_dataset(f"{path}:test")
    assert len(ds) == 2 and ds.labels.tolist() == [0, 1]
    assert len(ds.warnings) == 1 and f"b/{name}" in ds.warnings[0]
    assert ds.names == ["test/a/0.png", "test/b/1.png"]


def test_corrupt_npz_and_zip(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=_pixels(50), y=np.zeros(50, dtype=np.int64))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match=f"cannot read {path}"):
        load_dataset(path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"cannot read {path}"):
        load_dataset(path)
    bad_zip = tmp_path / "d.zip"
    bad_zip.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=f"cannot open zip file {bad_zip}"):
        load_dataset(f"{bad_zip}:test")


def test_npz_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, images=_pixels(2), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"missing key\(s\) 'x'; found keys: 'images', 'y'"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (_pixels(2).astype(np.float32), np.array([0, 1]), "'x' has dtype float32"),
        (_pixels(2)[..., :1], np.array([0, 1]), r"'x' has shape \(2, 4, 5, 1\)"),
        (_pixels(2), np.array([0.0, 1.0]), "'y' has dtype float64"),
        (_pixels(2), np.array([0, 1, 2]), "'y' has shape"),
        (_pixels(2), np.array([0, -1]), "negative labels"),
    ],
)
def test_npz_wrong_dtype_or_shape(tmp_path: Path, x: np.ndarray, y: np.ndarray, match: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_empty_datasets(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(tmp_path / "empty")
    for cls in ("a", "b"):
        (tmp_path / "classes" / cls).mkdir(parents=True)
    with pytest.raises(DataError, match="no images in .*classes"):
        load_dataset(tmp_path / "classes")
    (tmp_path / "splits" / "test").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(f"{tmp_path / 'splits'}:test")
    path = tmp_path / "d.zip"
    _write_zip(path, {"test/": b"", "train/a/0.png": _png_bytes(_pixels(1)[0])})
    with pytest.raises(DataError, match="no class folders in test in"):
        load_dataset(f"{path}:test")
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 4, 4, 3), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "e.npz")


def test_mixed_sizes(tmp_path: Path) -> None:
    _write_folder(tmp_path / "d", {"a": _pixels(1, 4, 5), "b": _pixels(1, 6, 5)})
    with pytest.raises(DataError, match=r"a/000.png is 5x4 .* but .*b/000.png is 5x6"):
        load_dataset(tmp_path / "d")


# ---------------------------------------------------------------- real data


@pytest.mark.data
def test_real_cifar_zip_limit(cifar_zip: Path) -> None:
    ds = load_dataset(f"{cifar_zip}:test", limit=200, progress=False)
    assert ds.images.shape == (200, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.unique().tolist() == list(range(10))
    assert torch.bincount(ds.labels).tolist() == [20] * 10
    assert ds.classes == CIFAR_CLASSES
    assert torch.all(ds.indices[1:] > ds.indices[:-1])


def test_resize_makes_mixed_sizes_one_canvas(tmp_path):
    """``resize`` = Resize(n) + CenterCrop(n): mixed sizes become n x n, centred."""
    from PIL import Image

    from shiftattack.data import load_dataset

    root = tmp_path / "folder"
    for cls, size in (("a", (40, 30)), ("b", (20, 50))):
        (root / cls).mkdir(parents=True)
        arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        arr[size[1] // 2, size[0] // 2] = 255  # a bright centre pixel
        Image.fromarray(arr).save(root / cls / "0.png")
    ds = load_dataset(root, resize=16, progress=False)
    assert ds.images.shape == (2, 3, 16, 16)
    for img in ds.images:
        ys, xs = np.nonzero(img[0].numpy())
        assert abs(ys.mean() - 7.5) <= 1.5 and abs(xs.mean() - 7.5) <= 1.5
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((3, 10, 12, 3), dtype=np.uint8), y=np.array([0, 1, 2]))
    assert load_dataset(npz, resize=8).images.shape == (3, 3, 8, 8)
    with pytest.raises(SpecError):
        load_dataset(npz, resize=0)


def test_threaded_decoding_keeps_order_and_skip_or_strict(tmp_path: Path, monkeypatch) -> None:
    """Large files go through the thread pool: same arrays and order as one thread; errors as before."""
    from shiftattack.data import _decode

    rng = np.random.default_rng(0)
    root = tmp_path / "big"
    for k in range(3):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (130, 140, 3), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.png")
    monkeypatch.setattr(_decode, "DECODE_THREADS", 1)
    one = load_dataset(root, progress=False)
    monkeypatch.setattr(_decode, "DECODE_THREADS", 4)
    many = load_dataset(root, progress=False)
    assert torch.equal(one.images, many.images) and torch.equal(one.labels, many.labels)
    (root / "c1" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="c1/2.png"):
        load_dataset(root, progress=False, strict=True)
    with pytest.warns(DataWarning, match="skipped 1 unreadable"):
        skipped = load_dataset(root, progress=False)
    assert len(skipped) == 14 and skipped.indices.tolist() == [i for i in range(15) if i != 7]
    assert torch.equal(skipped.images, one.images[[i for i in range(15) if i != 7]])
