"""Headless Chromium (Debian's `chromium`) for checking the report as a reader sees it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("Chromium not installed (Debian package 'chromium'; .ci/run installs it)")
    return exe


def screenshot(page: Path, out: Path, profile: Path, size: str = "1280,4000") -> Path:
    subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                    f"--screenshot={out}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    return out


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM after Chromium loaded and laid out the page (not the file's bytes)."""
    done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           page.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    return done.stdout.decode()
