"""The plan against what happened: projected and actual time of the sweep and the evaluation.

The projection is the sweep stage's plan (sweep.json "plan", pipeline.sweep.plan), made before
any trial from a calibration on the machine; the actual times are the sweep's Tune fit
(sweep.json "seconds") and the evaluation's wall time (the evaluate stage's DVC summary,
"time.evaluate_s"; without it, the sum of the cells' measured evaluation parts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.report.data import StudyInputs
from pipeline.report.doc import Section, Table, Text
from pipeline.sweep.plan import duration

SUMMARY = "results/metrics/evaluate.json"  # the evaluate stage's default summary


def _evaluate_seconds(inputs: StudyInputs, summary: Path) -> tuple[float | None, str]:
    try:
        seconds = json.loads(summary.read_text())["time"]["evaluate_s"]
        if seconds is not None:
            return float(seconds), "wall time of the evaluate stage"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cols = [c for c in inputs.metrics.columns if c.startswith("seconds_")]
    if not cols:
        return None, "not recorded"
    return float(inputs.metrics[cols].sum(numeric_only=True).sum()), "sum of the cells' evaluation parts"


def _ratio(actual: float | None, projected: float | None) -> str:
    if actual is None or not projected:
        return "—"
    return f"{actual / projected:.2f}x"


def timing_section(inputs: StudyInputs, summary_path: str | Path = SUMMARY) -> Section:
    section = Section("timing", "Plan and time")
    plan: dict[str, Any] = inputs.sweep.get("plan") or {}
    if not plan:
        section.blocks.append(Text("No plan recorded (a sweep from before plans were made).", "note"))
        return section
    fit = (inputs.sweep.get("seconds") or {}).get("fit")
    evaluate, how = _evaluate_seconds(inputs, inputs.base / summary_path)
    total = fit + evaluate if fit is not None and evaluate is not None else None
    rows = [["sweep (training)", duration(plan.get("sweep_s")), duration(fit),
             _ratio(fit, plan.get("sweep_s"))],
            ["evaluation", duration(plan.get("evaluate_s")), duration(evaluate),
             _ratio(evaluate, plan.get("evaluate_s"))],
            ["total", duration(plan.get("total_s")), duration(total), _ratio(total, plan.get("total_s"))]]
    line = plan.get("line", "")
    section.blocks.append(Text(f"The sweep stage's plan, printed before any training: {line}."))
    section.blocks.append(Table(["stage", "projected", "actual", "actual / projected"], rows,
                                f"Projected from a calibration on this machine (pipeline/sweep/plan.py); "
                                f"actual sweep: Ray Tune's fit; actual evaluation: {how}. An evaluation "
                                "served from its cache takes less than projected."))
    return section
