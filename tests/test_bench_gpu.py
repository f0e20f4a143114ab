"""bench/bench_gpu.py: its study projection counts what the sweep runs, and it runs on the
library's core alone (no ray, mlflow, optuna, dvc or pydantic importable), as on the GPU machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.gpu_projection import cells, project, read_params
from pipeline.params.compose import compose
from pipeline.params.grid import expand
from pipeline.params.vocab import AXIS_KEYS

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("ray", "mlflow", "optuna", "dvc", "pydantic")
BLOCKER = textwrap.dedent(f"""
    import sys
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError("blocked on the GPU machine: " + name)
    sys.meta_path.insert(0, Blocker())
""")


def test_projection_counts_ais_and_metric_grids_as_the_laptop_study_sets_them():
    raw = read_params(ROOT / "params.yaml")
    ev = raw["evaluate"]
    assert ev["metric_grids"]["loglik_ais"] == ["table1"] and ev["ais_test_size"] > 0
    work = cells(raw)
    is_only = ev["loglik_k"] * ((ev["loglik_test_size"] or 10000) + ev["loglik_train_size"])
    ais = ev["ais_test_size"] * (3 * (ev["ais_chains"] + 4) * (1 + (ev["ais_steps"] - 1) * ev["ais_leapfrog"])
                                 + ev["loglik_k"])
    assert {c.is_passes for c in work if "table1" in c.grids} == {is_only + ais}
    assert {c.is_passes for c in work if "table1" not in c.grids} == {is_only}
    assert {c.samples > 0 for c in work} == {True, False}
    assert all((c.samples > 0) == ("latent_dim" in c.grids) for c in work)


@pytest.mark.parametrize("profile", [None, "smoke", "ablation"])
def test_projection_counts_the_cells_the_sweep_expands(profile):
    raw = read_params(ROOT / "params.yaml", profile)
    params = compose(ROOT, [f"profile={profile}"] if profile else [])
    work = cells(raw)
    assert len(work) == len(expand(params))
    assert {c.trials for c in work} == {params.sweep.trials_per_cell}
    n_pix = sum(c.family == "pixelcnn" for c in work)
    assert n_pix == sum(cell.overrides.get("model.decoder") == "pixelcnn" for cell in expand(params))


def test_projection_known_answer_at_unit_rates():
    """At 1 image (pass, sample) per second the projected seconds are the work itself (the
    paper profile: one budget, every metric on every cell, no AIS)."""
    raw = read_params(ROOT / "params.yaml", "paper")
    work = cells(raw)
    one = {"mlp": 1.0, "conv": 1.0, "pixelcnn": 1.0}
    t = project(work, one, one, one)
    ev = raw["evaluate"]
    per_cell_passes = ev["loglik_k"] * ((ev["loglik_test_size"] or 10000) + ev["loglik_train_size"])
    assert t["loglik"] == len(work) * per_cell_passes
    assert t["sampling"] == len(work) * ev["class_mismatch_samples"]
    full = [c for c in work if c.train_images == 55000]
    assert full and all(c.epochs == raw["train"]["epochs"] for c in work)
    assert t["train"] == sum(c.trials * c.epochs * (c.train_images + c.val_images) for c in work)
    assert t["total"] == t["train"] + t["loglik"] + t["sampling"]


def test_the_vocabulary_imports_without_pydantic():
    """bench_gpu names grid axes through pipeline.params.vocab, which must not need pydantic."""
    code = BLOCKER + "from bench.gpu_projection import AXIS_KEYS; import json; print(json.dumps(AXIS_KEYS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == AXIS_KEYS


@pytest.mark.slow
def test_bench_gpu_runs_without_the_orchestration_packages():
    """The smoke profile's sizes, quick timings, on CPU, with the five packages unimportable."""
    code = BLOCKER + textwrap.dedent("""
        import runpy
        sys.argv = ["bench_gpu", "--quick", "--profile", "smoke", "--device", "cpu"]
        runpy.run_module("bench.bench_gpu", run_name="__main__")
        print("blocked still:", [m for m in sys.modules if m.split(".")[0] in BLOCKED])
    """).replace("BLOCKED", repr(BLOCKED))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "blocked still: []" in text
    assert "identical draws: True" in text
    assert text.count("fp32 eager (baseline)") == 6  # train and IS, three families
    assert "Projected study (smoke)" in text and "best measured paths: total" in text
