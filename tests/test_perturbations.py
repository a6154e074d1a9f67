"""ImageNet-P / CIFAR-10-P sequences against independent references.

References: torch.roll / F.pad brute force (translate), Pillow's ``Image.transform``
through torchvision's PIL ``affine`` or with the torchvision 0.2 matrix written in
closed form (rotate, scale, shear, zoom blur), OpenCV ``warpPerspective`` (tilt),
scikit-image (Gaussian blur, HSV brightness), NumPy (noise given the same draws),
torchvision's ``center_crop``; plus noise statistics, seeding and batching.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shiftattack.corruptions import perturbations as P
from shiftattack.corruptions.perturbations import get_perturbation, list_perturbations, n_frames, perturb
from shiftattack.errors import SpecError

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = (
    "gaussian_noise shot_noise motion_blur zoom_blur snow brightness translate rotate tilt scale "
    "speckle_noise gaussian_blur spatter shear"
).split()
FRAMES = {name: (31, 31) for name in ALL} | {"translate": (41, 16), "motion_blur": (31, 21)}
RANDOM = ("gaussian_noise", "shot_noise", "speckle_noise", "snow", "spatter")
# A small ImageNet-P stand-in: a non-square "base" and its centre crop (odd margins exercise the rounding).
BASE, CROP = (41, 46), 32


def smooth(n: int = 2, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    """Natural-looking images (smooth blobs plus a sharp bar), uint8-valued, as float in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size[0] // 4 + 2, size[1] // 4 + 2, generator=g)
    x = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    x[:, :, size[0] // 2 : size[0] // 2 + 3, :] = 1.0
    return (x * 255).round() / 255


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float holding 8-bit levels -> (H, W, 3) uint8."""
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def levels(a, b) -> float:
    """Max absolute difference in 8-bit levels between two [0, 1] images (tensor or (H, W, 3) uint8)."""
    a = a.permute(1, 2, 0).double().numpy() * 255 if isinstance(a, torch.Tensor) else a.astype(np.float64)
    b = b.permute(1, 2, 0).double().numpy() * 255 if isinstance(b, torch.Tensor) else b.astype(np.float64)
    return float(np.abs(a - b).max())


def suite_input(suite: str, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, int | None]:
    return (smooth(n, BASE, seed), CROP) if suite == "imagenet" else (smooth(n, (32, 32), seed), None)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- registry


def test_names_order_flags_and_frame_counts():
    assert list_perturbations() == ALL
    assert list_perturbations(held_out=True) == ["speckle_noise", "gaussian_blur", "spatter", "shear"]
    assert list_perturbations(held_out=False) == ALL[:10]
    assert list_perturbations("*noise") == ["gaussian_noise", "shot_noise", "speckle_noise"]
    for name in ALL:
        p = get_perturbation(name)
        assert p.noise == ("noise" in name) and p.frames == dict(
            zip(("imagenet", "cifar10"), FRAMES[name], strict=True)
        )
        assert (n_frames(name, "imagenet"), n_frames(name, "cifar10")) == FRAMES[name]
    with pytest.raises(SpecError, match="available: gaussian_noise, shot_noise"):
        get_perturbation("fog")
    with pytest.raises(SpecError, match="params must be one of"):
        n_frames("rotate", "imagenet-p")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_shape_dtype_range_and_frame_count(name, suite):
    x, crop = suite_input(suite)
    x = x.double() if name in ("rotate", "gaussian_noise") else x
    y = perturb(x, name, generator=seeded(0), params=suite, crop=crop)
    side = crop or 32
    assert y.shape == (2, n_frames(name, suite), 3, side, side) and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1 and torch.isfinite(y).all()
    assert not torch.equal(y[:, 1], y[:, -1])  # the frames do move
    assert perturb(x[:0], name, params=suite, crop=crop).shape == (0, *y.shape[1:])


def test_bad_arguments_are_named():
    x = smooth(1)
    with pytest.raises(SpecError, match="unknown perturbation 'fog'"):
        perturb(x, "fog")
    with pytest.raises(SpecError, match="params must be one of imagenet, cifar10"):
        perturb(x, "rotate", params="cifar")
    for bad in (0, 4, True, 1.0, "2"):
        with pytest.raises(SpecError, match="difficulty must be 1, 2 or 3"):
            perturb(x, "gaussian_noise", difficulty=bad)
    for bad in (0, 33, 1.5, True):
        with pytest.raises(SpecError, match="crop must be an integer"):
            perturb(x, "rotate", crop=bad)
    with pytest.raises(SpecError, match="RGB"):
        perturb(x[:, :1], "rotate")


# ---------------------------------------------------------------------------------------------- crop


def test_center_crop_is_torchvision_center_crop():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    for h, w, c in [(41, 46, 32), (43, 44, 32), (256, 341, 224), (32, 32, 32)]:
        x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
        assert torch.equal(P.center_crop(x, (c, c)), tvf.center_crop(x, [c, c]))


@pytest.mark.parametrize("name", ["gaussian_noise", "speckle_noise", "brightness", "gaussian_blur"])
def test_photometric_sequences_crop_first(name):
    x = smooth(2, BASE)
    cropped = perturb(x, name, generator=seeded(3), crop=CROP)
    assert torch.equal(cropped, perturb(P.center_crop(x, (CROP, CROP)), name, generator=seeded(3)))


@pytest.mark.parametrize("name", ["translate", "rotate", "scale", "shear", "tilt", "zoom_blur"])
def test_geometric_sequences_crop_after_the_transform(name):
    x = smooth(2, BASE)
    full = perturb(x, name)
    cropped = perturb(x, name, crop=CROP)
    torch.testing.assert_close(cropped, P.center_crop(full, (CROP, CROP)), atol=1e-6, rtol=0)
    # content from outside the crop window comes into view (not the same as transforming the crop)
    assert not torch.allclose(cropped, perturb(P.center_crop(x, (CROP, CROP)), name), atol=1e-3)


# ---------------------------------------------------------------------------------------------- translate


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_translate_is_exact_against_pad_brute_force_every_frame(suite):
    x, crop = suite_input(suite)
    y = perturb(x, "translate", params=suite, crop=crop)
    first = -20 if suite == "imagenet" else -7
    h, w = x.shape[-2:]
    k = 25
    padded = F.pad(x, (k, k, 0, 0))  # zero fill
    for i in range(y.shape[1]):
        dx = first + i
        moved = padded[..., :, k - dx : k - dx + w]  # content moves dx px right
        if crop is not None:
            top, left = round((h - crop) / 2), round((w - crop) / 2)
            moved = moved[..., top : top + crop, left : left + crop]
        assert torch.equal(y[:, i], moved), i
    assert torch.equal(y[:, -first], P.center_crop(x, y.shape[-2:]))  # shift 0 is the clean image
    if suite == "cifar10":  # circular shift agrees away from the wrapped columns
        assert torch.equal(y[:, 15][..., 8:], torch.roll(x, 8, dims=-1)[..., 8:])


def test_translate_moves_content_as_the_scripts_torchvision_affine_does():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = smooth(1, (32, 32))
    y = perturb(x, "translate", params="cifar10")
    img = Image.fromarray(as_uint8(x[0]))
    for i in (0, 3, 15):
        ref = tvf.affine(img, angle=0.0, translate=[i - 7, 0], scale=1.0, shear=[0.0, 0.0], fill=0)
        assert np.array_equal(as_uint8(y[0, i]), np.asarray(ref))


# ---------------------------------------------------------------------------------------------- affine family


def old_torchvision_shear_matrix(shear_deg: float, h: int, w: int) -> list[float]:
    """torchvision 0.2 ``affine(angle=0, scale=1, shear=s)`` inverse matrix, in closed form."""
    s = math.radians(shear_deg)
    cy = h * 0.5 + 0.5
    return [1.0, math.tan(s), -math.tan(s) * cy, 0.0, 1.0 / math.cos(s), cy - cy / math.cos(s)]


def pil_affine(img: Image.Image, angle: float, scale: float, shear: float) -> np.ndarray:
    """The script's call, torchvision 0.2 ``affine(..., resample=BILINEAR)``, through Pillow."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    w, h = img.size
    if shear:
        return np.asarray(
            img.transform(
                (w, h), Image.AFFINE, old_torchvision_shear_matrix(shear, h, w), Image.BILINEAR, fillcolor=0
            )
        )
    # without shear today's matrix is the old one once the old centre (W/2 + 1/2, H/2 + 1/2) is passed
    out = tvf.affine(
        img,
        angle=angle,
        translate=[0, 0],
        scale=scale,
        shear=[0.0, 0.0],
        fill=0,
        interpolation=tvf.InterpolationMode.BILINEAR,
        center=[w * 0.5 + 0.5, h * 0.5 + 0.5],
    )
    return np.asarray(out)


def test_affine_matrix_is_torchvision_02():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    h, w = 41, 46
    for angle, scale in [(15, 1.0), (-7, 1.0), (0, 0.4), (3, 1.15)]:
        ref = tvf._get_inverse_affine_matrix([w * 0.5 + 0.5, h * 0.5 + 0.5], angle, [0, 0], scale, [0.0, 0.0])
        np.testing.assert_allclose(P.affine_matrix(angle, (0, 0), scale, 0.0, (h, w)), ref, atol=1e-12)
    for s in (-15, 4, 15):
        np.testing.assert_allclose(
            P.affine_matrix(0, (0, 0), 1.0, s, (h, w)), old_torchvision_shear_matrix(s, h, w), atol=1e-12
        )


@pytest.mark.parametrize("name", ["rotate", "scale", "shear"])
@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_affine_sequences_match_pillow_within_one_level(name, suite):
    x, crop = suite_input(suite, n=1)
    y = perturb(x, name, params=suite, crop=crop)
    img = Image.fromarray(as_uint8(x[0]))
    worst = 0.0
    for i in range(0, 31, 3):
        if name == "rotate":
            ref = pil_affine(img, i - 15, 1.0, 0)
        elif name == "scale":
            ref = pil_affine(img, 0, (i * 2.5 + 40) / 100 if suite == "imagenet" else (i * 2 + 70) / 100, 0)
        else:
            ref = pil_affine(img, 0, 1.0, i - 15)
        ref = torch.from_numpy(ref.copy()).permute(2, 0, 1)
        worst = max(worst, levels(y[0, i], P.center_crop(ref, y.shape[-2:]).double() / 255))
    assert worst <= 1.01  # Pillow quantises its bilinear result to 8 bits


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_zoom_blur_is_the_running_mean_of_pillow_zooms(suite):
    x, crop = suite_input(suite, n=1)
    y = perturb(x, "zoom_blur", params=suite, crop=crop)
    img = Image.fromarray(as_uint8(x[0]))
    side = crop or 32
    avg = P.center_crop(x[0].double(), (side, side)).clone()
    assert torch.equal(y[0, 0], P.center_crop(x[0], (side, side)))  # frame 0 is clean
    for i in range(1, 31):
        zoomed = torch.from_numpy(pil_affine(img, 0, 1 + 0.004 * i, 0).copy()).permute(2, 0, 1).double() / 255
        avg += P.center_crop(zoomed, (side, side))
        assert levels(y[0, i], avg / (i + 1)) <= 1.01


@pytest.mark.parametrize("name, middle", [("rotate", 15), ("shear", 15), ("scale", 24)])
def test_identity_frames_are_the_clean_image(name, middle):
    x = smooth(2, BASE)
    y = perturb(x, name, crop=CROP)
    torch.testing.assert_close(y[:, middle], P.center_crop(x, (CROP, CROP)), atol=1e-5, rtol=0)
    z = perturb(x[..., :32, :32], name, params="cifar10")
    torch.testing.assert_close(z[:, 15], x[..., :32, :32], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- tilt


def published_tilt_matrix(deg: float, h: int, w: int) -> np.ndarray:
    """The scripts' homography P2 @ T @ RX @ RY @ P1, in NumPy."""
    phi = theta = np.deg2rad(deg)
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(theta), -np.sin(theta), 0],
            [0, np.sin(theta), np.cos(theta), 0],
            [0, 0, 0, 1],
        ]
    )
    ry = np.array(
        [[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]]
    )
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return p2 @ t @ rx @ ry @ p1


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_tilt_matches_opencv_warp_perspective(suite):
    cv2 = pytest.importorskip("cv2")
    x, crop = suite_input(suite, n=1)
    y = perturb(x, "tilt", params=suite, crop=crop)
    arr = as_uint8(x[0])
    h, w = arr.shape[:2]
    step = 1.0 if suite == "imagenet" else 0.75
    for i in range(0, 31, 2):
        m = published_tilt_matrix(step * (i - 15), h, w)
        np.testing.assert_allclose(P.tilt_matrix(step * (i - 15), (h, w)).numpy(), m, rtol=1e-12, atol=1e-9)
        ref = torch.from_numpy(cv2.warpPerspective(arr, m, (w, h))).permute(2, 0, 1)
        diff = (y[0, i] * 255 - P.center_crop(ref, y.shape[-2:]).float()).abs()
        assert diff.max() <= 1.0, i  # OpenCV's 1/32-pixel fixed-point bilinear, border rows included


