"""Ctrl-C and SIGTERM end a sweep promptly and visibly, through Ray Tune's own stop path.

Tune handles SIGINT itself (its first Ctrl-C stops the trials, saves the experiment state one
last time and returns from `fit`; a second one raises KeyboardInterrupt). SIGTERM, which a
scheduler, `timeout` or a closing terminal sends, would otherwise end Python at once and leave
every MLflow run RUNNING: here it takes the same path as Ctrl-C (it is re-raised as SIGINT).
The sweep then writes what it has, closes its runs KILLED with `infovae.interrupted`, and
exits non-zero with a summary (SweepIncomplete), so DVC does not record it and the next
`dvc repro` resumes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pipeline.errors import PipelineError

EXIT = {"SIGINT": 130, "SIGTERM": 143}


class SweepIncomplete(PipelineError):
    """The sweep did not do all its work (interrupted, or trials failed outside the model)."""

    def __init__(self, summary: str, signal_name: str | None = None):
        super().__init__(summary)
        self.exit_code = EXIT.get(signal_name or "", 1)


def resume_command(base: Path) -> str:
    return "dvc repro" if (base / "dvc.yaml").is_file() else "python stages/sweep.py"


class Interruption:
    """While active: SIGTERM is turned into SIGINT (Tune's graceful stop); `.name` is the
    signal that arrived first (SIGTERM only: Tune's own SIGINT handler is not ours to wrap,
    so a SIGINT is recognised afterwards from the trials Tune left unfinished)."""

    def __init__(self):
        self.name: str | None = None
        self._previous = None

    def _on_term(self, signum, frame) -> None:
        first = self.name is None
        self.name = self.name or "SIGTERM"
        if first:
            print("SIGTERM received: stopping the sweep (its state is saved; a rerun resumes)", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> Interruption:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
