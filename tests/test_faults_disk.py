"""A full disk (issue 13): refused before the sweep when predictable, named when it happens.

Needs a small real filesystem: a tmpfs mounted for the test (root only; skipped otherwise,
with the reason).
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.sweep.outcome import FAILED, INFRASTRUCTURE
from tests.sweep_helpers import tiny_params, trials

pytestmark = pytest.mark.faults
GRIDS = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3]}}


@pytest.fixture
def small_fs(tmp_path):
    """A mounted tmpfs directory of the requested size (MiB)."""
    mounted = []

    def make(mib: int):
        path = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        path.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_sweep_that_cannot_fit_is_refused_before_it_starts(tmp_path, prepared_mnist, small_fs):
    from pipeline.sweep.run import run_sweep
    from pipeline.sweep.space import SpaceError

    disk = small_fs(4)
    params = tiny_params(tmp_path, prepared_mnist, GRIDS, extra={"sweep.storage_path": str(disk / "ray")})
    with pytest.raises(SpaceError, match=f"no space left on {disk} for this sweep: sweep.storage_path needs "
                                         r"about \d+ MiB .* 4 MiB free"):
        run_sweep(params, tmp_path)
    assert list(disk.iterdir()) == [] and not (tmp_path / "sweep").exists()  # nothing started


def test_a_disk_that_fills_mid_sweep_is_named_and_leaves_no_temporary_files(tmp_path, prepared_mnist,
                                                                            small_fs):

    from pipeline.sweep.run import run_sweep
    from pipeline.sweep.signals import SweepIncomplete

    disk = small_fs(1)
    params = tiny_params(tmp_path, prepared_mnist, GRIDS, max_concurrent_trials=1,
                         extra={"sweep.storage_path": str(disk / "ray"), "sweep.disk_margin": 0.0})
    try:
        why = f"failed for a reason outside the model: .*no space left on {disk}"
        with pytest.raises(SweepIncomplete, match=why) as err:
            run_sweep(params, tmp_path)
    finally:
        stop_ray()
    assert err.value.exit_code == 1 and "resumes the sweep" in str(err.value)
    rows = trials(tmp_path)
    broken = [r for r in rows if r["status"] == FAILED]
    assert broken and all(r["failure"] == INFRASTRUCTURE and f"no space left on {disk}" in r["error"]
                          for r in broken), rows
    assert [p for p in disk.rglob(".tmp-*")] == []  # the temporary files of failed writes are gone


def test_a_damaged_checkpoint_is_named_with_the_command_that_retrains_just_its_cell(tmp_path, prepared_mnist):
    import json
    import sys

    from pipeline.evaluation.study import evaluate_study
    from pipeline.sweep.run import run_sweep
    from pipeline.sweep.space import SpaceError, file_digest, verify_checkpoint
    from pipeline.train.checkpoint import load
    from tests.conftest import ROOT
    from tests.sweep_helpers import best, write_params

    params = tiny_params(tmp_path, prepared_mnist, GRIDS)
    try:
        run_sweep(params, tmp_path)
    finally:
        stop_ray()
    (cell, entry), (other, kept) = best(tmp_path).items()
    path = tmp_path / entry["checkpoint"] / "checkpoint.pt"
    assert file_digest(path) == {"bytes": entry["checkpoint_bytes"], "sha256": entry["checkpoint_sha256"]}
    path.write_bytes(path.read_bytes()[:1000])  # truncated after the sweep
    with pytest.raises(SpaceError, match=f"cell {cell} .* is damaged .* `infovae retrain --cell {cell}`"):
        evaluate_study(params, tmp_path, log=lambda _m: None)
    yaml_path = write_params(tmp_path / "params.yaml", params)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "retrain", "--cell", cell, "--params",
                           str(yaml_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    after = best(tmp_path)
    verify_checkpoint(tmp_path, cell, after[cell])  # the new checkpoint matches its new digest
    assert load(path)["epoch"] == 2 and after[other] == kept  # only that cell was retrained
    assert json.loads(done.stdout.splitlines()[-1])["cell"] == cell
