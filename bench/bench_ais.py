"""Benchmark: annealed importance sampling (pipeline.evaluation.ais) on CPU, 1 thread.

Figures, for the default MLP decoder (latent 10, hidden [512, 512]) and a small PixelCNN:
- decoder passes (forward + backward in z) per second inside AIS, against the baseline measured
  in the same run: the bare z-gradient of log p(x|z) at the same rows per call (no HMC, no
  noise, no bookkeeping). Goal: AIS keeps >= 80% of the bare rate (its overhead is small);
- seconds per image at the evaluate section's AIS defaults, projected from that rate and the
  exact pass count (chains + 4 pilot) x (1 + (steps - 1) x leapfrog), beside IS (K = 5000 for
  the MLP, 500 for the PixelCNN).
Images are Bernoulli(0.15) noise: the cost of a pass does not depend on the pixels.

    python -m bench.bench_ais
"""

from __future__ import annotations

import torch

from bench.common import row, timed
from pipeline.evaluation.ais import PILOT_CHAINS, model_ais_log_likelihood
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.loglik import decoder_log_lik
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.objective import InfoVAE
from pipeline.params.evaluate import EvaluateParams
from pipeline.params.model import ModelParams, ObjectiveParams

THREADS = 1


def bare_gradient_rate(model: InfoVAE, x: torch.Tensor, chains: int, calls: int) -> float:
    """z-gradients of log p(x|z) per second at chunks of len(x) images x chains."""
    log_lik = decoder_log_lik(model.decoder)
    z = torch.randn(x.shape[0], chains, model.encoder.latent_dim)

    def run():
        for _ in range(calls):
            zr = z.detach().requires_grad_(True)
            torch.autograd.grad(log_lik(x, zr).sum(), zr)
    return calls * z.shape[0] * chains / timed(run, repeat=1)[1]


def measure(label: str, model: InfoVAE, n_images: int, chains: int, steps: int, leapfrog: int,
            defaults: EvaluateParams, is_k: int) -> None:
    x = torch.bernoulli(torch.full((n_images, 1, 28, 28), 0.15), generator=torch.Generator().manual_seed(0))
    passes = (chains + PILOT_CHAINS) * (1 + (steps - 1) * leapfrog) * n_images
    t_ais, bares = [], []
    for _ in range(3):  # interleaved, best of 3: on a shared machine both sides see the same quiet spells
        t_ais.append(timed(lambda: model_ais_log_likelihood(model, x, chains, steps, leapfrog,
                                                            rows=defaults.loglik_rows), repeat=1)[1])
        bares.append(bare_gradient_rate(model, x, chains, calls=(steps - 1) * leapfrog))
    ais_rate, bare = passes / min(t_ais), max(bares)
    print(f"{label}: AIS K={chains} T={steps} L={leapfrog} on {n_images} images")
    row("decoder passes / s: AIS / bare z-gradient", f"{ais_rate:.0f} / {bare:.0f}",
        f"{ais_rate / bare:.0%}", "OK" if ais_rate >= 0.8 * bare else "MISSED (goal >= 80%)")
    d = defaults
    per_image = (d.ais_chains + PILOT_CHAINS) * (1 + (d.ais_steps - 1) * d.ais_leapfrog)
    row(f"defaults K={d.ais_chains} T={d.ais_steps} L={d.ais_leapfrog}: passes / image", f"{per_image}")
    row("  seconds / image (projected from the AIS rate)", f"{per_image / ais_rate:.2f}")
    t_is = timed(lambda: model_log_likelihood(model, x, "is", is_k, rows=defaults.loglik_rows), 2)[1]
    row(f"IS K={is_k}: seconds / image", f"{t_is / n_images:.2f}")


def main() -> None:
    torch.set_num_threads(THREADS)
    pin_malloc_thresholds()  # as the evaluate stage runs
    defaults = EvaluateParams()
    torch.manual_seed(0)
    mlp = InfoVAE.build(ModelParams(latent_dim=10, hidden=[512, 512]), ObjectiveParams()).eval()
    measure("MLP 10-512-512-784", mlp, 16, 16, 20, 10, defaults, is_k=5000)
    pcnn = InfoVAE.build(ModelParams(latent_dim=10, decoder="pixelcnn", pixelcnn_layers=4, pixelcnn_maps=16,
                                     pixelcnn_cond_maps=8), ObjectiveParams()).eval()
    measure("PixelCNN 4 x 16", pcnn, 2, 4, 5, 2, defaults, is_k=500)


if __name__ == "__main__":
    main()
