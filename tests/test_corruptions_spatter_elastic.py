"""Spatter and elastic_transform against OpenCV, SciPy, scikit-image and imagecorruptions.

Each step of the published chains is compared with its reference on the same inputs,
then the whole corruption given the same random draws with a NumPy/OpenCV/SciPy
transcription of the published function (``make_imagenet_c.py`` / ``make_cifar_c.py``,
CORRUPTIONS.md section 3), then the generic properties of the seeded corruptions.
The references are test-only dependencies, imported inside the tests.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from shiftattack.corruptions import corrupt, get_corruption
from shiftattack.corruptions.elastic import (
    _affine_from_points,
    affine_triangle,
    elastic_from_draws,
    map_coordinates_reflect,
    scipy_gaussian_filter,
    warp_affine,
)
from shiftattack.corruptions.spatter import (
    _EMBOSS,
    _box3_rounded,
    _box3_truncated,
    _filter3x3,
    _to_uint8,
    canny,
    chamfer_distance,
    equalize_hist,
    liquid_layer,
    spatter_from_field,
    spatter_water_mask,
)
from shiftattack.errors import ShapeError, SpecError

pytestmark = pytest.mark.usefixtures("one_thread")

SPATTER = get_corruption("spatter").params
ELASTIC = get_corruption("elastic_transform").params
SIDE = {"imagenet": 224, "cifar10": 32}


def t4(a: np.ndarray) -> torch.Tensor:
    """(H, W) NumPy array -> (1, 1, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def np_liquid(field: np.ndarray, g: float, thr: float) -> np.ndarray:
    from skimage.filters import gaussian

    layer = gaussian(field, sigma=g)
    layer[layer < thr] = 0
    return layer


def uint8_maps() -> list[np.ndarray]:
    """Canny inputs: spatter liquid layers (both suites, other sizes), a smeared ImageNet-P layer, noise."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(0)
    maps = []
    for side, (mu, s, g, thr, *_) in [
        (224, SPATTER["imagenet"][0]),
        (224, SPATTER["imagenet"][2]),
        (32, SPATTER["cifar10"][2]),
        (45, SPATTER["cifar10"][1]),
    ]:
        maps.append((np_liquid(rng.normal(mu, s, (side, side)), g, thr) * 255).astype(np.uint8))
    smeared = np_liquid(rng.normal(0.65, 0.27, (96, 80)), 3.7, 0.69)
    for _ in range(6):  # ImageNet-P's drift: weak edges, so the hysteresis matters
        smeared = np.apply_along_axis(np.convolve, 0, smeared, [0.05, 0.1, 0.15, 0.7], mode="same")
    maps.append((smeared * 255).astype(np.uint8))
    maps.append(gaussian(rng.uniform(0, 255, (50, 61)), sigma=1.5, preserve_range=True).astype(np.uint8))
    return maps


# ---------------------------------------------------------------- spatter, step by step


def test_canny_matches_opencv_edge_for_edge():
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    differ = total = 0
    for img in uint8_maps():
        ref = cv2.Canny(img, 50, 150) > 0
        ours = canny(t4(img).float())[0, 0].numpy()
        assert ref.any()
        differ += int((ours != ref).sum())
        total += ref.size
    assert differ / total <= 1e-4  # measured: 0 (identical edge maps)


def test_canny_is_batched_per_image():
    pytest.importorskip("skimage")
    maps = [m for m in uint8_maps() if m.shape == (224, 224)]
    batch = torch.from_numpy(np.stack(maps))[:, None].float()
    together = canny(batch)
    for i, m in enumerate(maps):
        assert torch.equal(together[i, 0], canny(t4(m).float())[0, 0])


def opencv34_distance(zero: np.ndarray) -> np.ndarray:
    """OpenCV 3.4's ``distanceTransform_5x5`` (DIST_L2) written out with loops: fixed point, two passes."""
    hv, diag, long_ = 65536, 91750, 143976
    far = (2**31 - 1) >> 2
    h, w = zero.shape
    t = np.full((h + 4, w + 4), far, dtype=np.int64)
    fwd = [
        (-2, -1, long_),
        (-2, 1, long_),
        (-1, -2, long_),
        (-1, -1, diag),
        (-1, 0, hv),
        (-1, 1, diag),
        (-1, 2, long_),
        (0, -1, hv),
    ]
    for i in range(h):
        for j in range(w):
            t[i + 2, j + 2] = 0 if zero[i, j] else min(t[i + 2 + a, j + 2 + b] + c for a, b, c in fwd)
    for i in range(h - 1, -1, -1):
        for j in range(w - 1, -1, -1):
            if t[i + 2, j + 2] > hv:
                t[i + 2, j + 2] = min([t[i + 2, j + 2]] + [t[i + 2 - a, j + 2 - b] + c for a, b, c in fwd])
    return (t[2 : h + 2, 2 : w + 2].astype(np.float32) * np.float32(1 / 65536)).astype(np.float32)


def random_zeros(rng, h, w, p):
    zero = rng.random((h, w)) < p
    return zero


def test_chamfer_distance_is_opencv_fixed_point_two_pass():
    rng = np.random.default_rng(1)
    cases = [random_zeros(rng, 19, 23, p) for p in (0.002, 0.01, 0.05, 0.3)]
    cases += [np.zeros((7, 9), bool), np.eye(12, 30, k=3, dtype=bool)]
    corner = np.zeros((31, 27), bool)
    corner[30, 26] = True
    cases.append(corner)
    for zero in cases:
        want = np.minimum(opencv34_distance(zero), np.float32(20))
        got = chamfer_distance(t4(zero))[0, 0].numpy()
        np.testing.assert_array_equal(got, want)


def test_chamfer_distance_is_within_1e4_of_installed_opencv():
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    maps = uint8_maps()
    worst = 0.0
    for img in maps:
        edges = cv2.Canny(img, 50, 150)
        ref = cv2.threshold(cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5), 20, 20, cv2.THRESH_TRUNC)[1]
        got = chamfer_distance(t4(edges == 255))[0, 0].numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    # OpenCV 3.4 adds fixed-point weights (1.4 -> 91750 / 65536), OpenCV 5 adds 1.4f: measured 8.2e-5.
    assert worst <= 1e-4


