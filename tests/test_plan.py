"""The sweep's plan projects a cell's evaluation from the calibrated costs of the metrics that
evaluate.metric_grids gives it: known answers with a made-up calibration."""

from __future__ import annotations

import pytest

from pipeline.params.compose import compose
from pipeline.sweep.grid import expand, resolve
from pipeline.sweep.plan import PIXELS, eval_seconds
from tests.conftest import ROOT

FREE = {"loglik_image_s": 0.0, "decoder_rows_per_s": 1e6, "grad_rows_per_s": 1e30, "latent_s": 0.0}


def test_class_mismatch_is_projected_from_the_timed_sampler():
    params = compose(ROOT, [])  # the laptop study: class mismatch on latent_dim, no NLL there
    cell = next(c for c in expand(params) if c.grids == ("latent_dim",) and c.decoder == "pixelcnn")
    spec = resolve(params, cell, {})
    n = params.evaluate.class_mismatch_samples
    assert eval_seconds(params, spec, {**FREE, "sample_image_s": 0.01}, 10000, cell.grids) \
        == pytest.approx(n * 0.01)
    # a calibration without the timed sampler: 784 decoder passes a sample
    assert eval_seconds(params, spec, FREE, 10000, cell.grids) == pytest.approx(n * PIXELS / 1e6)
