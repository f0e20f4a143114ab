"""What became of each trial, and whether the sweep's work is complete.

A trial is FINISHED when it reached its own budget (the cell's resolved train.epochs, not the
global one), KILLED only when the scheduler stopped it early, FAILED when it errored, and
INTERRUPTED when a signal ended the sweep before it did. A failure is a *result* only when
the model itself failed (TrainingDiverged: a NaN loss); any other error (no space left, I/O,
a lost Ray worker or tracking server, a bug) means the sweep did not do its work, so the
stage exits non-zero and DVC does not record it: the next `dvc repro` resumes the sweep, and
retries those trials from their last checkpoint.

The reason is read from the exception Tune pickled into the trial's *local* directory, which
`Trial.handle_error` writes before any callback runs; `Trial.get_error()` reads the copy in
the storage path, which Tune syncs later, so it was sometimes still missing ("unknown error").
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINISHED, KILLED, FAILED, INTERRUPTED = "FINISHED", "KILLED", "FAILED", "INTERRUPTED"
STATUSES = (FINISHED, KILLED, FAILED, INTERRUPTED)
DIVERGED, INFRASTRUCTURE, ERROR = "diverged", "infrastructure", "error"
RESULT_ERRORS = ("TrainingDiverged",)  # failures that are the model's own result
INFRA_ERRORS = ("OSError", "IOError", "ArrowIOError", "RayActorError", "ActorDiedError", "WorkerCrashedError",
                "NodeDiedError", "OutOfMemoryError", "ActorUnavailableError", "TrackingError",
                "MlflowException", "ConnectionError", "RaySystemError", "ObjectLostError")
INTERRUPTIONS = ("KeyboardInterrupt", "SystemExit", "TaskCancelledError", "RayActorError", "ActorDiedError",
                 "WorkerCrashedError")
# MLflow run statuses are FINISHED, KILLED, FAILED; an interrupted trial's run is KILLED and tagged.
MLFLOW_STATUS = {FINISHED: "FINISHED", KILLED: "KILLED", FAILED: "FAILED", INTERRUPTED: "KILLED"}
INTERRUPTED_TAG, FAILURE_TAG, ERROR_TAG = "infovae.interrupted", "infovae.failure", "infovae.error"


@dataclass(frozen=True)
class Outcome:
    status: str
    kind: str | None = None  # FAILED: diverged | infrastructure | error
    reason: str | None = None

    def tags(self) -> dict[str, str]:
        """The MLflow tags that say why a run ended as it did."""
        if self.status == INTERRUPTED:
            return {INTERRUPTED_TAG: self.reason or "the sweep was interrupted"}
        if self.status == FAILED:
            return {ERROR_TAG: self.reason or "unknown error", FAILURE_TAG: self.kind or ERROR}
        return {}


def budget(trial) -> int:
    """The epochs this trial was to train: its own resolved train.epochs."""
    return int(trial.config["spec"]["train"]["epochs"])


def _cause(err: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError.cause), if it unpickled."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


def trial_exception(trial) -> BaseException | str | None:
    """The trial's last error: the pickled exception, else the text Tune wrote, local copy first."""
    import cloudpickle

    local = getattr(trial, "local_path", None)
    meta = trial.run_metadata
    if local and meta.pickled_error_filename:
        try:
            with open(Path(local) / meta.pickled_error_filename, "rb") as f:
                return _cause(cloudpickle.load(f))
        except Exception:  # noqa: BLE001 - an exception class missing here: fall back to the text
            pass
    if local and meta.error_filename and (Path(local) / meta.error_filename).is_file():
        return (Path(local) / meta.error_filename).read_text()
    text = trial.get_error()
    return str(text) if text else None


def no_space(path: str | None) -> str:
    return f"no space left on {mount_point(path) if path else 'the device'}" + (
        f" (writing {path})" if path else "")


def mount_point(path: str | os.PathLike) -> str:
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def describe(err: BaseException | str | None) -> tuple[str, str]:
    """(kind, one-line reason) of an error."""
    if err is None:
        return ERROR, "unknown error (Tune recorded no exception)"
    if isinstance(err, BaseException):
        name = type(err).__name__
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return INFRASTRUCTURE, f"{name}: {no_space(err.filename)}"
        text = f"{name}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}".rstrip(": ")
        names = [c.__name__ for c in type(err).__mro__]
    else:
        text = error_reason(err)
        names = [text.split(":", 1)[0].rsplit(".", 1)[-1]]
        if "No space left on device" in err or "no space left on" in err:
            return INFRASTRUCTURE, text
    if any(n in RESULT_ERRORS for n in names):
        return DIVERGED, text
    if any(n in INFRA_ERRORS for n in names):
        return INFRASTRUCTURE, text
    return ERROR, text


