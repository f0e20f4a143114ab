"""scripts/readme_study.py writes the README's study section from a finished study's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_study_section_comes_from_the_run(tmp_path):
    study = tmp_path / "study"
    (study / "results/metrics").mkdir(parents=True)
    verdicts = {f"c{i}": {"verdict": v, "statistic": s} for i, (v, s) in enumerate(
        [("reproduced", 1.5), ("not reproduced", -0.25), ("inconclusive", None), ("reproduced", 2e-4),
         ("not reproduced", -0.03), ("inconclusive", 0.001)], 1)}
    (study / "results/metrics/claims.json").write_text(json.dumps({"claims": verdicts}))
    (study / "results/metrics/evaluate.json").write_text(json.dumps(
        {"cells": {"evaluated": 25, "failed": 1, "diverged": 1},
         "time": {"sweep_s": 1800, "evaluate_s": 900}}))
    (study / "params.yaml").write_text("profile: laptop\ntrain: {seed: 1}\n")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- study:start -->\nold\n<!-- study:end -->\nafter\n")
    subprocess.run([sys.executable, str(ROOT / "scripts/readme_study.py"), str(study), "--wall-min", "52.5",
                    "--readme", str(readme)], check=True, capture_output=True)
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- study:start -->")
    assert text.endswith("<!-- study:end -->\nafter\n") and "\nold\n" not in text
    assert ("profile `laptop`, seed 1, 27 cells (25 evaluated, 1 failed, 1 diverged); training 30.0 min, "
            "evaluation 15.0 min, the whole `dvc repro` 52.5 min") in text
    assert "| C1 (Table 1) |" in text and "| reproduced | +1.5 nats |" in text
    assert "| C3 (Sec. 5.4) |" in text and "| inconclusive | — |" in text
    assert "contradicted by their own Fig. 3A" in text  # the authors' support column
