"""The evaluate stage's plan projects a cell's evaluation from the calibrated costs of the metrics
that evaluate.metric_grids gives it: known answers with a made-up calibration."""

from __future__ import annotations

import pytest

from pipeline.evaluation.plan import PIXELS, cell_seconds
from pipeline.params.compose import compose
from pipeline.params.grid import expand
from tests.conftest import ROOT

FREE = {"loglik_image_s": 0.0, "decoder_rows_per_s": 1e6, "grad_rows_per_s": 1e30, "latent_s": 0.0}


def test_class_mismatch_is_projected_from_the_timed_sampler():
    params = compose(ROOT, [])  # the laptop study: class mismatch on latent_dim, no NLL there
    cell = next(c for c in expand(params) if c.grids == ("latent_dim",) and c.decoder == "pixelcnn")
    ev = params.evaluate
    n = ev.class_mismatch_samples
    assert cell_seconds(ev, "pixelcnn", {**FREE, "sample_image_s": 0.01}, 10000, cell.grids) \
        == pytest.approx(n * 0.01)
    # a calibration without the timed sampler: 784 decoder passes a sample
    assert cell_seconds(ev, "pixelcnn", FREE, 10000, cell.grids) == pytest.approx(n * PIXELS / 1e6)


def test_only_the_metrics_of_the_cells_grids_are_projected():
    params = compose(ROOT, [])
    ev = params.evaluate
    cal = {**FREE, "loglik_image_s": 1.0, "latent_s": 7.0, "sample_image_s": 0.0}
    table1 = cell_seconds(ev, "pixelcnn", cal, 10000, ("table1",))
    images = min(ev.loglik_test_size or 10000, 10000) + ev.loglik_train_size
    assert table1 >= images  # the NLL of every image it measures, at 1 s an image
    # a grid whose cells the evaluation measures no NLL of: the latent metrics only
    assert cell_seconds(ev, "pixelcnn", cal, 10000, ("train_size",)) == pytest.approx(7.0)
