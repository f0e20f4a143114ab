"""Benchmark: training images/s of Trainer.train_epoch, 1 thread, on a real MNIST subset.

For the MLP (hidden [512, 512]) and conv ([64, 128], fc 1024) models, latent 10, batch 100,
with each divergence (ELBO: kl alpha=0 lambda=1; mmd and stein alpha=1 lambda=1000;
adversarial alpha=1 lambda=100), against a baseline measured in the same run: a bare PyTorch
loop written here over an identically built model (same modules, same InfoVAE.terms loss,
same RMSprop and clipping) that does nothing else: no NaN check, no running sums, no logging.
The two are run alternately (A B B A ...), one epoch each, after one warm-up epoch each; the
ratio is the median of the per-pair ratios (neighbouring runs see the same machine load), and
its min-max over the pairs is printed as the noise. The ratio of process CPU seconds is
printed beside it (less sensitive to time-slicing by other work, not to cache or memory
contention). A/A rows run the same comparison with a second bare loop in place of the Trainer:
how far a ratio strays from 1 with nothing to find. Goal: ours >= 0.95x the bare loop.

The comparison runs with glibc malloc's mmap and trim thresholds pinned (mallopt, as every
Trainer now does: pipeline.infra.env.pin_malloc_thresholds; --default-malloc skips the benchmark's
own call, which only matters before a Trainer exists): by default glibc adapts them as it
goes, and then whichever loop's
epoch happens to free and re-allocate the conv model's ~25 MB buffers at the top of the heap
page-faults them afresh (0 to 70k minor faults per epoch; 5-15% of a conv epoch's CPU time
measured here), a sticky noise of +-10% between two identical loops that has nothing to do
with either loop.
The scaling and PixelCNN figures run in spawned processes (pinned too, by their Trainer).

Scaling: two spawned processes, 1 thread each, run train_epoch at the same time (started by
a barrier), against one of them alone, alternately. Goal: aggregate images/s >= 1.6x one.
Printed beside it: the CPU cores the processes obtained (CPU seconds / wall seconds) and the
scaling implied by CPU seconds per image, alone vs together (what it would be if each process
had a core: a shared machine, e.g. Linux autogroup giving each busy session an equal share,
can hold a whole run to one core whatever the code does).
PixelCNN (12 layers, 32 maps, the study's flexible decoder) images/s at 1 and 2 threads, in a
spawned process: it sets the cost of the study.

    python -m bench.bench_train
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import prepared_mnist, row, run_timed
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.objective import InfoVAE
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer

BATCH = 100
GOAL_RATIO, GOAL_SCALING = 0.95, 1.6
OBJECTIVES = {
    "kl": dict(divergence="kl", alpha=0.0, **{"lambda": 1.0}),
    "mmd": dict(divergence="mmd", alpha=1.0, **{"lambda": 1000.0}),
    "stein": dict(divergence="stein", alpha=1.0, **{"lambda": 1000.0}),
    "adversarial": dict(divergence="adversarial", alpha=1.0, **{"lambda": 100.0}),
}
# (images per epoch, timed pairs): the conv model runs ~17x slower than the MLP on one
# thread (~350 img/s), so it gets a smaller subset to keep the whole benchmark ~3 minutes.
SIZES = {"mlp": (2000, 9), "conv": (300, 6)}
SCALING_IMAGES, SCALING_EPOCHS, SCALING_REPEATS = 3000, 2, 3
PIXELCNN_REPEATS = 2  # one batch of 100 per timed run, after one warm-up batch


def make_spec(data_dir: str, family: str, divergence: str, n: int, threads: int = 1,
              decoder: str | None = None) -> RunSpec:
    model = ModelParams(encoder=family, decoder=decoder or family)  # default sizes, latent 10
    train = TrainParams(train_size=n, validation_size=BATCH, batch_size=BATCH, threads=threads,
                        diagnostics_size=0, seed=0)
    return RunSpec(model, ObjectiveParams.model_validate(OBJECTIVES[divergence]), train, data_dir)


class BareLoop:
    """The baseline: the plainest loop over an identically initialised model and the same data."""

    def __init__(self, spec: RunSpec, images: torch.Tensor):
        cfg = spec.train
        torch.manual_seed(cfg.seed)  # as Trainer: the same initial weights
        self.model = InfoVAE.build(spec.model, spec.objective)
        self.params = self.model.model_parameters()
        self.opt = torch.optim.RMSprop(self.params, lr=cfg.lr)
        self.images, self.bs, self.clip = images, cfg.batch_size, cfg.grad_clip
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        div = self.model.divergence
        self.critic = div if div.name == "adversarial" else None

    def epoch(self) -> None:
        model, opt, gen = self.model, self.opt, self.gen
        model.train()
        perm = torch.randperm(self.images.shape[0], generator=gen)
        for idx in perm.split(self.bs):
            x = torch.bernoulli(self.images[idx], generator=gen)
            terms = model.terms(x)
            opt.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            opt.step()
            if self.critic is not None:  # one WGAN-GP critic step (critic_steps = 1)
                d, z = self.critic, terms.z.detach()
                d.optimizer.zero_grad()
                prior = torch.randn_like(z)
                w1 = d.critic(prior).mean() - d.critic(z).mean()
                (-w1 + d.params.gradient_penalty * d.gradient_penalty(prior, z)).backward()
                d.optimizer.step()


def alternate(ours: Callable[[], object], bare: Callable[[], object], n: int, pairs: int) -> dict[str, float]:
    """Time one warm-up and then `pairs` alternated calls (A B, B A, ...) of each epoch function."""
    ours()
    bare()  # warm-up: allocator, kernel selection, the critic's optimiser
    ours_t, bare_t, ratios, cpu_ratios = [], [], [], []
    for i in range(pairs):
        first, second = (ours, bare) if i % 2 == 0 else (bare, ours)
        a, b = run_timed(first), run_timed(second)
        o, r = (a, b) if i % 2 == 0 else (b, a)
        ours_t.append(o[0])
        bare_t.append(r[0])
        ratios.append(r[0] / o[0])
        cpu_ratios.append(r[1] / o[1])
    return {"ours": n / statistics.median(ours_t), "bare": n / statistics.median(bare_t),
            "ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios),
            "cpu_ratio": statistics.median(cpu_ratios)}


def compare(data_dir: str, family: str, divergence: str, control: bool = False) -> dict[str, float]:
    """Trainer.train_epoch against the bare loop; control: a second bare loop in place of the
    Trainer (an A/A run: how far from 1.0 the ratio strays by noise alone)."""
    n, pairs = SIZES[family]
    trainer = Trainer(make_spec(data_dir, family, divergence, n))  # sets 1 thread
    bare = BareLoop(trainer.spec, trainer.train_images)
    ours = BareLoop(trainer.spec, trainer.train_images).epoch if control else trainer.train_epoch
    return alternate(ours, bare.epoch, n, pairs)


# ---------------------------------------------------------------------- two processes

def scaling_worker(data_dir: str, commands, results, barrier) -> None:
    """A spawned process holding one Trainer: on "alone" or "together" (after the barrier) it
    trains SCALING_EPOCHS epochs and reports (start, end, CPU seconds, images); None ends it."""
    trainer = Trainer(make_spec(data_dir, "mlp", "kl", SCALING_IMAGES))
    trainer.train_epoch()  # warm-up
    results.put("ready")
    while (cmd := commands.get()) is not None:
        if cmd == "together":
            barrier.wait()
        start, cpu = time.monotonic(), time.process_time()
        for _ in range(SCALING_EPOCHS):
            trainer.train_epoch()
        results.put((start, time.monotonic(), time.process_time() - cpu, SCALING_EPOCHS * SCALING_IMAGES))


def scaling(data_dir: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    queues = [ctx.Queue(), ctx.Queue()]
    procs = [ctx.Process(target=scaling_worker, args=(data_dir, q, results, barrier)) for q in queues]
    for p in procs:
        p.start()
    for _ in procs:
        assert results.get(timeout=120) == "ready"
    solo, pair, solo_cpu, pair_cpu, solo_cores, pair_cores = [], [], [], [], [], []
    try:
        for i in range(SCALING_REPEATS):
            queues[i % 2].put("alone")  # alternate which worker runs alone
            start, end, cpu, n = results.get(timeout=120)
            solo.append(n / (end - start))
            solo_cpu.append(cpu / n)
            solo_cores.append(cpu / (end - start))
            for q in queues:
                q.put("together")
            got = [results.get(timeout=120) for _ in queues]
            span = max(g[1] for g in got) - min(g[0] for g in got)
            pair.append(sum(g[3] for g in got) / span)
            pair_cpu.append(statistics.mean(g[2] / g[3] for g in got))
            pair_cores.append(sum(g[2] for g in got) / span)
    finally:
        for q in queues:
            q.put(None)
        for p in procs:
            p.join(timeout=30)
    one, two = statistics.median(solo), statistics.median(pair)
    # CPU seconds per image: alone vs side by side. 2 * ratio is the scaling the two processes
    # would reach if each had a core to itself (what is left is cache and memory contention).
    cpu_scaling = 2 * statistics.median(solo_cpu) / statistics.median(pair_cpu)
    return {"one": one, "two": two, "solo": solo, "pair": pair, "cpu_scaling": cpu_scaling,
            "solo_cores": statistics.median(solo_cores), "pair_cores": statistics.median(pair_cores)}


# ---------------------------------------------------------------------- PixelCNN

def pixelcnn(data_dir: str) -> dict[int, tuple[float, float]]:
    """Images/s of train_epoch over one batch of 100 (MLP encoder, PixelCNN decoder, ELBO),
    1 and 2 threads alternately; median of PIXELCNN_REPEATS after a warm-up batch each, with the
    CPU cores the process obtained (CPU seconds / wall seconds)."""
    trainer = Trainer(make_spec(data_dir, "mlp", "kl", BATCH, decoder="pixelcnn"))
    rates: dict[int, list[float]] = {1: [], 2: []}
    cores: dict[int, list[float]] = {1: [], 2: []}
    for i in range(PIXELCNN_REPEATS + 1):
        for threads in (1, 2) if i % 2 == 0 else (2, 1):
            torch.set_num_threads(threads)
            wall, cpu = run_timed(trainer.train_epoch)
            if i > 0:
                rates[threads].append(BATCH / wall)
                cores[threads].append(cpu / wall)
    torch.set_num_threads(1)
    return {t: (statistics.median(rates[t]), statistics.median(cores[t])) for t in rates}


def print_row(family: str, divergence: str, r: dict[str, float], verdict: str) -> None:
    spread = f"({r['lo']:.2f}-{r['hi']:.2f})"
    print(f"  {family:<6} {divergence:<12} {r['ours']:>8.0f} {r['bare']:>8.0f} {r['ratio']:>6.3f} "
          f"{spread:>12} {r['cpu_ratio']:>9.3f}  {verdict}", flush=True)


def main(default_malloc: bool = False) -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = str(prepared_mnist(tmp))  # MNIST from ../shared, dynamic binarization
        pinned = not default_malloc and pin_malloc_thresholds()
        print(f"training throughput, 1 thread, batch {BATCH}, latent 10 (images/s, median of alternated "
              f"epochs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start; "
              f"malloc thresholds {'pinned' if pinned else 'default'})")
        print(f"  {'model':<6} {'divergence':<12} {'ours':>8} {'bare':>8} {'ratio':>6} {'(min-max)':>12} "
              f"{'cpu ratio':>9}  {'goal':<8} verdict")
        for family in SIZES:
            for divergence in OBJECTIVES:
                r = compare(data_dir, family, divergence)
                ok = "OK" if r["ratio"] >= GOAL_RATIO else "MISSED"
                print_row(family, divergence, r, f">= {GOAL_RATIO:<5} {ok}")
        for family in SIZES:  # the noise floor: the same comparison with nothing to find
            print_row(family, "kl", compare(data_dir, family, "kl", control=True), "A/A: bare vs bare")
        print("  (ratio = bare seconds / ours seconds per epoch; images per epoch: "
              + ", ".join(f"{k} {n}" for k, (n, _) in SIZES.items()) + ")")

        print(f"\ntwo 1-thread processes (MLP, ELBO, {SCALING_IMAGES} images x {SCALING_EPOCHS} epochs "
              f"per run; load average {os.getloadavg()[0]:.1f})")
        s = scaling(data_dir)
        row("one process alone (img/s, runs)", f"{s['one']:.0f}", " ".join(f"{v:.0f}" for v in s["solo"]))
        row("two processes together, aggregate (img/s, runs)", f"{s['two']:.0f}",
            " ".join(f"{v:.0f}" for v in s["pair"]))
        scale = s["two"] / s["one"]
        row("  scaling: aggregate / one", f"{scale:.2f}x", f"goal >= {GOAL_SCALING}x",
            "OK" if scale >= GOAL_SCALING else "MISSED")
        row("  CPU cores obtained: alone / the pair together",
            f"{s['solo_cores']:.2f} / {s['pair_cores']:.2f}")
        row("  scaling if each had a core (CPU s per image)", f"{s['cpu_scaling']:.2f}x")
        if s["pair_cores"] < GOAL_SCALING:
            print(f"  note: the pair obtained {s['pair_cores']:.2f} CPU cores of {os.cpu_count()}: other "
                  "work on the machine held the rest, so the wall figure measures the machine's load")

        print(f"\nPixelCNN decoder, 12 layers x 32 maps, MLP encoder, batch {BATCH} "
              f"(load average {os.getloadavg()[0]:.1f})")
        with mp.get_context("spawn").Pool(1) as pool:  # a fresh process: the default allocator
            p = pool.apply(pixelcnn, (data_dir,))
        for threads, (rate, got) in p.items():
            row(f"{threads} thread{'s' * (threads > 1)}: images/s (CPU cores obtained {got:.2f})",
                f"{rate:.1f}", f"{55000 / rate / 60:.0f} min/55k epoch")
        row("  2 threads / 1 thread", f"{p[2][0] / p[1][0]:.2f}x")
        if p[2][1] < 1.6:
            print(f"  note: 2 threads obtained {p[2][1]:.2f} cores; threads that share one core wait on "
                  "each other at every parallel region, so this figure is the machine's load too")
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main(default_malloc="--default-malloc" in sys.argv[1:]))
