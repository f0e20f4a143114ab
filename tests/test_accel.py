"""The GPU fast paths (pipeline.infra.accel) on the CPU: agreement with fp32 eager, fallbacks."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from pipeline.data.splits import load_split
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.infra import accel
from pipeline.model import GatedPixelCNNDecoder, MLPDecoder
from pipeline.model.objective import InfoVAE
from pipeline.params.accel import AccelParams
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer

D = 3


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def small_model(decoder: str, divergence: str = "mmd") -> InfoVAE:
    m = ModelParams(hidden=[32], latent_dim=D, decoder=decoder, pixelcnn_layers=3, pixelcnn_maps=8)
    o = ObjectiveParams.model_validate({"divergence": divergence, "alpha": 1.0, "lambda": 100.0})
    return InfoVAE.build(m, o).eval()


def images(n: int) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3))


def settings(**kw) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{**AccelParams().model_dump(), **kw})


@pytest.mark.parametrize("decoder", ["mlp", "pixelcnn"])
def test_bf16_autocast_nll_within_005_nats_of_fp32(prepared_mnist, decoder):
    """On a briefly trained model (confident logits, as the study's): IS-NLL with the decoder
    network under bf16 autocast vs fp32, the same images and the same IS noise."""
    spec = RunSpec(ModelParams(hidden=[64], latent_dim=D, decoder=decoder, pixelcnn_layers=3,
                               pixelcnn_maps=8), ObjectiveParams(),
                   TrainParams(epochs=1, batch_size=50, train_size=2000, validation_size=100,
                               diagnostics_size=0, threads=1, seed=0), str(prepared_mnist))
    trainer = Trainer(spec)
    trainer.run()
    model = trainer.model.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(load_split(prepared_mnist, "test", limit=64).images, generator=g)
    fp32 = model_log_likelihood(model, x, "is", 16, seed=1, rows=256)
    bf16 = model_log_likelihood(model, x, "is", 16, seed=1, rows=256, amp=torch.bfloat16)
    assert fp32.per_example.dtype == bf16.per_example.dtype == torch.float64
    assert -fp32.mean < 400, "the model did not train: the test would not be about a real model"
    assert abs(fp32.mean - bf16.mean) < 0.05, f"bf16 NLL {-bf16.mean:.3f} vs fp32 {-fp32.mean:.3f}"
    assert not torch.equal(fp32.per_example, bf16.per_example), "autocast did not run"


def test_bf16_training_terms_keep_sums_kl_and_mmd_in_fp32():
    model = small_model("pixelcnn")
    x, noise = images(32), torch.randn(32, D)
    ref = model.terms(x, noise)
    model.amp_dtype = torch.bfloat16
    fast = model.terms(x, noise)
    for name in ("loss", "recon", "kl", "div", "z", "mean", "std"):
        assert getattr(fast, name).dtype == torch.float32, name
    # untrained (NLL ~ 544): agreement in relative terms; the 0.05-nat test is on a trained model
    torch.testing.assert_close(fast.recon, ref.recon, rtol=2e-3, atol=0.0)
    torch.testing.assert_close(fast.kl, ref.kl, rtol=2e-2, atol=2e-2)
    assert not torch.equal(fast.recon, ref.recon), "autocast did not run"
    fast.loss.backward()  # gradients flow through the bf16 networks
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_prepare_is_a_no_op_on_cpu_by_default_and_applies_what_is_forced():
    model = small_model("pixelcnn")
    cpu = torch.device("cpu")
    got = accel.prepare(model, cpu, AccelParams())
    assert (got.amp_dtype, got.channels_last, got.compiled, got.cudnn_benchmark) == \
        (None, False, False, False)
    assert model.amp_dtype is None and model.decoder.fast_forward is None
    assert got.loglik_rows(model.decoder, D, 123) == 123  # CPU: the configured rows
    x, z = images(4), torch.randn(4, D)
    ref = model.decoder.logits(z, x)
    forced = accel.prepare(model, cpu, settings(autocast="bf16", channels_last="on", compile="off"))
    assert forced.amp_dtype == torch.bfloat16 and forced.channels_last
    assert model.decoder.layers[1].v_conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model.decoder.logits(z, x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="accel switch"):
        accel.switch("yes", cpu)


def test_compiled_pixelcnn_gives_the_eager_outputs_and_gradients():
    """Dynamo capture with the aot_eager backend (inductor compiles for a minute here; the
    capture and the autograd graph are what could differ)."""
    dec = GatedPixelCNNDecoder(D, layers=2, maps=4)
    x, z = images(4), torch.randn(4, D)
    ref = dec.log_prob(x, z)
    ref_grad = torch.autograd.grad(ref.sum(), dec.head[-1].weight)[0]
    assert accel.compile_decoder(dec, backend="aot_eager")
    got = dec.log_prob(x, z)
    assert not dec.fast_forward.failed, "compiling fell back to eager"
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), dec.head[-1].weight)[0], ref_grad)
    assert not accel.compile_decoder(MLPDecoder(D, [8]))  # factorized decoders: nothing to compile


def test_compile_failure_falls_back_to_eager_with_a_warning():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    dec = GatedPixelCNNDecoder(D, layers=2, maps=4)
    x, z = images(2), torch.randn(2, D)
    ref = dec.logits(z, x)
    dec.fast_forward = accel.GuardedCompile(dec.forward, backend=broken_backend)
    with pytest.warns(RuntimeWarning, match="torch.compile of the PixelCNN failed"):
        got = dec.logits(z, x)
    assert dec.fast_forward.failed
    torch.testing.assert_close(got, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls run eagerly, silently
        torch.testing.assert_close(dec.logits(z, x), ref)


def test_accel_params_validate():
    assert AccelParams().autocast == "auto"
    with pytest.raises(ValueError):
        AccelParams(autocast="fp16")
    with pytest.raises(ValueError):
        AccelParams(memory_fraction=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rows_from_free_memory_are_whole_noise_blocks():
    dec = GatedPixelCNNDecoder(D, layers=2, maps=4).cuda()
    rows = accel.rows_from_memory(dec, D, torch.device("cuda"), 0.1, None)
    assert rows % accel.ROW_ALIGN == 0 and accel.ROW_ALIGN <= rows <= accel.MAX_ROWS


def test_training_with_data_copied_per_batch_equals_resident_data(prepared_mnist):
    """accel.data_on_device off (host data, a copy per batch) trains exactly the same run."""
    def run(resident: bool) -> dict:
        spec = RunSpec(ModelParams(hidden=[32], latent_dim=D), ObjectiveParams(),
                       TrainParams(epochs=1, batch_size=50, train_size=300, validation_size=100,
                                   diagnostics_size=0, threads=1, seed=0,
                                   accel=AccelParams(data_on_device=resident)), str(prepared_mnist))
        trainer = Trainer(spec)
        trainer.run()
        return trainer.model.state_dict()

    a, b = run(True), run(False)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
