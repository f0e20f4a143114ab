"""The optimiser step's pieces that the InfoVAE authors' settings change: the optimiser itself,
gradient clipping, and an L2 penalty (train.optimizer, grad_clip, grad_clip_mode, weight_decay).

The authors' TensorFlow 1 code (ShengjiaZhao/PixelCNN, autoencoder.py) trains with
`tf.train.RMSPropOptimizer(1e-3)` on `tf.clip_by_value(g, -c, c)` gradients, c = conf.grad_clip = 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pydantic stays off the trainer's path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import TrainParams


class RMSpropTF1(torch.optim.Optimizer):
    """tf.train.RMSPropOptimizer (TF 1.x, momentum 0, not centered), per parameter tensor:

        ms <- decay ms + (1 - decay) g^2,     ms_0 = 1 (TF's ones_initializer for the "rms" slot)
        w  <- w - lr g / sqrt(ms + epsilon),  decay = 0.9, epsilon = 1e-10 (inside the root)

    torch.optim.RMSprop differs in all three: alpha 0.99, eps 1e-8 outside the root, ms_0 = 0 --
    so its first steps are ~lr / sqrt(1 - alpha) = 10 lr per unit-sign gradient, against TF's
    ~lr g for small g.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, decay: float = 0.9,
                 epsilon: float = 1e-10):
        if lr <= 0 or not 0 <= decay < 1 or epsilon < 0:
            raise ValueError(f"need lr > 0, 0 <= decay < 1, epsilon >= 0; got {lr}, {decay}, {epsilon}")
        super().__init__(params, {"lr": lr, "decay": decay, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p, memory_format=torch.preserve_format)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1.0 - group["decay"])
                p.addcdiv_(p.grad, (ms + group["epsilon"]).sqrt_(), value=-group["lr"])
        return loss


def make_optimizer(params: list, cfg: TrainParams) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":  # the authors' v1 choice of method, torch's defaults
        return torch.optim.RMSprop(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop_tf1":
        return RMSpropTF1(params, lr=cfg.lr)
    return torch.optim.Adam(params, lr=cfg.lr)


def clip_gradients(params: list[nn.Parameter], cfg: TrainParams) -> None:
    """norm: g <- g min(1, c / ||g||_2) with the norm over all parameters together;
    value: g <- clamp(g, -c, c) entry by entry (the authors'). c = train.grad_clip; None: no-op."""
    if cfg.grad_clip is None:
        return
    if cfg.grad_clip_mode == "value":
        torch.nn.utils.clip_grad_value_(params, cfg.grad_clip)
    else:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)


def decayed_weights(model: nn.Module) -> list[nn.Parameter]:
    """The tensors an L2 penalty covers: weights of encoder and decoder, not biases (dim >= 2), as
    tf.contrib.layers' weights_regularizer, which the authors attach to kernels only."""
    return [p for p in (*model.encoder.parameters(), *model.decoder.parameters()) if p.dim() >= 2]


def l2_penalty(weights: list[nn.Parameter], weight_decay: float) -> Tensor | float:
    """weight_decay / 2 * sum ||W||^2 (tf.nn.l2_loss's 1/2): its gradient is weight_decay * W."""
    if not weight_decay or not weights:
        return 0.0
    return 0.5 * weight_decay * sum(w.square().sum() for w in weights)
