"""Shared entry-point plumbing for the DVC stage scripts and the `infovae` command."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from pipeline.errors import PipelineError
from pipeline.infra.env import quiet_defaults


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="the study's params file")
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the stage unwinds (temporary files removed, runs
    closed) instead of Python ending at once."""


def _on_term(signum, frame) -> None:
    raise Terminated


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a stage; a PipelineError becomes one clear message on stderr and exit status 2 (or
    the error's own `exit_code`: an interrupted sweep exits 130/143, like the signal)."""
    quiet_defaults()
    try:
        signal.signal(signal.SIGTERM, _on_term)
    except ValueError:  # not the main thread
        pass
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(getattr(err, "exit_code", 2))
    except KeyboardInterrupt as err:
        name = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
        print(f"interrupted by {name}: the stage's finished work is kept; rerun it (`dvc repro`) to "
              "continue", file=sys.stderr, flush=True)
        sys.exit(143 if name == "SIGTERM" else 130)
