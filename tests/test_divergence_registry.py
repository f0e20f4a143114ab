"""Issue 21: a new divergence is its module plus one registration. The toy below (moment
matching, with one setting) is registered here and nowhere else, and then goes through
everything a study does with a divergence: params and grid validation, the method's names,
training, a checkpoint that rebuilds it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pipeline.model.divergences import Divergence, build_divergence
from pipeline.params.base import Section
from pipeline.params.divergences import DIVERGENCES, DivergenceEntry, register_divergence
from pipeline.params.grid import expand
from pipeline.params.load import ParamsError, known_key, parse_params
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.params.vocab import divergence_label, method_name


class MomentParams(Section):
    scale: float = 1.0


class MomentDivergence(Divergence):
    """D = scale * (|mean(z)|^2 + |cov(z) - I|_F^2): zero iff the first two moments are the prior's."""

    name = "moments"

    def __init__(self, params: MomentParams, latent_dim: int):
        super().__init__()
        self.scale = params.scale

    def forward(self, z: Tensor) -> Tensor:
        mean = z.mean(0)
        centred = z - mean
        cov = centred.T @ centred / (z.shape[0] - 1)
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        return self.scale * (mean.square().sum() + (cov - eye).square().sum())


@pytest.fixture
def moments():
    entry = register_divergence(DivergenceEntry("moments", "Moments", "Moment-VAE",
                                                f"{__name__}:MomentDivergence",
                                                f"{__name__}:MomentParams"))
    yield entry
    DIVERGENCES.pop("moments")


def objective(**extra) -> ObjectiveParams:
    return ObjectiveParams.model_validate({"divergence": "moments", "alpha": 1.0, "lambda": 10.0, **extra})


def test_unregistered_divergence_is_refused_with_the_registered_names():
    with pytest.raises(ValueError, match=r"unknown divergence 'moments': one of kl, mmd, stein, adversarial"):
        ObjectiveParams.model_validate({"divergence": "moments"})
    with pytest.raises(ValueError, match=r"objective.moments: unknown key"):
        ObjectiveParams.model_validate({"divergence": "kl", "moments": {"scale": 2.0}})


def test_registered_divergence_is_validated_named_and_built(moments):
    obj = objective(moments={"scale": 2.0})
    assert obj.settings() == MomentParams(scale=2.0)
    assert objective().settings() == MomentParams()  # its defaults where params give none
    assert obj.identity()["moments"] == {"scale": 2.0}  # it changes the run's identity
    with pytest.raises(ValueError, match="scale"):
        objective(moments={"scale": "big"})
    assert known_key("objective.moments.scale") and not known_key("objective.moments.width")
    assert method_name("moments", 1.0, 10.0) == "Moment-VAE"
    assert method_name("moments", 0.5, 10.0) == "InfoVAE-moments (alpha=0.5, lambda=10)"
    assert divergence_label("moments") == "Moments"
    div = build_divergence(obj, latent_dim=3)
    assert isinstance(div, MomentDivergence) and div.scale == 2.0
    # known answers on samples whitened to the prior's exact moments: 0, and scale * |shift|^2
    z = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / 999)).T
    assert float(div(z)) == pytest.approx(0.0, abs=1e-9)
    shift = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    assert float(div(z + shift)) == pytest.approx(2.0 * 5.0, rel=1e-9)


def test_registered_divergence_runs_through_a_grid(moments):
    params = parse_params({"sweep": {"grids": {"toy": {
        "method": [{"divergence": "moments", "alpha": 1.0, "lambda": 10.0},
                   {"divergence": "mmd", "alpha": 1.0, "lambda": 10.0}],
        "objective.moments.scale": [0.5]}}}})
    cells = expand(params)
    assert len(cells) == 2
    assert any(c.label.startswith("moments") for c in cells)
    with pytest.raises(ParamsError, match=r"sweep.grids.toy.objective.moments.width"):
        parse_params({"sweep": {"grids": {"toy": {"objective.moments.width": [1.0]}}}})


def test_registered_divergence_trains_and_its_checkpoint_rebuilds_it(moments, prepared_mnist, tmp_path):
    from pipeline.train.checkpoint import RunSpec
    from pipeline.train.trainer import Trainer, load_trained

    spec = RunSpec(ModelParams(hidden=[64], latent_dim=3), objective(moments={"scale": 0.5}),
                   TrainParams(epochs=1, batch_size=50, train_size=300, validation_size=100,
                               diagnostics_size=100, threads=1), str(prepared_mnist))
    trainer = Trainer(spec)
    result = trainer.run(checkpoint_dir=tmp_path)
    assert result.status == "finished"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.final.items()
               if k in ("train_loss", "val_loss", "val_mmd"))
    model, again = load_trained(tmp_path)
    assert again.objective == spec.objective
    assert isinstance(model.divergence, MomentDivergence) and model.divergence.scale == 0.5
