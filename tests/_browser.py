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


def screenshot(page, png, width: int = 1280, height: int = 900) -> str:
    """Save the first screen (``width`` x ``height`` px) of ``page`` to ``png``; return the DOM
    rendered in the same window size (so positions in it are those of the screenshot)."""
    common = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--virtual-time-budget=10000", f"--window-size={width},{height}"]
    subprocess.run([*common, f"--screenshot={png}", page.as_uri()], capture_output=True, timeout=120)
    return subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120).stdout
