"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def cifar_zip() -> Path:
    """Path of the shared ``cifar10-jpeg.zip``; skips unless ``SHIFTATTACK_DATA_DIR`` holds it."""
    folder = os.environ.get("SHIFTATTACK_DATA_DIR", "")
    path = Path(folder) / "cifar10-jpeg.zip"
    if not folder or not path.is_file():
        pytest.skip("set SHIFTATTACK_DATA_DIR to the folder holding cifar10-jpeg.zip (../shared/data) to run")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core CI machine (about 3x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_cnn_weights(tmp_path_factory) -> Path:
    """A state_dict of ``small_cnn`` with seeded weights, so that separate processes load the same model."""
    from shiftattack.models import load_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "small_cnn.pt"
    torch.save(load_model("small_cnn").state_dict(), path)
    return path
