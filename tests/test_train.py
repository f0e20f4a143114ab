"""The training run on real MNIST subsets: learning, exact resume, every divergence, failure."""

from __future__ import annotations

import pytest
import torch

from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec, load
from pipeline.train.trainer import Trainer, TrainingDiverged, choose_device, load_trained, resume

SMALL = dict(hidden=[128], conv_channels=[8, 16], conv_fc=64, pixelcnn_layers=3, pixelcnn_maps=8,
             pixelcnn_cond_maps=4, latent_dim=4)
OBJECTIVES = {
    "kl": dict(divergence="kl", alpha=0.0, **{"lambda": 1.0}),
    "mmd": dict(divergence="mmd", alpha=1.0, **{"lambda": 100.0}),
    "stein": dict(divergence="stein", alpha=1.0, **{"lambda": 100.0}),
    "adversarial": dict(divergence="adversarial", alpha=1.0, **{"lambda": 10.0},
                        adversarial=dict(hidden=[32, 32])),
}


def spec(data_dir, model=None, objective="kl", **train) -> RunSpec:
    t = dict(epochs=2, batch_size=50, train_size=1000, validation_size=200, diagnostics_size=200,
             threads=1, seed=3)
    t.update(train)
    return RunSpec(ModelParams(**{**SMALL, **(model or {})}),
                   ObjectiveParams.model_validate(OBJECTIVES[objective]), TrainParams(**t),
                   str(data_dir))


def assert_same_state(a, b, path="model"):
    """Exact equality of nested state (tensors, optimizer states, the critic's extra state)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_short_run_lowers_validation_loss(prepared_mnist):
    trainer = Trainer(spec(prepared_mnist, epochs=3, train_size=3000))
    before = trainer.validate()["val_loss"]
    result = trainer.run()
    assert result.status == "finished" and result.epochs == 3
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < losses[0] < before
    assert before - losses[-1] > 50  # nats: from ~544 (random decoder) to well under 300
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("objective", ["kl", "adversarial", "mmd"])
def test_stop_restore_continue_equals_uninterrupted(prepared_mnist, tmp_path, objective):
    s = spec(prepared_mnist, objective=objective, epochs=3, train_size=500)
    straight = Trainer(s)
    straight.run()
    first = Trainer(s)
    result = first.run(on_epoch=lambda epoch, m, saved: epoch == 1, checkpoint_dir=tmp_path)
    assert result.status == "stopped" and result.epochs == 1
    del first
    torch.manual_seed(999)  # whatever happened in between must not matter
    continued = resume(load(tmp_path))
    assert continued.epoch == 1
    continued.run(checkpoint_dir=tmp_path)
    assert_same_state(straight.model.state_dict(), continued.model.state_dict())
    assert_same_state(straight.optimizer.state_dict(), continued.optimizer.state_dict(), "optimizer")
    assert [h["val_loss"] for h in straight.history] == [h["val_loss"] for h in continued.history]


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("family", ["mlp", "conv", "pixelcnn"])
def test_every_divergence_and_family_trains_without_nan(prepared_mnist, objective, family):
    model = {"encoder": "conv" if family == "conv" else "mlp", "decoder": family}
    trainer = Trainer(spec(prepared_mnist, model=model, objective=objective, epochs=1,
                           train_size=200, validation_size=100, diagnostics_size=100))
    result = trainer.run()
    final = result.final
    for key in ("train_loss", "val_loss", "val_recon", "val_kl", "val_mmd", "val_mi", "val_logdet_cov"):
        assert torch.isfinite(torch.tensor(final[key])), key
    if objective == "adversarial":
        assert "train_js_estimate" in final


def test_diverging_run_stops_with_a_clear_error(prepared_mnist):
    trainer = Trainer(spec(prepared_mnist, objective="mmd", lr=1.0, grad_clip=None, epochs=3,
                           optimizer="adam"))
    with torch.no_grad():  # a poisoned weight: the loss is NaN at the first step
        next(trainer.model.encoder.parameters())[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 1, step 1"):
        trainer.run()


def test_checkpoint_loads_safely_and_rebuilds_the_model(prepared_mnist, tmp_path):
    trainer = Trainer(spec(prepared_mnist, epochs=1))
    trainer.run(checkpoint_dir=tmp_path)
    model, loaded_spec = load_trained(tmp_path)
    assert loaded_spec == trainer.spec
    x = trainer.val_x[:8]
    mean_a, _ = model.encoder(x)
    mean_b, _ = trainer.model.eval().encoder(x)
    assert torch.equal(mean_a, mean_b)
    # A checkpoint carrying arbitrary Python objects is refused (weights_only loading).
    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format_version": 1, "x": object()}))
    from pipeline.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load(tmp_path / "evil.pt")


def test_device_choice_falls_back_to_cpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert choose_device("auto").type == "cpu"
    with pytest.raises(Exception, match="no CUDA device is visible"):
        choose_device("cuda")


@pytest.mark.slow
def test_mlp_elbo_vae_on_full_mnist_reaches_110_nats(prepared_mnist):
    trainer = Trainer(spec(prepared_mnist, model={"hidden": [512, 512], "latent_dim": 10},
                           epochs=8, train_size=None, validation_size=None, batch_size=100,
                           threads=2, diagnostics_size=1000, lr=1e-3))
    result = trainer.run()
    assert result.final["val_nelbo"] < 110, [round(h["val_nelbo"], 2) for h in result.history]


def test_a_batchnorm_encoder_trains_when_the_last_batch_holds_one_image(prepared_mnist):
    """101 images in batches of 50 leave one image: BatchNorm cannot train on it alone, so it
    joins the batch before it (pipeline.train.trainer.batches); without BatchNorm nothing moves."""
    from pipeline.train.trainer import batches

    order = torch.arange(101)
    assert [len(b) for b in batches(order, 50, least=2)] == [50, 51]
    assert [len(b) for b in batches(order, 50)] == [50, 50, 1]
    assert [len(b) for b in batches(torch.arange(1), 50, least=2)] == [1]
    trainer = Trainer(spec(prepared_mnist, model={"encoder_norm": "batch"}, epochs=1, train_size=101))
    assert trainer.min_batch == 2
    result = trainer.run()
    assert torch.isfinite(torch.tensor(result.final["val_loss"]))
