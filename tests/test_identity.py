"""A study's identity is what changes its results: settings that say where or how fast work
runs (threads, CPUs per trial, mirrors, time-outs, paths) change no cell id, no sweep
fingerprint and no byte of the prepared data; settings that change results change them."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.data.prepare import prepare
from pipeline.params.data import DataParams
from pipeline.params.grid import expand
from pipeline.params.load import load_params, with_overrides
from pipeline.sweep.preflight import fingerprint
from tests.conftest import ROOT

PLACEMENT = {  # each changes no result
    "data.download_timeout_s": 5.0, "data.mirrors": ["file:///nowhere"], "data.raw_dir": "elsewhere",
    "data.summary": "results/other.json", "train.threads": 2, "train.device": "cpu",
    "train.checkpoint_every": 3, "sweep.cpus_per_trial": 2.0, "sweep.gpus_per_trial": 0.5,
    "sweep.max_concurrent_trials": 3, "sweep.max_failures": 4, "sweep.storage_path": "/tmp/ray",
    "cluster.num_cpus": 1, "evaluate.threads": 2, "tracking.uri": "sqlite:///x.db",
}
RESULTS = {  # each changes what some cell computes, or how cells are searched
    "train.epochs": 3, "model.hidden": [32], "objective.mmd.bandwidth": "median", "train.seed": 1,
    "sweep.trials_per_cell": 2, "sweep.seed": 1, "sweep.search": {}, "sweep.startup_trials": 3,
}


@pytest.fixture(scope="module")
def base(prepared_mnist):
    return with_overrides(load_params(ROOT / "params.yaml"), {"data.out_dir": str(prepared_mnist)})


def identity(params, data_dir):
    cells = expand(params)
    return sorted(c.id for c in cells), fingerprint(params, cells, data_dir)


@pytest.mark.parametrize("key", sorted(PLACEMENT))
def test_a_placement_setting_keeps_every_cell_and_the_fingerprint(base, prepared_mnist, key):
    assert identity(with_overrides(base, {key: PLACEMENT[key]}), prepared_mnist) == \
        identity(base, prepared_mnist)


@pytest.mark.parametrize("key", sorted(RESULTS))
def test_a_result_setting_changes_the_fingerprint(base, prepared_mnist, key):
    assert identity(with_overrides(base, {key: RESULTS[key]}), prepared_mnist)[1] != \
        identity(base, prepared_mnist)[1]


def test_the_base_value_of_a_searched_key_is_part_of_a_cell_only_where_a_trial_runs_it(base, prepared_mnist):
    assert "train.lr" in base.sweep.search and base.sweep.first_trial_at_base
    # the first trial of every cell runs the base lr: a new base lr is a new cell
    assert identity(with_overrides(base, {"train.lr": 0.002}), prepared_mnist)[0] != \
        identity(base, prepared_mnist)[0]
    free = with_overrides(base, {"sweep.first_trial_at_base": False})
    same = identity(with_overrides(free, {"train.lr": 0.002}), prepared_mnist)
    assert same == identity(free, prepared_mnist)
    unsearched = with_overrides(base, {"sweep.search": {}})
    assert identity(with_overrides(unsearched, {"train.lr": 0.002}), prepared_mnist)[0] != \
        identity(unsearched, prepared_mnist)[0]


def test_the_same_configuration_from_two_grids_is_one_cell(base):
    grids = {"a": {"divergence": ["mmd"], "alpha": [1.0], "lambda": [1000.0]},
             "b": {"method": [{"divergence": "mmd", "alpha": 1, "lambda": 1000}], "decoder": ["mlp"]}}
    cells = expand(with_overrides(base, {"sweep.grids": grids}))
    assert len(cells) == 1 and cells[0].grids == ("a", "b")


def test_the_data_content_is_part_of_the_fingerprint(base, prepared_mnist, mnist_raw, tmp_path):
    other = tmp_path / "prepared"
    prepare(DataParams(raw_dir=str(mnist_raw), out_dir=str(other), summary=str(tmp_path / "s.json"),
                       download=False, split_seed=1))
    cells = expand(base)
    assert fingerprint(base, cells, other) != fingerprint(base, cells, prepared_mnist)


def test_prepared_files_are_byte_identical_under_placement_settings(mnist_raw, tmp_path):
    """The Parquet metadata keeps only what changes the data: a new mirror or time-out rewrites
    the files byte for byte, so DVC sees an unchanged output and reruns nothing after it."""
    def digests(name: str, **changes) -> dict[str, str]:
        out = tmp_path / name
        prepare(DataParams(raw_dir=str(mnist_raw), out_dir=str(out), summary=str(tmp_path / f"{name}.json"),
                           download=False, **changes))
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}

    assert digests("a") == digests("b", download_timeout_s=3.0, mirrors=["http://127.0.0.1:9/"])
    assert digests("a")["train.parquet"] != digests("c", split_seed=5)["train.parquet"]