# ---------------------------------------------------------------------------------------------- photometric


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_gaussian_blur_matches_scikit_image(suite):
    filters = pytest.importorskip("skimage.filters")
    x, crop = suite_input(suite, n=1)
    x = x.double()
    y = perturb(x, "gaussian_blur", params=suite, crop=crop)
    img = P.center_crop(x[0], y.shape[-2:]).permute(1, 2, 0).numpy()
    sigma0, step, truncate = (0.25, 0.035, 6.0) if suite == "imagenet" else (0.3, 0.015, 7.0)
    for i in (0, 10, 30):
        ref = filters.gaussian(img, sigma=sigma0 + step * i, channel_axis=-1, truncate=truncate)
        np.testing.assert_allclose(y[0, i].permute(1, 2, 0).numpy(), ref, atol=1e-12)
    assert not torch.equal(y[0, 0], P.center_crop(x[0], y.shape[-2:]))  # frame 0 is already blurred


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_brightness_matches_scikit_image_hsv(suite):
    color = pytest.importorskip("skimage.color")
    x, crop = suite_input(suite, n=1)
    x = x.double()
    y = perturb(x, "brightness", params=suite, crop=crop)
    img = P.center_crop(x[0], y.shape[-2:]).permute(1, 2, 0).numpy()
    per = 2 if suite == "imagenet" else 1.5
    for i in (0, 7, 15, 30):
        hsv = color.rgb2hsv(img)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + (i - 15) * per / 100.0, 0, 1)
        np.testing.assert_allclose(y[0, i].permute(1, 2, 0).numpy(), color.hsv2rgb(hsv), atol=1e-9)


