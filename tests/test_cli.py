"""`infovae train` / `infovae evaluate`: one configuration from params.yaml, outside DVC."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import ROOT

TINY = ["model.hidden=[32]", "model.latent_dim=3", "train.epochs=1", "train.train_size=500",
        "train.validation_size=200", "train.diagnostics_size=200", "objective.adversarial.hidden=[16]"]
METHODS = {
    "kl": ["objective.divergence=kl"],
    "mmd": ["objective.divergence=mmd", "objective.alpha=1", "objective.lambda=1000"],
    "stein": ["objective.divergence=stein", "objective.alpha=1", "objective.lambda=1000"],
    "adversarial": ["objective.divergence=adversarial", "objective.alpha=1", "objective.lambda=100"],
}


def infovae(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def params_file(tmp_path, prepared_mnist):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["out_dir"] = str(prepared_mnist)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("method", sorted(METHODS))
def test_train_each_divergence_on_real_mnist(tmp_path, params_file, method):
    sets = [a for s in TINY + METHODS[method] for a in ("--set", s)]
    done = infovae("train", "--params", str(params_file), "--out", "run", *sets, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and history[0]["val_loss"] < 544  # below a random decoder's ~544 nats
    assert json.loads((run / "spec.json").read_text())["objective"]["divergence"] == method
    assert (run / "samples.png").stat().st_size > 1000 and (run / "reconstructions.png").is_file()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_resume_continues_and_evaluate_reads_the_checkpoint(tmp_path, params_file):
    sets = [a for s in TINY + METHODS["mmd"] for a in ("--set", s)]
    assert infovae("train", "--params", str(params_file), "--out", "run", *sets, cwd=tmp_path).returncode == 0
    again = infovae("train", "--params", str(params_file), "--out", "run", *sets, cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run; pass --resume" in again.stderr
    more = [a for s in [*TINY, *METHODS["mmd"], "train.epochs=2"] for a in ("--set", s)]
    done = infovae("train", "--params", str(params_file), "--out", "run", "--resume", *more, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2]
    quick = ["evaluate.loglik_k=20", "evaluate.loglik_test_size=100", "evaluate.loglik_train_size=0",
             "evaluate.latent_size=500", "evaluate.semisupervised_labels=[100]",
             "evaluate.semisupervised_repeats=1", "evaluate.semisupervised_pool=500",
             "evaluate.class_mismatch_samples=0"]
    sets = [a for s in quick for a in ("--set", s)]
    done = infovae("evaluate", "--params", str(params_file), "--checkpoint", "run", "--out", "m.json", *sets,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((tmp_path / "m.json").read_text())
    assert row["divergence"] == "mmd" and row["test_k"] == 20 and 50 < row["test_nll"] < 600


def test_bad_override_names_the_key(tmp_path, params_file):
    done = infovae("train", "--params", str(params_file), "--out", "run", "--set", "objective.alfa=1",
                   cwd=tmp_path)
    assert done.returncode == 2 and "objective.alfa: unknown key" in done.stderr
    assert not (tmp_path / "run").exists()