def error_reason(text: str | None) -> str:
    """The last 'SomeError: message' line of a traceback, e.g. the TrainingDiverged reason."""
    if not text:
        return "unknown error"
    pattern = re.compile(r"\s*[\w.]+(Error|Exception|Diverged)\b:")
    lines = [ln.strip() for ln in text.splitlines() if pattern.match(ln)]
    return lines[-1] if lines else text.strip().splitlines()[-1]


def outcome(trial, signal_name: str | None = None, status: str | None = None) -> Outcome:
    """The trial's status and why. `signal_name`: the signal that interrupted the sweep, if any
    (an error caused by it, e.g. a worker killed by the same Ctrl-C, is an interruption).
    `status`: Tune's status to assume (on_trial_complete runs before Tune sets TERMINATED).

    Tune marks a result `done` when the trial returned or the scheduler stopped it; when an
    interrupted fit ends, Tune also stops the running trials (TERMINATED, not done), after
    saving them as RUNNING in its state: those are INTERRUPTED, and resume on a rerun."""
    status = status or trial.status
    if status == "ERROR":
        err = trial_exception(trial)
        kind, reason = describe(err)
        names = [c.__name__ for c in type(err).__mro__] if isinstance(err, BaseException) else [reason]
        if signal_name and kind != DIVERGED and any(n.startswith(INTERRUPTIONS) for n in names):
            return Outcome(INTERRUPTED, None, f"{signal_name}: {reason}")
        return Outcome(FAILED, kind, reason)
    last = trial.last_result or {}
    if status == "TERMINATED" and int(last.get("epoch", 0)) >= budget(trial):
        return Outcome(FINISHED)
    if status == "TERMINATED" and last.get("done"):
        return Outcome(KILLED, None, "stopped early by the scheduler")
    # PENDING, RUNNING, PAUSED: Tune stopped before the trial ended (it resumes on a rerun)
    return Outcome(INTERRUPTED, None, f"{signal_name or 'the sweep'} ended before the trial did")


@dataclass
class Completion:
    complete: bool
    expected: int
    counts: dict[str, int]
    problems: list[str]  # the reasons of failures that are not results, most frequent first

    def paragraph(self, name: str, signal_name: str | None, resume: str) -> str:
        c = self.counts
        parts = [f"{c[FINISHED]} finished"]
        if c[KILLED]:
            parts.append(f"{c[KILLED]} stopped early by the scheduler")
        if c.get("diverged"):
            parts.append(f"{c['diverged']} diverged (a result, reported as FAILED)")
        if c[INTERRUPTED]:
            parts.append(f"{c[INTERRUPTED]} interrupted")
        if c.get("broken"):
            why = "; ".join(self.problems[:3])
            parts.append(f"{c['broken']} failed for a reason outside the model: {why}")
        missing = self.expected - sum(c[s] for s in STATUSES)
        if missing > 0:
            parts.append(f"{missing} not started")
        why = f"interrupted by {signal_name}" if signal_name else "incomplete"
        return (f"sweep {name} {why}: of {self.expected} trials, " + ", ".join(parts) + ". "
                f"Finished trials and checkpoints are kept; `{resume}` resumes the sweep (only unfinished "
                f"and failed trials run, from their last checkpoint).")


def completion(outcomes: list[Outcome], expected: int) -> Completion:
    counts: dict[str, Any] = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    broken = [o for o in outcomes if o.status == FAILED and o.kind != DIVERGED]
    counts["diverged"] = sum(o.status == FAILED and o.kind == DIVERGED for o in outcomes)
    counts["broken"] = len(broken)
    reasons: dict[str, int] = {}
    for o in broken:
        reasons[o.reason or "unknown error"] = reasons.get(o.reason or "unknown error", 0) + 1
    problems = [f"{r} ({n}x)" if n > 1 else r for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    complete = not broken and counts[INTERRUPTED] == 0 and len(outcomes) >= expected
    return Completion(complete, expected, counts, problems)