# ---------------------------------------------------------------------------------------------- noise


def test_noise_from_draws_matches_numpy():
    x = smooth(2, (8, 8)).double()
    z = torch.randn(2, 30, 3, 8, 8, generator=seeded(1), dtype=torch.float64)
    xn, zn = x.numpy()[:, None], z.numpy()
    g = P._gaussian_from_draws(x, 0.05, z.clone())
    np.testing.assert_allclose(g[:, 1:].numpy(), np.clip(xn + 0.05 * zn, 0, 1), atol=1e-15)
    s = P._speckle_from_draws(x, 0.1, z.clone())
    np.testing.assert_allclose(s[:, 1:].numpy(), np.clip(xn + xn * 0.1 * zn, 0, 1), atol=1e-15)
    assert torch.equal(g[:, 0], x) and torch.equal(s[:, 0], x)


LEVELS = {
    "gaussian_noise": {"imagenet": (0.03, 0.05, 0.08), "cifar10": (0.02, 0.04, 0.06)},
    "speckle_noise": {"imagenet": (0.05, 0.10, 0.15), "cifar10": (0.05, 0.07, 0.10)},
    "shot_noise": {"imagenet": (300, 120, 60), "cifar10": (700, 400, 200)},
}


@pytest.mark.parametrize("name", list(LEVELS))
@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_noise_frames_are_anchored_independent_and_at_the_published_level(name, suite):
    x = torch.full((1, 3, 32, 32), 0.5).double()
    x[..., 16:, :] = 0.3
    spread = []
    for d in (1, 2, 3):
        y = perturb(x, name, generator=seeded(d), params=suite, difficulty=d)
        assert torch.equal(y[:, 0], x)  # frame 0 is the clean image
        noise = y[:, 1:] - x[:, None]
        c = LEVELS[name][suite][d - 1]
        for value in (0.5, 0.3):
            sel = noise[(x[:, None] == value).expand_as(noise)]
            std = {"gaussian_noise": c, "speckle_noise": c * value, "shot_noise": math.sqrt(value / c)}
            expected = std[name]
            assert abs(float(sel.std()) / expected - 1) < 0.05, (d, value)
            assert abs(float(sel.mean())) < 0.1 * expected
        # frames are fresh draws: not equal, and uncorrelated with each other
        corr = torch.corrcoef(noise[0].reshape(30, -1))
        assert (corr - torch.eye(30, dtype=corr.dtype)).abs().max() < 0.1
        spread.append(float(noise.abs().mean()))
    assert spread[0] < spread[1] < spread[2]  # difficulty raises the noise