def test_equalize_hist_matches_opencv_exactly():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    imgs = [
        rng.integers(0, 256, (32, 32)),
        rng.integers(3, 21, (224, 224)),
        rng.integers(0, 2, (7, 9)) * 200,
        np.full((5, 6), 17),
        np.clip(rng.normal(128, 5, (40, 33)), 0, 255),
    ]
    imgs.append(np.where(rng.random((16, 16)) < 0.999, 250, 4))
    for img in imgs:
        img = img.astype(np.uint8)
        got = equalize_hist(t4(img).float())[0, 0].numpy()
        np.testing.assert_array_equal(got, cv2.equalizeHist(img))
    batch = np.stack([imgs[0], imgs[0] // 2, np.full((32, 32), 9)]).astype(np.uint8)
    out = equalize_hist(torch.from_numpy(batch)[:, None].float())
    for i in range(3):
        np.testing.assert_array_equal(out[i, 0].numpy(), cv2.equalizeHist(batch[i]))


def test_emboss_and_box_filters_match_opencv_exactly():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for shape in [(32, 32), (17, 40), (2, 5)]:
        img = rng.integers(0, 256, shape).astype(np.uint8)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        emboss = _filter3x3(t4(img).float(), _EMBOSS, "reflect101").clamp(0, 255)[0, 0].numpy()
        np.testing.assert_array_equal(emboss, cv2.filter2D(img, cv2.CV_8U, ker))
        np.testing.assert_array_equal(_box3_rounded(t4(img).float())[0, 0].numpy(), cv2.blur(img, (3, 3)))
        # capped chamfer distances: multiples of 2^-16 up to 20, where truncation to uint8 is decided
        dist = np.minimum(rng.integers(0, 8, shape) * np.float32(1.4) + rng.integers(0, 3, shape), 20)
        dist = (np.round(dist * 65536) / 65536).astype(np.float32)
        dist[0, :2] = [7.0, 2.0]
        want = cv2.blur(dist, (3, 3)).astype(np.uint8)
        np.testing.assert_array_equal(_box3_truncated(t4(dist))[0, 0].numpy(), want)


def test_uint8_cast_truncates_and_wraps_as_numpy_on_x86():
    v = torch.tensor([0.0, 254.999, 255.9, 256.5, 300.0, 511.2, 600.0], dtype=torch.float64)
    assert _to_uint8(v).tolist() == [0, 254, 255, 0, 44, 255, 88]


@pytest.mark.parametrize("shape,sigma", [((224, 224), 4), ((32, 32), 0.7), ((20, 37), 0.5), ((9, 6), 4)])
def test_liquid_layer_matches_skimage_gaussian_nearest(shape, sigma):
    pytest.importorskip("skimage")
    field = np.random.default_rng(4).normal(0.65, 0.3, shape)
    got = liquid_layer(t4(field), sigma, 0.68)[0, 0].numpy()
    np.testing.assert_allclose(got, np_liquid(field, sigma, 0.68), atol=1e-12, rtol=0)


def water_mask_reference(layer: np.ndarray, k: float, distance) -> np.ndarray:
    """The published water-mask chain on one liquid layer (float), OpenCV calls as published."""
    import cv2

    layer = (layer * 255).astype(np.uint8)
    dist = distance(255 - cv2.Canny(layer, 50, 150))
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = layer * dist
    m /= np.max(m)
    m *= k
    return m


def test_water_mask_is_the_published_opencv_chain():
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    rng = np.random.default_rng(5)
    fixed_point = lambda e: chamfer_distance(t4(e == 0))[0, 0].numpy()  # noqa: E731  (tested above)
    installed = lambda e: cv2.distanceTransform(e, cv2.DIST_L2, 5)  # noqa: E731
    differ = total = 0
    for suite, sev in [("imagenet", 1), ("imagenet", 3), ("cifar10", 1), ("cifar10", 3)]:
        mu, s, g, thr, k, _ = SPATTER[suite][sev - 1]
        side = SIDE[suite]
        fields = rng.normal(mu, s, (2, side, side))
        layers = np.stack([np_liquid(f, g, thr) for f in fields])
        got = spatter_water_mask(torch.from_numpy(layers)[:, None], k)[:, 0].numpy()
        for i in range(2):
            np.testing.assert_array_equal(got[i], water_mask_reference(layers[i], k, fixed_point))
            ref = water_mask_reference(layers[i], k, installed)
            differ += int((np.abs(got[i] - ref) > 1e-6).sum())
            total += ref.size
    assert differ / total < 0.01  # with the installed OpenCV's float chamfer weights; measured 0 to 0.2 %


# ---------------------------------------------------------------- spatter, whole


def spatter_reference(x: np.ndarray, field: np.ndarray, c) -> np.ndarray:
    """The published ``spatter`` (both suites' generators) on one float32 (H, W, 3) image and its field."""
    import cv2

    layer = np_liquid(field, c[2], c[3])
    if c[5] == 0:
        m = water_mask_reference(layer, c[4], lambda e: cv2.distanceTransform(e, cv2.DIST_L2, 5))
        color = np.array([175 / 255, 238 / 255, 238 / 255], np.float32)
        return np.clip(x + m[..., None] * color, 0, 1)
    from skimage.filters import gaussian

    m = gaussian(np.where(layer > c[3], 1, 0).astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    color = np.array([63 / 255, 42 / 255, 20 / 255], np.float32) * m[..., None]
    return np.clip(x * (1 - m[..., None]) + color, 0, 1)


def levels(a) -> np.ndarray:
    """The published 8-bit quantisation: truncation of 255 * value."""
    return np.floor(np.asarray(a, dtype=np.float64) * 255)


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_spatter_from_field_matches_the_published_function(suite):
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    rng = np.random.default_rng(6)
    side, n = SIDE[suite], (2 if suite == "imagenet" else 6)
    x = (rng.integers(0, 256, (n, side, side, 3)) / 255).astype(np.float32)
    for c in SPATTER[suite]:
        field = rng.normal(c[0], c[1], (n, side, side))
        got = spatter_from_field(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(field)[:, None], c)
        want = np.stack([spatter_reference(x[i], field[i], c) for i in range(n)])
        diff = np.abs(levels(got.permute(0, 2, 3, 1).numpy()) - levels(want))
        assert diff.max() <= 2 and diff.mean() < 1e-3, (c, diff.max(), diff.mean())  # measured: <= 2, 2e-5


def test_spatter_matches_imagecorruptions_on_the_same_field():
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    try:
        with warnings.catch_warnings():  # its deprecated scipy / pkg_resources imports
            warnings.simplefilter("ignore")
            from imagecorruptions.corruptions import spatter as ic_spatter
    except Exception as err:  # missing, or broken by its pkg_resources import
        pytest.skip(f"imagecorruptions unavailable: {err}")
    from PIL import Image

    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (224, 224, 3)).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    for severity in range(1, 6):
        c = SPATTER["imagenet"][severity - 1]
        np.random.seed(severity)
        want = ic_spatter(Image.fromarray(img), severity)  # draws np.random.normal((224, 224), mu, s)
        np.random.seed(severity)
        field = np.random.normal(size=(224, 224), loc=c[0], scale=c[1])
        got = spatter_from_field(x, t4(field), c)[0].permute(1, 2, 0).numpy()
        diff = np.abs(levels(got) - np.floor(want))
        assert diff.max() <= 2 and diff.mean() < 1e-3, (severity, diff.max(), diff.mean())


def test_spatter_without_liquid_leaves_the_image():
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    field = torch.full((2, 1, 16, 20), 0.1, dtype=torch.float64)
    for mode in (0, 1):  # the published code would divide 0 by 0 (water) here
        assert torch.equal(spatter_from_field(x, field, (0.1, 0.1, 1, 0.7, 0.6, mode)), x)


# ---------------------------------------------------------------- elastic, step by step


def test_affine_triangle_and_matrix_are_opencvs():
    cv2 = pytest.importorskip("cv2")
    assert affine_triangle(224, 224).tolist() == [[186, 186], [186, 38], [38, 38]]
    assert affine_triangle(32, 32).tolist() == [[26, 26], [26, 6], [6, 6]]
    assert affine_triangle(24, 41).tolist() == [[28, 20], [28, 4], [12, 4]]  # (x, y) about (W // 2, H // 2)
    rng = np.random.default_rng(8)
    src = affine_triangle(224, 224).numpy()
    dst = (src + rng.uniform(-48.8, 48.8, (3, 2)).astype(np.float32)).astype(np.float32)
    got = _affine_from_points(torch.from_numpy(src)[None], torch.from_numpy(dst)[None])[0].numpy()
    np.testing.assert_allclose(got, cv2.getAffineTransform(src, dst), atol=1e-9, rtol=0)


@pytest.mark.parametrize("shape,a", [((224, 224), 48.8), ((32, 32), 2.56), ((24, 41), 6.0)])
def test_warp_affine_matches_opencv_reflect101(shape, a):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(9)
    img = rng.random((*shape, 3)).astype(np.float32)
    src = affine_triangle(*shape).numpy()
    dst = (src + rng.uniform(-a, a, (3, 2)).astype(np.float32)).astype(np.float32)
    m = cv2.getAffineTransform(src, dst)
    want = cv2.warpAffine(img, m, shape[::-1], borderMode=cv2.BORDER_REFLECT_101)
    got = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(m)[None])
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - want) * 255
    assert diff.max() <= 0.02  # float32 arithmetic on both sides; measured 0.001 to 0.006 levels


