"""Sample and reconstruction grids, one model per divergence, and the report's header."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd

from pipeline.params.vocab import divergence_label, divergence_order
from pipeline.report.data import EVALUATED, RECONSTRUCTIONS, SAMPLES, StudyInputs
from pipeline.report.doc import (
    Figure,
    Inline,
    Section,
    Text,
    experiment_link,
    missing,
    num,
    run_link,
    source,
    text,
)
from pipeline.report.tables import TABLE1_GRID


def _pick(inputs: StudyInputs, rows: pd.DataFrame) -> dict[str, Any] | None:
    """The cell to show: one with images, a Table 1 cell first, then the lowest test NLL."""
    def rank(r: dict[str, Any]) -> tuple[bool, float]:
        nll = r.get("test_nll")
        return (TABLE1_GRID not in str(r.get("grids", "")).split(","), float("inf") if missing(nll) else nll)

    shown = [r.to_dict() for _, r in rows.iterrows()
             if inputs.image(r["cell"], SAMPLES) or inputs.image(r["cell"], RECONSTRUCTIONS)]
    return min(shown, key=rank) if shown else None


def samples_section(inputs: StudyInputs) -> Section:
    section = Section("samples", "Samples and reconstructions")
    ok = inputs.metrics[inputs.metrics["status"] == EVALUATED]
    if ok.empty:
        section.blocks.append(Text("No evaluated cell: no samples to show.", "note"))
        return section
    divs = [str(inputs.setting(r.to_dict(), "divergence")) for _, r in ok.iterrows()]
    known = [d for d in divergence_order() if d in divs]
    chosen = []
    for div in known + sorted(set(divs) - set(known)):
        name = divergence_label(div)
        row = _pick(inputs, ok[[d == div for d in divs]])
        if row is None:
            section.blocks.append(Text(f"{name}: no sample or reconstruction grid was saved for any "
                                       "evaluated cell.", "note"))
            continue
        chosen.append(row)
        who = (f"{row['method']} ({row['cell_label']}; test NLL {num(row.get('test_nll'))} nats), trial "
               f"{text(row.get('trial_id'))}, MLflow run {text(row.get('mlflow_run_id'))}")
        for file, what in ((SAMPLES, "samples decoded from z ~ N(0, I) (pixel probabilities; drawn "
                                     "pixel by pixel for PixelCNN)"),
                           (RECONSTRUCTIONS, "validation images (odd rows) and their reconstructions from "
                                             "the posterior mean (even rows)")):
            path = inputs.image(row["cell"], file)
            if path is None:
                section.blocks.append(Text(f"{name}: {file} not saved for {row['cell_label']}.", "note"))
                continue
            section.blocks.append(Figure(f"{file.split('.')[0]}_{div}", path.read_bytes(),
                                         f"{name} — {what}. {who}.", pixelated=True,
                                         title=f"{name}: {file.split('.')[0]} of {row['cell_label']}"))
    if chosen:
        section.blocks.append(Text("One model per divergence: the Table 1 cell where it exists, else the "
                                   "evaluated cell with the lowest test NLL."))
        section.blocks.append(source(chosen, ui=inputs.mlflow_ui))
    return section


def header(inputs: StudyInputs, tracking_uri: str) -> list[tuple[str, Inline]]:
    s = inputs.sweep
    local = not tracking_uri.startswith(("http://", "https://"))
    browse = (f"run links open once `mlflow ui --backend-store-uri {tracking_uri}` is running in the "
              f"study's directory (it serves {inputs.mlflow_ui})" if local
              else f"links open the tracking server {tracking_uri}")
    grids = ", ".join(inputs.grids) or "none"
    return [
        ("Study", text(s.get("name"))),
        ("Dataset", text(s.get("dataset"))),
        ("Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("Sweep fingerprint", text(s.get("fingerprint"))),
        ("Ray Tune experiment", text(s.get("experiment"))),
        ("Grids", grids),
        ("Cells / trials", f"{text(s.get('cells'), '?')} cells, {text(s.get('trials'), '?')} trials "
                           f"({text(s.get('finished'), '0')} finished, {text(s.get('killed'), '0')} stopped "
                           f"early by ASHA, {text(s.get('failed'), '0')} failed), "
                           f"{text(s.get('epochs'), '?')} epochs each at most"),
        ("MLflow", ["experiment ", experiment_link(f"'{text(s.get('mlflow_experiment'))}'",
                                                   s.get("mlflow_experiment_id"), inputs.mlflow_ui),
                    " (", experiment_link("its models", s.get("mlflow_experiment_id"), inputs.mlflow_ui,
                                          "/models"),
                    "), sweep run ", run_link(s.get("parent_run_id"), inputs.mlflow_ui), f"; {browse}"]),
    ]