@pytest.mark.parametrize("name", RANDOM)
def test_random_sequences_are_seeded(name):
    x = smooth(2, (16, 16))  # CIFAR-10-P's spatter smooths little enough for liquid to show at 16 px
    a = perturb(x, name, generator=seeded(5), params="cifar10")
    assert torch.equal(a, perturb(x, name, generator=seeded(5), params="cifar10"))
    assert not torch.equal(a, perturb(x, name, generator=seeded(6), params="cifar10"))
    torch.manual_seed(5)
    b = perturb(x, name, params="cifar10")
    torch.manual_seed(5)
    assert torch.equal(b, perturb(x, name, params="cifar10"))  # None uses (and follows) torch's global RNG


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("size", [(16, 16), (7, 5)])
def test_batch_consumes_the_generator_image_by_image(name, size):
    x = smooth(3, size)
    g = seeded(11)
    one_by_one = torch.cat([perturb(x[k : k + 1], name, generator=g, difficulty=2) for k in range(3)])
    assert torch.equal(perturb(x, name, generator=seeded(11), difficulty=2), one_by_one)


@pytest.mark.parametrize(
    "name", ["brightness", "gaussian_blur", "translate", "rotate", "tilt", "scale", "shear", "zoom_blur"]
)
def test_deterministic_sequences_ignore_generator_and_difficulty(name):
    x = smooth(2)
    a = perturb(x, name, params="cifar10")
    assert torch.equal(a, perturb(x, name, generator=seeded(1), params="cifar10", difficulty=3))
    torch.testing.assert_close(a[1:], perturb(x[1:], name, params="cifar10"), atol=1e-7, rtol=0)  # per image


