"""Benchmark: the GPU fast paths (pipeline.infra.accel) and the paper-scale study's projected time.

Runs on CPU too, on the library's core only (models, objective, Trainer, IS estimator, samplers:
torch, numpy, pyarrow, and PyYAML to read params.yaml; no ray, mlflow, optuna, dvc or pydantic).
Model sizes and the study's grid come from params.yaml (base, or --profile). Measured, in one run:

- training images/s of Trainer.train_epoch per model family (mlp, conv, pixelcnn decoders), with
  each fast path alone and all together, against fp32 eager (ratios);
- IS-NLL decoder passes/s (model_log_likelihood) the same way, and the agreement of bf16 with
  fp32 on the same images and IS noise (goal: within 0.05 nats), on the model just trained;
- PixelCNN sampling images/s: the cached sampler against the receptive-field crop sampler (same
  seed, identical draws checked) and the cached one at evaluation batch size;
- the study's projected time at the baseline and the fast rates (bench/gpu_projection.py).

Data: MNIST IDX files of $INFOVAE_SHARED/datasets/mnist (../shared) when present, else random
grey images (the rates do not depend on the pixels; the NLLs then mean little).

    python -m bench.bench_gpu [--quick] [--threads 1] [--profile NAME] [--cpu-compile]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.gpu_projection import cells, describe, project, read_params
from pipeline.data.formats import parse_idx
from pipeline.data.splits import Split
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
OFF = dict(autocast="off", channels_last="off", cudnn_benchmark=False, compile="off", data_on_device=True,
           memory_fraction=0.0)
NLL_GOAL = 0.05


def ns(d: Any) -> Any:
    """A params mapping as nested attribute namespaces ('lambda' -> 'lambda_', as the schema)."""
    if isinstance(d, dict):
        return types.SimpleNamespace(**{("lambda_" if k == "lambda" else k): ns(v) for k, v in d.items()})
    return d


def mnist(n_train: int, n_val: int) -> tuple[Split, Split, Tensor, str]:
    shared = Path(os.environ.get("INFOVAE_SHARED", ROOT.parent / "shared")) / "datasets" / "mnist"
    f = shared / "train-images-idx3-ubyte.gz"
    if f.is_file():
        arr = parse_idx(gzip.decompress(f.read_bytes()), f.name, 3)
        images = torch.from_numpy(arr[: n_train + n_val + 500].copy()).float().div_(255).unsqueeze(1)
        source = "MNIST"
    else:
        images = torch.rand(n_train + n_val + 500, 1, 28, 28) * 0.5
        source = "random images (no MNIST found)"

    def split(a: torch.Tensor) -> Split:
        return Split(a, torch.zeros(len(a), dtype=torch.long), torch.arange(len(a)), "dynamic")
    test = torch.bernoulli(images[-500:], generator=torch.Generator().manual_seed(0))
    return split(images[:n_train]), split(images[n_train:n_train + n_val]), test, source


SMALL = {"hidden": [64], "conv_channels": [8, 16], "conv_fc": 64, "pixelcnn_layers": 3, "pixelcnn_maps": 8}


def spec(raw: dict, family: str, fast: dict, threads: int, batch: int, small: bool = False) -> Any:
    model = dict(raw["model"], decoder=family, encoder="conv" if family == "conv" else "mlp",
                 **(SMALL if small else {}))
    train = dict(raw["train"], threads=threads, batch_size=batch, diagnostics_size=0, accel=fast)
    return ns({"model": model, "objective": raw["objective"], "train": train, "data_dir": ""})


def configs(device: torch.device, family: str, cpu_compile: bool) -> dict[str, dict]:
    """Each fast path alone, and all of them: name -> accel settings (all explicit)."""
    out = {"fp32 eager (baseline)": OFF, "+ bf16 autocast": {**OFF, "autocast": "bf16"},
           "+ channels_last": {**OFF, "channels_last": "on"}}
    if family == "pixelcnn" and (device.type == "cuda" or cpu_compile):
        out["+ torch.compile"] = {**OFF, "compile": "on"}
    if device.type == "cuda":
        out["+ cudnn.benchmark"] = {**OFF, "cudnn_benchmark": True}
        out["data copied per batch (vs resident)"] = {**OFF, "data_on_device": False}
    on = {"autocast": "bf16", "channels_last": "on", "cudnn_benchmark": device.type == "cuda",
          "compile": "on" if family == "pixelcnn" and (device.type == "cuda" or cpu_compile) else "off",
          "data_on_device": True, "memory_fraction": 0.5}
    out["all fast paths"] = on
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def until(budget: float, most: int, step, device: torch.device) -> tuple[float, int]:
    """Run step() after one warm-up call until `budget` seconds or `most` calls: (s, calls)."""
    step()
    sync(device)
    calls, t = 0, time.perf_counter()
    while calls < most and (calls == 0 or time.perf_counter() - t < budget):
        step()
        calls += 1
    sync(device)
    return time.perf_counter() - t, calls


def trainer_for(raw, family, fast, args, splits, device, small=False) -> Trainer:
    return Trainer(spec(raw, family, fast, args.threads, args.batch, small), device, splits)


def train_rate(trainer: Trainer, budget: float, device: torch.device) -> float:
    """Images/s of Trainer.train_epoch, one batch per call (compile and cuDNN autotuning in
    the warm-up call)."""
    trainer.train_images = trainer.train_images[: trainer.spec.train.batch_size]
    seconds, calls = until(budget, 1000, trainer.train_epoch, device)
    return calls * len(trainer.train_images) / seconds


def nll(model, x: Tensor, k: int, rows: int, amp) -> float:
    return -model_log_likelihood(model, x, "is", k, seed=0, rows=rows, amp=amp).mean


def pass_rate(trainer: Trainer, x: Tensor, k: int, rows: int, budget: float, device) -> float:
    """IS decoder passes/s of model_log_likelihood: per call, one image on CPU (short timings),
    on CUDA as many as `rows` holds (rows // K images share a decoder call)."""
    model, amp = trainer.model.eval(), trainer.accel.amp_dtype
    m = max(1, min(len(x), rows // k)) if device.type == "cuda" else 1
    it = iter(range(10**9))

    def one() -> None:
        i = next(it) * m % len(x)
        nll(model, x[i:i + m], k, rows, amp)
    seconds, calls = until(budget, max(1, len(x) // m), one, device)
    return calls * m * k / seconds


def show(name: str, value: str, ratio: str = "", note: str = "") -> None:
    print(f"  {name:<40} {value:>16}  {ratio:<10} {note}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timings (under a minute on CPU)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default=None, help="a params.yaml profile to project (default: base)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--cpu-compile", action="store_true", help="time torch.compile on CPU too (minutes)")
    ap.add_argument("--cpu-bf16", action="store_true",
                    help="time bf16 of the conv and PixelCNN models on CPU too (slow without native bf16)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pin_malloc_thresholds()
    gpu = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if gpu else "cpu")
    raw = read_params(args.params, args.profile)
    args.batch = raw["train"]["batch_size"]
    budget = (0.7 if args.quick else 2.5) * (2 if gpu else 1)
    k, agree_steps = (1000, 300) if gpu else (32, 20)
    n_agree = 100 if gpu else 16
    train_split, val_split, test_x, source = mnist(agree_steps * args.batch, 500)
    test_x = test_x.to(device)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {args.threads} thread(s)"
    print(f"bench_gpu on {name}; torch {torch.__version__}; data: {source}; batch {args.batch}; "
          f"{budget:g} s per timing; {'quick' if args.quick else 'full'} run", flush=True)
    rates: dict[str, dict[str, dict[str, float]]] = {"train": {}, "pass": {}, "sample": {}}
    splits = (train_split, val_split)
    for family in ("mlp", "conv", "pixelcnn"):
        sizes = (f"{raw['model']['pixelcnn_layers']} x {raw['model']['pixelcnn_maps']} "
                 f"{raw['model'].get('pixelcnn_arch', 'gated')}" if family == "pixelcnn" else "")
        print(f"\n{family} decoder {sizes} (study sizes): training img/s and IS passes/s (K={k})", flush=True)
        base: dict[str, float] = {}
        for label, fast in configs(device, family, args.cpu_compile).items():
            if not gpu and family != "mlp" and fast["autocast"] == "bf16" and not args.cpu_bf16:
                show(f"{label}", "skipped", "", "bf16 on a CPU without native bf16 (--cpu-bf16 to time)")
                continue
            trainer = trainer_for(raw, family, fast, args, splits, device)
            r_train = train_rate(trainer, budget, device)
            rows = trainer.accel.loglik_rows(trainer.model.decoder, trainer.model.encoder.latent_dim,
                                             raw["evaluate"]["loglik_rows"])
            r_pass = pass_rate(trainer, test_x, k, rows, budget, device)
            base = base or {"train": r_train, "pass": r_pass}
            fell = getattr(getattr(trainer.model.decoder, "fast_forward", None), "failed", False)
            show(f"train {label}", f"{r_train:,.1f} img/s", f"{r_train / base['train']:.2f}x",
                 "compile fell back to eager" if fell else "")
            show(f"IS    {label}", f"{r_pass:,.0f} pass/s", f"{r_pass / base['pass']:.2f}x",
                 f"{rows} rows per call" if rows != raw["evaluate"]["loglik_rows"] else "")
            for kind, rate in (("train", r_train), ("pass", r_pass)):
                if label.startswith("fp32"):
                    rates[kind].setdefault("base", {})[family] = rate
                if not label.startswith("data"):  # the best measured configuration per family
                    best = rates[kind].setdefault("fast", {})
                    best[family] = max(best.get(family, 0.0), rate)
        if family == "pixelcnn":
            sampling(trainer.model.decoder, device, args, rates, raw)
        else:  # one decoder pass per sample
            for key in ("base", "fast"):
                rates["sample"].setdefault(key, {})[family] = rates["pass"][key][family]
    agreement(raw, device, args, splits, test_x[:n_agree], k, agree_steps)
    work = cells(raw)
    print(f"\nProjected study ({args.profile or raw.get('profile') or 'base params.yaml'}) on this machine: "
          f"{describe(work)}")
    print("  one trial at a time, no ASHA early stops (an upper bound); latent and SVM metrics left out")
    for key, what in (("base", "fp32 eager"), ("fast", "best measured paths")):
        t = project(work, rates["train"][key], rates["pass"][key], rates["sample"][key])
        show(f"{what}: total", f"{t['total'] / 3600:,.1f} h",
             note=", ".join(f"{p} {t[p] / 3600:,.1f} h" for p in ("train", "loglik", "sampling")))


def agreement(raw, device, args, splits, x: Tensor, k: int, steps: int) -> None:
    """IS-NLL of each fast path vs fp32 eager on the same briefly trained weights, images and IS
    noise (small models on CPU, study sizes on GPU). Goal: within 0.05 nats."""
    small = device.type != "cuda"
    print(f"\nAgreement with fp32 eager: IS-NLL on {len(x)} test images, K={k}, after {steps} training "
          f"steps ({'small models' if small else 'study sizes'}); goal |difference| < {NLL_GOAL} nats",
          flush=True)
    for family in ("mlp", "conv", "pixelcnn"):
        reference = trainer_for(raw, family, OFF, args, splits, device, small)
        reference.train_images = reference.train_images[: steps * args.batch]
        reference.train_epoch()
        weights = reference.model.state_dict()
        ref = nll(reference.model.eval(), x, k, 2048, None)
        for label, fast in configs(device, family, args.cpu_compile).items():
            if label.startswith("fp32") or label.startswith("data"):
                continue
            other = trainer_for(raw, family, fast, args, splits, device, small)
            other.model.load_state_dict(weights)
            got = nll(other.model.eval(), x, k, 2048, other.accel.amp_dtype)
            verdict = "within" if abs(got - ref) < NLL_GOAL else "NOT within"
            show(f"{family} {label}", f"{got:,.3f} nats", "", f"fp32 {ref:,.3f}: {verdict} {NLL_GOAL}")


def sampling(decoder, device, args, rates, raw) -> None:
    """Crop sampler vs cached (identical draws), and the cached one at evaluation batch size."""
    d = decoder.latent_dim
    small = 1 if args.quick else 2
    z = torch.randn(small, d, device=device)
    out, speed = {}, {}
    for method in ("crops", "cached"):
        torch.manual_seed(1)
        sync(device)
        t = time.perf_counter()
        out[method] = decoder.sample(z, method=method)
        sync(device)
        speed[method] = small / (time.perf_counter() - t)
    same = torch.equal(out["crops"], out["cached"])
    show("sample crops (baseline)", f"{speed['crops']:,.2f} img/s", "1.00x", f"batch {small}")
    show("sample cached", f"{speed['cached']:,.2f} img/s", f"{speed['cached'] / speed['crops']:.1f}x",
         f"identical draws: {same}")
    big = 1000 if device.type == "cuda" else (10 if args.quick else 50)
    z = torch.randn(big, d, device=device)
    sync(device)
    t = time.perf_counter()
    decoder.sample(z)
    sync(device)
    rate = big / (time.perf_counter() - t)
    n = raw["evaluate"]["class_mismatch_samples"]
    show("sample cached, evaluation batch", f"{rate:,.1f} img/s", "",
         f"batch {big}; {n:,} samples (one cell): {n / rate / 60:,.1f} min")
    rates["sample"].setdefault("base", {})["pixelcnn"] = speed["crops"]  # the sampler before caching
    rates["sample"].setdefault("fast", {})["pixelcnn"] = rate

if __name__ == "__main__":
    main()
