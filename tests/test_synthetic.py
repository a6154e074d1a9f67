"""The built-in synthetic set (``--data synthetic:SPLIT``): deterministic, balanced, aliasing-prone."""

from __future__ import annotations

import pytest
import torch

from shiftattack.data import load_dataset
from shiftattack.data.synthetic import SPLIT_SIZES, SYNTHETIC_CLASSES, synthetic_images
from shiftattack.errors import SpecError


def test_images_depend_only_on_split_and_index():
    a = load_dataset("synthetic:test", limit=40)
    b = synthetic_images("test", a.indices[5:9])
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images[5:9], b.images)
    assert torch.equal(load_dataset("synthetic:test", limit=40).images, a.images)
    assert not torch.equal(synthetic_images("train", [0]).images, synthetic_images("test", [0]).images)
    assert a.classes == SYNTHETIC_CLASSES and a.source == "synthetic:test"


def test_limit_is_class_balanced_and_default_split_is_train():
    d = load_dataset("synthetic", limit=80)
    assert torch.bincount(d.labels, minlength=8).tolist() == [10] * 8
    assert d.source == "synthetic"
    assert torch.equal(d.images, load_dataset("synthetic:train", limit=80).images)


def test_classes_differ_and_images_are_not_flat():
    d = synthetic_images("train", range(64))
    x = d.images.double() / 255
    assert float(x.std(dim=(1, 2, 3)).min()) > 0.03  # every image has structure
    means = torch.stack([x[d.labels == k].mean(0) for k in range(8)])
    assert means.shape == (8, 3, 32, 32)


def test_fine_gratings_alias_under_stride_two():
    """Energy near Nyquist: a stride-2 subsampling of a grating changes with a 1-px shift."""
    d = synthetic_images("train", range(0, 32, 8))  # class 0 gratings
    x = d.images.double() / 255
    sub0, sub1 = x[..., ::2, ::2], torch.roll(x, 1, -1)[..., ::2, ::2]
    assert float((sub0 - sub1).abs().mean()) > 0.05


@pytest.mark.parametrize("spec", ["synthetic:valid", "synthetic:"])
def test_bad_split_is_refused(spec):
    with pytest.raises(SpecError, match="split"):
        load_dataset(spec)


def test_bad_index_and_size_are_refused():
    with pytest.raises(SpecError, match="index"):
        synthetic_images("test", [SPLIT_SIZES["test"]])
    with pytest.raises(SpecError, match="8 px"):
        synthetic_images("test", [0], size=4)