@pytest.mark.parametrize(
    "shape,sigma",
    [
        ((224, 224), 170.8),
        ((224, 224), 19.52),
        ((224, 224), 2.44),
        ((32, 32), 6.4),
        ((32, 32), 0.96),
        ((20, 33), 12.0),
        ((5, 3), 0.7),
    ],
)
def test_gaussian_reflect_matches_scipy_for_any_radius(shape, sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    u = np.random.default_rng(10).uniform(-1, 1, (2, *shape))
    got = scipy_gaussian_filter(torch.from_numpy(u), sigma, truncate=3.0, mode="reflect").numpy()
    for i in range(2):
        want = ndimage.gaussian_filter(u[i], sigma, mode="reflect", truncate=3)
        np.testing.assert_allclose(got[i], want, atol=1e-12, rtol=0)


def test_gaussian_of_sigma_zero_is_the_identity_as_in_scipy():
    u = torch.rand(1, 6, 7, dtype=torch.float64)
    assert torch.equal(scipy_gaussian_filter(u, 0.0, truncate=3.0, mode="reflect"), u)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_map_coordinates_matches_scipy_reflect_order_1(dtype, atol):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(11)
    h, w = 13, 17
    img = rng.random((2, h, w))
    rows = rng.uniform(-2.5 * h, 3.5 * h, (1, 40, 30))
    cols = rng.uniform(-2.5 * w, 3.5 * w, (1, 40, 30))
    rows[0, 0, :8] = [-1, -0.5, 0, h - 1, h - 0.5, h, 2 * h, -h - 0.25]  # integers, halves, the edges
    cols[0, 1, :8] = [-1, -0.5, 0, w - 1, w - 0.5, w, 2 * w, -w - 0.25]
    got = map_coordinates_reflect(
        torch.from_numpy(img)[None].to(dtype), torch.from_numpy(rows), torch.from_numpy(cols)
    )[0]
    for ch in range(2):
        want = ndimage.map_coordinates(
            img[ch].astype(np.float32 if dtype == torch.float32 else np.float64),
            [rows[0], cols[0]],
            order=1,
            mode="reflect",
        )
        np.testing.assert_allclose(got[ch].double().numpy(), want, atol=atol, rtol=0)


# ---------------------------------------------------------------- elastic, whole


def elastic_reference(image: np.ndarray, jitter, ux, uy, c) -> np.ndarray:
    """The published ``elastic_transform`` (make_imagenet_c.py / make_cifar_c.py) given its draws."""
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    image = image.astype(np.float32)
    shape = image.shape
    size = shape[:2]
    centre, q = np.float32(size) // 2, min(size) // 3
    pts1 = np.float32([centre + q, [centre[0] + q, centre[1] - q], centre - q])
    pts2 = pts1 + jitter.astype(np.float32)
    image = cv2.warpAffine(
        image, cv2.getAffineTransform(pts1, pts2), size[::-1], borderMode=cv2.BORDER_REFLECT_101
    )
    dx = (gaussian(ux, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)[..., None]
    dy = (gaussian(uy, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)[..., None]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    idx = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(map_coordinates(image, idx, order=1, mode="reflect").reshape(shape), 0, 1)


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_elastic_from_draws_matches_the_published_function(suite):
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    rng = np.random.default_rng(12)
    side, n = SIDE[suite], (2 if suite == "imagenet" else 4)
    x = (rng.integers(0, 256, (n, side, side, 3)) / 255).astype(np.float32)
    for c in ELASTIC[suite]:
        jitter = rng.uniform(-c[2], c[2], (n, 3, 2))
        ux, uy = rng.uniform(-1, 1, (n, side, side)), rng.uniform(-1, 1, (n, side, side))
        got = (
            elastic_from_draws(
                torch.from_numpy(x).permute(0, 3, 1, 2),
                torch.from_numpy(jitter),
                torch.from_numpy(ux),
                torch.from_numpy(uy),
                c,
            )
            .permute(0, 2, 3, 1)
            .numpy()
        )
        want = np.stack([elastic_reference(x[i], jitter[i], ux[i], uy[i], c) for i in range(n)])
        assert np.abs(got - want).max() * 255 <= 0.02, c  # measured: up to 0.006 levels
        assert np.abs(levels(got) - levels(want)).max() <= 1


def test_cifar_severity_1_is_the_affine_alone():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    jitter = torch.rand(2, 3, 2, dtype=torch.float64) * 5 - 2.5
    u = torch.rand(2, 32, 32, dtype=torch.float64)
    c = ELASTIC["cifar10"][0]
    assert c[0] == 0
    matrix = _affine_from_points(
        affine_triangle(32, 32).expand(2, 3, 2), affine_triangle(32, 32) + jitter.float()
    )
    torch.testing.assert_close(
        elastic_from_draws(x, jitter, u, u, c), warp_affine(x, matrix).clamp(0, 1), atol=1e-6, rtol=0
    )


# ---------------------------------------------------------------- both, generic properties


def smooth_images(n=3, h=32, w=32, seed=0) -> torch.Tensor:
    """Images with structure at several scales (random coarse patterns, upsampled), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(h // 8, 2), max(w // 8, 2), generator=g)
    fine = torch.rand(n, 3, h, w, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.8 * up + 0.2 * fine).clamp(0, 1)


@pytest.mark.parametrize("name", ["spatter", "elastic_transform"])
@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_seeded_shape_dtype_range_and_any_size(name, suite):
    for h, w in [(32, 32), (40, 56)]:
        x = smooth_images(2, h, w)
        for s in range(1, 6):
            a = corrupt(x, name, s, generator=torch.Generator().manual_seed(s), params=suite)
            b = corrupt(x, name, s, generator=torch.Generator().manual_seed(s), params=suite)
            assert torch.equal(a, b)
            assert a.shape == x.shape and a.dtype == x.dtype and a.min() >= 0 and a.max() <= 1
        other = corrupt(x, name, 3, generator=torch.Generator().manual_seed(99), params=suite)
        assert not torch.equal(
            other, corrupt(x, name, 3, generator=torch.Generator().manual_seed(3), params=suite)
        )
    y = corrupt(x.double(), name, 4, generator=torch.Generator().manual_seed(0), params=suite)
    assert y.dtype == torch.float64


@pytest.mark.parametrize("name", ["spatter", "elastic_transform"])
@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_a_batch_equals_its_images_one_at_a_time(name, suite):
    x = smooth_images(3, 36, 36, seed=1)
    for s in (1, 3, 5):
        batched = corrupt(x, name, s, generator=torch.Generator().manual_seed(7), params=suite)
        g = torch.Generator().manual_seed(7)
        single = torch.cat([corrupt(x[i : i + 1], name, s, generator=g, params=suite) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)


def mean_distance(name, suite, severity, x, c=None) -> float:
    g = torch.Generator().manual_seed(11)
    if c is None:
        y = corrupt(x, name, severity, generator=g, params=suite)
    else:
        y = get_corruption(name).fn(x, c, g)
    return float((y - x).abs().mean())


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_spatter_strength_grows_with_severity(suite):
    x = smooth_images(8, SIDE[suite], SIDE[suite], seed=2)
    d = [mean_distance("spatter", suite, s, x) for s in range(1, 6)]
    assert d[0] < d[1] < d[2] and d[3] < d[4] and d[0] > 0
    if suite == "imagenet":  # CIFAR-10's water severity 3 moves more than its mud severities 4 and 5
        assert d[2] < d[3]


@pytest.mark.parametrize("side", [224, 32])
def test_elastic_strength_grows_with_alpha_and_with_the_affine_jitter(side):
    x = smooth_images(4, side, side, seed=3)
    sigma = 2.44 if side == 224 else 1.28
    by_alpha = [mean_distance("elastic_transform", "", 0, x, (alpha, sigma, 0)) for alpha in (0.0, 4, 8, 16)]
    by_jitter = [mean_distance("elastic_transform", "", 0, x, (0, 0, a)) for a in (0.0, 1, 2, 4)]
    assert by_alpha[0] == by_jitter[0] == 0
    assert by_alpha == sorted(by_alpha) and len(set(by_alpha)) == 4
    assert by_jitter == sorted(by_jitter) and len(set(by_jitter)) == 4
    if side == 224:  # ImageNet severities 3-5 share sigma and A and grow alpha
        d = [mean_distance("elastic_transform", "imagenet", s, x) for s in (3, 4, 5)]
        assert d[0] < d[1] < d[2]


def test_bad_arguments_are_named():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(SpecError, match="mode"):
        get_corruption("spatter").fn(x, (0.65, 0.3, 4, 0.69, 0.6, 2), None)
    with pytest.raises(SpecError, match="c = "):
        get_corruption("spatter").fn(x, (0.65, 0.3), None)
    with pytest.raises(SpecError, match=">= 0"):
        get_corruption("spatter").fn(x, (0.65, 0.3, -1, 0.69, 0.6, 0), None)
    with pytest.raises(ShapeError, match="liquid field"):
        spatter_from_field(x, torch.zeros(1, 1, 8, 9), (0.65, 0.3, 4, 0.69, 0.6, 0))
    with pytest.raises(SpecError, match="alpha, sigma, A"):
        get_corruption("elastic_transform").fn(x, (1, 2), None)
    with pytest.raises(SpecError, match=">= 0"):
        get_corruption("elastic_transform").fn(x, (1, -2, 1), None)
    with pytest.raises(ShapeError, match="jitter"):
        elastic_from_draws(x, torch.zeros(1, 2, 2), torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), (1, 1, 1))


@pytest.mark.parametrize("cap", [20.0, 5.0, 7.5])
def test_striped_numpy_chamfer_equals_the_torch_row_loop(monkeypatch, cap):
    """Both backends, in bands of any height, equal the one-window torch passes (the reference above)."""
    import shiftattack.corruptions.chamfer as sp

    rng = np.random.default_rng(7)
    cases = [rng.random((int(rng.integers(1, 4)), 1, int(rng.integers(1, 150)), int(rng.integers(1, 60))))
             < p for p in (0.0, 0.0005, 0.002, 0.01, 0.05, 0.3) for _ in range(6)]
    lines = np.zeros((2, 1, 120, 40), bool)
    lines[0, 0, 60], lines[1, 0, :, 7] = True, True
    cases += [lines, uint8_maps()[0][None, None] > 200]
    for zero in cases:
        z = torch.from_numpy(zero)
        monkeypatch.setattr(sp, "_CORE", 10**6)  # one window: the plain two passes
        want = sp.chamfer_distance(z, cap, backend="torch")
        for core in (28, 10, 3):
            monkeypatch.setattr(sp, "_CORE", core)
            for backend in ("numpy", "torch"):
                assert torch.equal(sp.chamfer_distance(z, cap, backend=backend), want), (zero.shape, core)
