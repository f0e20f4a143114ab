"""The plan against what happened: projected and actual time of the sweep and the evaluation.

Each stage projects its own time before it computes, from a calibration on the machine: the
sweep's plan (sweep.json "plan", pipeline.sweep.plan) before any trial, the evaluation's
(results/eval/plan.json, pipeline.evaluation.plan) on the trained models before it measures
them. The actual times are the sweep's Tune fit (sweep.json "seconds") and the evaluation's wall
time (the evaluate stage's DVC summary, "time.evaluate_s"; without it, the sum of the cells'
measured evaluation parts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.infra.timing import duration
from pipeline.report.data import StudyInputs
from pipeline.report.doc import Section, Table, Text

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
    projected = (inputs.eval_plan or {}).get("evaluate_s")
    total = fit + evaluate if fit is not None and evaluate is not None else None
    sweep = plan.get("sweep_s")
    planned = sweep + projected if sweep is not None and projected is not None else None
    rows = [["sweep (training)", duration(sweep), duration(fit), _ratio(fit, sweep)],
            ["evaluation", duration(projected), duration(evaluate), _ratio(evaluate, projected)],
            ["total", duration(planned), duration(total), _ratio(total, planned)]]
    line = plan.get("line", "")
    section.blocks.append(Text(f"The sweep stage's plan, printed before any training: {line}."))
    if inputs.eval_plan:
        line = inputs.eval_plan["line"]
        section.blocks.append(Text(f"The evaluate stage's, printed before it measured: {line}."))
    section.blocks.append(Table(["stage", "projected", "actual", "actual / projected"], rows,
                                "Projected from a calibration on this machine (pipeline/sweep/plan.py, "
                                "pipeline/evaluation/plan.py); actual sweep: Ray Tune's fit; actual "
                                f"evaluation: {how}. An evaluation served from its cache projects "
                                "only the cells it measured."))
    return section
