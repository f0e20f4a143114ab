"""GPU fast paths for training and evaluation, each switchable (params `train.accel`, `evaluate.accel`).

- bf16 autocast around the encoder and decoder networks only. What must stay exact stays fp32:
  the encoder's (mean, std) and the decoder's logits are cast to fp32 before any sum
  (base.gaussian_head, Decoder.log_prob), and the KL, the divergences (the MMD kernel sums), the
  IS weights and their log-sum-exp (float64) are computed outside the autocast region.
- channels_last memory format of the convolution weights (tensor-core friendly on CUDA).
- cudnn.benchmark: cuDNN times its algorithms once per input shape and keeps the fastest.
- torch.compile of the PixelCNN decoder's network; a failure to compile (no compiler, an
  unsupported op) warns once and falls back to eager, never stops a run.
- IS decoder rows per call sized from free GPU memory (the estimate does not depend on the
  chunking: pipeline.evaluation.loglik seeds its noise per block).

Every switch is "auto" (on for CUDA, off for CPU), "on" or "off": CPU stays the reference, and
each path can be turned off on a GPU to measure what it buys (bench/bench_gpu.py). No pydantic
here: the settings are read by attribute, so bench_gpu passes a plain namespace.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

SWITCHES = ("auto", "on", "off")
ROW_ALIGN = 256  # IS noise blocks (loglik.DEFAULT_NOISE_BLOCK): whole blocks per decoder call
MAX_ROWS = 1 << 16


def switch(value: str, device: torch.device) -> bool:
    """"auto" -> on for CUDA only; "on"/"off" as said."""
    if value not in SWITCHES:
        raise ValueError(f"accel switch must be one of {SWITCHES}, got {value!r}")
    return value == "on" or (value == "auto" and device.type == "cuda")


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device_type: str) -> Iterator[None]:
    """torch.autocast to `dtype` on `device_type`; nothing when dtype is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type, dtype=dtype):
        yield


class GuardedCompile:
    """A torch.compile'd callable that falls back to the eager one, with a warning, the first
    time compiling or running the compiled code raises."""

    def __init__(self, eager: Callable[..., Any], backend: str = "inductor", **options: Any):
        self.eager, self.failed = eager, False
        self.compiled = torch.compile(eager, backend=backend, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # any compiler failure: the eager network still runs
            self.failed = True
            warnings.warn(f"torch.compile of the PixelCNN failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running it eagerly "
                          "(set accel.compile: off to skip the attempt)", RuntimeWarning, stacklevel=2)
            return self.eager(*args, **kwargs)


def compile_decoder(decoder: nn.Module, backend: str = "inductor") -> bool:
    """Route an autoregressive decoder's teacher-forced network pass (its `logits`) through
    torch.compile; False (and nothing done) for decoders without a `fast_forward` hook."""
    if not hasattr(decoder, "fast_forward"):
        return False
    decoder.fast_forward = GuardedCompile(decoder.forward, backend=backend)
    return True


@dataclass
class Accel:
    """What prepare() switched on, for one model on one device."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    cudnn_benchmark: bool
    compiled: bool
    memory_fraction: float

    def loglik_rows(self, decoder: nn.Module, latent_dim: int, fallback: int) -> int:
        """Decoder rows per IS call: from free GPU memory on CUDA (memory_fraction > 0), else
        `fallback` (the configured evaluate.loglik_rows)."""
        if self.device.type != "cuda" or self.memory_fraction <= 0:
            return fallback
        return rows_from_memory(decoder, latent_dim, self.device, self.memory_fraction, self.amp_dtype)

    def summary(self) -> dict[str, Any]:
        return {"accel_amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                "accel_channels_last": self.channels_last, "accel_cudnn_benchmark": self.cudnn_benchmark,
                "accel_compiled": self.compiled}


def prepare(model: nn.Module, device: torch.device, settings: Any) -> Accel:
    """Apply `settings` (autocast, channels_last, cudnn_benchmark, compile, memory_fraction) to
    a model already on `device`. The model gets `amp_dtype` (read by InfoVAE.terms) and its
    decoder a compiled network pass; returns what was applied."""
    amp = {"bf16": torch.bfloat16, "off": None}[settings.autocast] if settings.autocast != "auto" \
        else (torch.bfloat16 if device.type == "cuda" else None)
    channels_last = switch(settings.channels_last, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    bench = device.type == "cuda" and settings.cudnn_benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bench  # process-wide, like the thread count
    decoder = getattr(model, "decoder", model)
    compiled = switch(settings.compile, device) and compile_decoder(decoder)
    model.amp_dtype = amp
    return Accel(device, amp, channels_last, bench, compiled, float(settings.memory_fraction))


@torch.no_grad()
def rows_from_memory(decoder: nn.Module, latent_dim: int, device: torch.device, fraction: float,
                     amp_dtype: torch.dtype | None, probe_rows: int = ROW_ALIGN) -> int:
    """Rows (z's) per decoder call that fit in `fraction` of the free GPU memory: one probe
    call of `probe_rows` measures the peak bytes per row; whole noise blocks, at most 2^16."""
    x = torch.zeros(probe_rows, 1, 28, 28, device=device)
    z = torch.zeros(probe_rows, latent_dim, device=device)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with autocast(amp_dtype, device.type):
        decoder.log_prob(x, z)
    per_row = max(1, (torch.cuda.max_memory_allocated(device) - base) // probe_rows)
    free, _ = torch.cuda.mem_get_info(device)
    rows = int(free * fraction) // per_row
    return max(ROW_ALIGN, min(MAX_ROWS, rows - rows % ROW_ALIGN))
