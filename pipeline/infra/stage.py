"""Shared entry-point plumbing for the DVC stage scripts and the `infovae` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.infra.env import quiet_defaults
from pipeline.infra.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="the study's params file")
    return p


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a stage; a PipelineError becomes one clear message on stderr and exit status 2."""
    quiet_defaults()
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
