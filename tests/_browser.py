"""A headless Chromium for the tests that render HTML pages (reports, leaderboards)."""

from __future__ import annotations

import subprocess

import pytest


def browser() -> str:
    """A headless Chromium: found on PATH, or installed with apt where this process may (root)."""
    import os
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("no headless Chromium: install Debian's chromium (apt-get install chromium) to run this test")


def dump_dom(page) -> str:
    """The page's DOM after its scripts ran (figures decoded), in headless Chromium."""
    return subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
