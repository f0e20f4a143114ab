"""Benchmark: PixelCNN ancestral sampling (the class-mismatch metric's cost), images per second.

The two-stack gated PixelCNN (the flexible decoder) samples by caching
(pipeline.model.pixelcnn.cache: the vertical stack once per row, each layer's horizontal unit
once per pixel). Baseline, timed in the same run on the same model and the same z: the
receptive-field crop sampler (a network pass per pixel over the crop that gives it its exact
logit, pipeline.model.pixelcnn.masked.crop_sample). Both draw from the same seed; identical draws are
checked (float32 here: a logit rounding differently could in principle flip one draw, which the
line would show; tests/test_gated_pixelcnn.py checks bit-for-bit identity in float64). Models:
the smoke profile's 2 x 8 and the authors' 12 x 32, one thread (as an evaluation task gets by
default). Goal: cached >= 10x crops for 12 x 32.

    python -m bench.bench_sampling [--batch 100] [--big-batch 10] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from bench.common import row, timed
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.pixelcnn.gated import GatedPixelCNNDecoder

LATENT = 5
GOAL = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100, help="images per batch, small model")
    ap.add_argument("--big-batch", type=int, default=10, help="images per batch, 12 x 32 model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pin_malloc_thresholds()  # as every evaluation does (pipeline.infra.env)
    print(f"Two-stack PixelCNN sampling, {args.threads} thread(s); images/s (median of 3 for the "
          "cached sampler, one run of the crop sampler for 12 x 32)", flush=True)
    for layers, maps, batch in ((2, 8, args.batch), (12, 32, args.big_batch)):
        torch.manual_seed(0)
        dec = GatedPixelCNNDecoder(LATENT, layers=layers, maps=maps).eval()
        z = torch.randn(batch, LATENT)
        draws: dict[str, torch.Tensor] = {}
        rates: dict[str, float] = {}
        for method in ("crops", "cached"):
            def go(method=method, dec=dec, z=z, draws=draws):
                torch.manual_seed(1)
                draws[method] = dec.sample(z, method=method)
            med, _ = timed(go, repeat=1 if (layers == 12 and method == "crops") else 3)
            rates[method] = batch / med
        same = torch.equal(draws["crops"], draws["cached"])
        print(f"\n  {layers} layers x {maps} maps (reach {dec.reach}), batch {batch}; "
              f"identical draws: {same}")
        row("receptive-field crops (baseline)", f"{rates['crops']:,.2f} img/s")
        ratio = rates["cached"] / rates["crops"]
        row("cached (row-wise vertical, per-pixel horizontal)", f"{rates['cached']:,.2f} img/s",
            f"{ratio:.1f}x crops", f"goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'NOT met'}"
            if layers == 12 else "")
        print(flush=True)


if __name__ == "__main__":
    main()
