"""The `accel` subsections of `train` and `evaluate`: the GPU fast paths (pipeline.infra.accel).

Each switch is auto (on for CUDA, off for CPU), on or off, so that its effect can be measured
(bench/bench_gpu.py); CPU runs are unchanged by the defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.params.base import Section

Switch = Literal["auto", "on", "off"]


class AccelParams(Section):
    # bf16 autocast of the encoder and decoder networks; sums, KL, MMD and IS weights stay fp32
    autocast: Literal["auto", "bf16", "off"] = "auto"
    channels_last: Switch = "auto"  # channels_last convolution weights
    cudnn_benchmark: bool = True  # CUDA only: cuDNN picks its fastest algorithm per shape
    compile: Switch = "auto"  # torch.compile the PixelCNN; a failure warns and runs eagerly
    data_on_device: bool = True  # training images held on the device (else copied per batch)
    # CUDA evaluation: IS decoder rows per call from this fraction of free GPU memory
    # (0: evaluate.loglik_rows as set)
    memory_fraction: float = Field(0.5, ge=0.0, le=0.95)
