"""Headless Chromium (Debian's `chromium`) for checking pages as a reader sees them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
# No network: every host name fails to resolve and every proxied request goes to a closed port
# (Chromium still reaches 127.0.0.1 and file:// pages).
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
           "--proxy-bypass-list=<-loopback>;127.0.0.1"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("Chromium not installed (Debian package 'chromium'; .ci/run installs it)")
    return exe


def _target(page: Path | str) -> str:
    return page if isinstance(page, str) else page.resolve().as_uri()


def _flags(profile: Path, offline: bool, wait_ms: int | None) -> list[str]:
    extra = OFFLINE if offline else []
    # Virtual time lets scripts and requests finish before the DOM or screenshot is taken.
    budget = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    return [chromium(), *FLAGS, *extra, *budget, f"--user-data-dir={profile}"]


def screenshot(page: Path | str, out: Path, profile: Path, size: str = "1280,4000", offline: bool = False,
               wait_ms: int | None = None) -> Path:
    subprocess.run([*_flags(profile, offline, wait_ms), f"--window-size={size}", f"--screenshot={out}",
                    _target(page)], check=True, capture_output=True, timeout=180)
    return out


def rendered_dom(page: Path | str, profile: Path, offline: bool = False, wait_ms: int | None = None) -> str:
    """The DOM after Chromium loaded and laid out the page (not the file's bytes)."""
    done = subprocess.run([*_flags(profile, offline, wait_ms), "--dump-dom", _target(page)],
                          check=True, capture_output=True, timeout=180)
    return done.stdout.decode()
