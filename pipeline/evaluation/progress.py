"""Progress of the evaluate stage: a line per cell as it starts (with its projected time) and
ends (actual vs projected), and an overall tqdm bar on stderr with the time left.

The projection per cell is the stage's own plan (pipeline.evaluation.plan);
the time left is the projected seconds of the cells still to do plus the finished cells' mean
overrun of their projection (or, without a plan, the mean time per finished cell).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from pipeline.infra.timing import duration


class EvalProgress:
    def __init__(self, jobs: list, plan: dict[str, float], log=print, slots: int = 1, stream=None):
        from tqdm import tqdm

        self.plan, self.log, self.slots = plan, log, max(1, slots)
        self.total = len(jobs)
        self.left = {j.cell: plan.get(j.cell) for j in jobs}
        self.started: dict[str, float] = {}
        self.spent = self.planned_done = 0.0
        self.done = 0
        self.bar = tqdm(total=self.total, desc="evaluation", unit="cell", file=stream or sys.stderr,
                        dynamic_ncols=True, mininterval=1.0, bar_format="{desc}: {n}/{total} cells "
                        "|{bar:20}| {elapsed} elapsed{postfix}")
        self._eta()

    def time_left(self) -> float | None:
        """Seconds left: each cell still to do (a running one in full) at its projection plus
        the mean overrun of the finished cells over theirs (what the plan does not model, e.g.
        the classifier's training), over the concurrent slots; without a plan, the mean time
        of a finished cell."""
        todo = list(self.left.values())
        if all(s is not None for s in todo):
            extra = max(0.0, (self.spent - self.planned_done) / self.done) if self.done else 0.0
            return sum(s + extra for s in todo) / self.slots
        return self.spent / self.done * len(todo) / self.slots if self.done else None

    def _eta(self) -> None:
        self.bar.set_postfix_str(f"time left ~{duration(self.time_left())}")

    def start(self, job) -> None:
        self.started[job.cell] = time.perf_counter()
        plan = self.plan.get(job.cell)
        self.log(f"{job.label}: evaluating {job.checkpoint}"
                 + (f" (projected {duration(plan)})" if plan is not None else ""))

    def finish(self, job) -> float:
        seconds = time.perf_counter() - self.started.pop(job.cell, time.perf_counter())
        plan = self.left.pop(job.cell, None)
        self.done += 1
        self.spent += seconds
        self.planned_done += plan or 0.0
        self.log(f"{job.label}: done in {duration(seconds)}"
                 + (f" (projected {duration(plan)})" if plan is not None else ""))
        self.bar.update(1)
        self._eta()
        return seconds

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> EvalProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
