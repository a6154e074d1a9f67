"""The published figures in shiftattack.report.published equal the project's reference copy (RESULTS.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shiftattack.report import published as P

REFERENCE = Path(
    os.environ.get("SHIFTATTACK_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference")
)
RESULTS = REFERENCE / "RESULTS.md"


@pytest.fixture(scope="module")
def text() -> str:
    if not RESULTS.is_file():
        pytest.skip(
            f"no reference copy at {RESULTS}; set SHIFTATTACK_REFERENCE to the folder holding RESULTS.md"
        )
    return RESULTS.read_text()


def _rows(text: str, after: str) -> list[list[str]]:
    """The rows of the first Markdown table after the line containing ``after`` (header excluded)."""
    lines = text[text.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_zhang_imagenet_table(text):
    rows = _rows(text, "## Zhang, ICML 2019")
    variants = ["Baseline", "Tri-3", "Tri-4", "Bin-5", "filter-4 fine-tuned"]
    assert len(rows) == len(P.ZHANG_IMAGENET)
    for row in rows:
        for variant, cell in zip(variants, row[1:], strict=True):
            acc, cons = (float(v) for v in cell.split("/"))
            assert P.ZHANG_IMAGENET[row[0]][variant] == (acc, cons), (row[0], variant)


def test_cmod_tables(text):
    rows = _rows(text, "ImageNet (one-crop error")
    for row in rows:
        for model, cell in zip(["AlexNet", "ResNet-34"], row[1:], strict=True):
            assert P.CMOD_IMAGENET[row[0]][model] == tuple(float(v) for v in cell.split("/"))
    rows = _rows(text, "CIFAR-10, ResNet-18")
    assert {r[0] for r in rows} == set(P.CMOD_CIFAR10)
    for row in rows:
        assert P.CMOD_CIFAR10[row[0]] == tuple(float(v) for v in row[1].split("/"))


def test_corruption_and_spatial_figures(text):
    section = text[text.index("## Corruption robustness") : text.index("## Spatial attacks")]
    numbers = [float(v) for v in re.findall(r"(\d+\.\d+)%", section)]
    h = P.HENDRYCKS
    assert numbers == [
        h["ResNet-50"]["imagenet_c_mce"],
        h["ResNet-50"]["imagenet_p_mfr"],
        h["ResNet-50"]["imagenet_p_mt5d"],
        h["ResNet-50 Bin-5"]["imagenet_p_mfr"],
        h["ResNet-50 Bin-5"]["imagenet_p_mt5d"],
    ]
    for row in _rows(text, "## Spatial attacks"):
        assert P.ENGSTROM[row[0]] == tuple(float(c.rstrip("%")) for c in row[1:])
