"""Benchmark: PixelCNN ancestral sampling (the class-mismatch metric's cost), images per second.

PixelCNNDecoder.sample passes the network over a crop around each pixel (its receptive reach:
rows up, columns either way). Baselines written here, timed in the same run on the same model
and the same z: full-image passes (the textbook loop) and row-prefix crops (rows 0..r). All
three draw the same images from the same seed (checked). Models: the smoke profile's 2 x 8 and
the authors' 12 x 32, one thread (as an evaluation task gets by default).

    python -m bench.bench_sampling [--batch 100] [--big-batch 10] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from bench.common import row, timed
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.pixelcnn import PixelCNNDecoder

LATENT = 5
OURS = "reach crops (PixelCNNDecoder.sample)"


@torch.no_grad()
def sample_baseline(dec: PixelCNNDecoder, z: torch.Tensor, row_prefix: bool) -> torch.Tensor:
    """The textbook loop: a pass over the whole image, or over rows 0..r (row_prefix)."""
    s = dec.conditioning(z)
    x = torch.zeros(z.shape[0], 1, 28, 28)
    for r in range(28):
        rows = slice(0, r + 1 if row_prefix else 28)
        for c in range(28):
            logit = dec._logits(x[:, :, rows], s[:, :, rows])[:, :, r, c]
            x[:, :, r, c] = torch.bernoulli(torch.sigmoid(logit))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100, help="images per batch, small model")
    ap.add_argument("--big-batch", type=int, default=10, help="images per batch, 12 x 32 model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pin_malloc_thresholds()  # as every evaluation does (pipeline.infra.env)
    print(f"PixelCNN sampling, {args.threads} thread(s); images/s (median of 3, one run for 12 x 32)",
          flush=True)
    for layers, maps, cond, batch in ((2, 8, 4, args.batch), (12, 32, 16, args.big_batch)):
        torch.manual_seed(0)
        dec = PixelCNNDecoder(LATENT, layers=layers, maps=maps, cond_maps=cond).eval()
        z = torch.randn(batch, LATENT)
        draws: dict[str, torch.Tensor] = {}
        rates: dict[str, float] = {}
        for name, fn in (("full-image passes", lambda d, zz: sample_baseline(d, zz, False)),
                         ("row-prefix crops", lambda d, zz: sample_baseline(d, zz, True)),
                         (OURS, lambda d, zz: d.sample(zz))):
            def go(fn=fn, name=name, dec=dec, z=z, draws=draws):
                torch.manual_seed(1)
                draws[name] = fn(dec, z)
            med, _ = timed(go, repeat=3 if layers == 2 else 1)
            rates[name] = batch / med
        same = all(torch.equal(v, draws["full-image passes"]) for v in draws.values())
        print(f"\n  {layers} layers x {maps} maps (reach {dec.reach}), batch {batch}; "
              f"identical draws: {same}")
        base = rates["full-image passes"]
        for name, rate in rates.items():
            row(name, f"{rate:,.1f} img/s", f"{rate / base:.2f}x full")
        row("reach crops vs row-prefix crops", f"{rates[OURS] / rates['row-prefix crops']:.2f}x")
        print(flush=True)


if __name__ == "__main__":
    main()