@pytest.mark.parametrize(
    "name, middle",
    [("rotate", 15), ("shear", 15), ("tilt", 15), ("translate", 20), ("brightness", 15), ("scale", 24)],
)
def test_distance_from_the_middle_frame_grows_with_the_offset(name, middle):
    for suite, mid in (("imagenet", middle), ("cifar10", 7 if name == "translate" else 15)):
        x, crop = suite_input(suite, n=1)
        y = perturb(x, name, params=suite, crop=crop)
        dist = [float((y[:, mid + k] - y[:, mid]).abs().mean()) for k in (1, 3, 6)]
        assert dist[0] < dist[1] < dist[2], (suite, dist)


# --------------------------------------------------------------------------------- motion blur, snow, spatter


def imagecorruptions_module():
    """imagecorruptions' NumPy corruptions (a test-only reference; its import warns about pkg_resources)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("imagecorruptions.corruptions")


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_motion_blur_frames_match_the_numpy_imagemagick_stand_in(suite):
    ic = imagecorruptions_module()
    x, crop = suite_input(suite, n=1)
    y = perturb(x, "motion_blur", params=suite, crop=crop)
    arr = as_uint8(P.center_crop(x[0], y.shape[-2:]))
    radius, sigma, center, step = (10, 3, 30, 4) if suite == "imagenet" else (6, 1.8, 20, 9)
    for i in range(0, y.shape[1], 4):
        ref = np.clip(ic._motion_blur(arr, radius=radius, sigma=sigma, angle=step * (i - center)), 0, 255)
        assert levels(y[0, i], ref) <= 1e-3, i


def published_clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    ndimage = pytest.importorskip("scipy.ndimage")
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_snow_frames_match_the_published_loop_given_the_field(suite):
    ic = imagecorruptions_module()
    cv2 = pytest.importorskip("cv2")
    x = smooth(1, (32, 32)).double()
    p = get_perturbation("snow").params[suite]
    field = p["mu"] + p["s"] * torch.randn(1, 1, 32, 32, generator=seeded(4), dtype=torch.float64)
    y = P._snow_from_field(x, field, p, 31)
    img = x[0].permute(1, 2, 0).numpy()
    layer = published_clipped_zoom(field[0].permute(1, 2, 0).numpy(), p["zoom"])
    layer[layer < p["threshold"]] = 0
    layer = (np.clip(layer[..., 0], 0, 1) * 255).astype(np.uint8)
    gray = cv2.cvtColor(np.float32(img), cv2.COLOR_RGB2GRAY)[..., None]
    bright = 0.85 * img + 0.15 * np.maximum(img, gray * 1.5 + 0.5)
    for i in range(0, 31, 5):
        blurred = ic._motion_blur(layer, radius=p["radius"], sigma=p["sigma"], angle=i * 4 - 150)
        snow_i = (np.round(np.clip(blurred, 0, 255)) / 255.0)[..., None]
        ref = np.clip(bright + snow_i + np.rot90(snow_i, k=2), 0, 1)
        # the reference's grey is float32 (cv2.cvtColor), ours float64
        assert levels(y[0, i], torch.from_numpy(ref.copy()).permute(2, 0, 1)) <= 1.0 / 8, i


def published_spatter_frames(img: np.ndarray, field: np.ndarray, p, frames: int) -> list[np.ndarray]:
    """The ImageNet-P / CIFAR-10-P spatter loop with OpenCV and scikit-image (float, before np.uint8)."""
    cv2 = pytest.importorskip("cv2")
    filters = pytest.importorskip("skimage.filters")
    liquid = filters.gaussian(field, sigma=p["sigma"])
    liquid[liquid < p["threshold"]] = 0
    out = []
    for _ in range(frames):
        liquid_i = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid_i, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid_i * dist
        m = m / np.max(m) * p["k"]
        colour = np.array([175, 238, 238]) / 255.0
        out.append(np.clip(img + m[..., None] * colour, 0, 1))
        liquid = np.apply_along_axis(
            lambda col: np.convolve(col, np.array(p["kernel"]), mode="same"), 0, liquid
        )
    return out


@pytest.mark.parametrize("suite", ["imagenet", "cifar10"])
def test_spatter_frames_match_the_published_opencv_loop_given_the_field(suite):
    p = get_perturbation("spatter").params[suite]
    side = 64 if suite == "imagenet" else 32  # room for ImageNet-P's sigma 3.7 and 2 px / frame drift
    x = smooth(1, (side, side)).double()
    field = p["mu"] + p["s"] * torch.randn(1, 1, side, side, generator=seeded(2), dtype=torch.float64)
    y = P._spatter_from_field(x, field, p, 31)
    with np.errstate(invalid="ignore"):
        ref = published_spatter_frames(x[0].permute(1, 2, 0).numpy(), field[0, 0].numpy(), p, 31)
    assert not torch.equal(y[0, 0], x[0]) and not torch.equal(y[0, 0], y[0, 30])  # liquid shows and drifts
    for i in range(0, 31, 2):
        if np.isnan(ref[i]).any():  # the liquid has drifted out: the published mask divides 0 by 0
            assert i > 20 and torch.equal(y[0, i], x[0])
        else:
            assert levels(y[0, i], torch.from_numpy(ref[i]).permute(2, 0, 1)) <= 1e-3, i


@pytest.mark.parametrize("kernel", [(0.05, 0.1, 0.15, 0.7), (0.2, 0.8)])
def test_smear_is_numpy_convolve_same_down_the_columns(kernel):
    a = torch.rand(2, 1, 9, 5, generator=seeded(0), dtype=torch.float64)
    ref = np.apply_along_axis(lambda col: np.convolve(col, np.array(kernel), mode="same"), 2, a.numpy())
    np.testing.assert_allclose(P._smear(a, kernel).numpy(), ref, atol=1e-15)


@pytest.mark.parametrize("name", ["snow", "spatter"])
def test_field_is_drawn_once_per_image_as_documented(name):
    x = smooth(2, (32, 32))
    p = get_perturbation(name).params["cifar10"]
    g = seeded(9)
    dtype = x.dtype if name == "snow" else torch.float64
    field = p["mu"] + p["s"] * torch.stack(
        [torch.randn(1, 32, 32, generator=g, dtype=dtype) for _ in range(2)]
    )
    sequence = P._snow_from_field if name == "snow" else P._spatter_from_field
    assert torch.equal(perturb(x, name, generator=seeded(9), params="cifar10"), sequence(x, field, p, 31))
