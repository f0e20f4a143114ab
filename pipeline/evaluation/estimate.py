"""One entry point to the log-likelihood estimators of a trained model: importance sampling and
the prior proposal (pipeline.evaluation.loglik), annealed importance sampling
(pipeline.evaluation.ais, which builds on loglik's pieces, so the dispatch lives above both)."""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.evaluation.ais import model_ais_log_likelihood
from pipeline.evaluation.loglik import (
    LoglikEstimate,
    Progress,
    decoder_log_lik,
    decoder_log_lik_table,
    importance_log_likelihood,
    prior_log_likelihood,
)
from pipeline.model.objective import InfoVAE

PROPOSALS = {"encoder": None, "defensive": 1.0}  # IS proposal -> the wide component's std


def model_log_likelihood(model: InfoVAE, x: Tensor, method: str, samples: int, *, seed: int = 0,
                         rows: int | None = None, progress: Progress | None = None,
                         amp: torch.dtype | None = None, proposal: str = "encoder",
                         **ais_options: int) -> LoglikEstimate:
    """log p(x) of a trained InfoVAE (eval mode) for images x [N, 1, 28, 28] (binary; grey levels
    for a Gaussian decoder, whose log p(x) is a density's) on the
    model's device: method "is" (K = samples draws of q(z|x) per image), "prior" (M = samples
    draws of p(z)) or "ais" (annealed importance sampling, pipeline.evaluation.ais: K = samples
    chains; ais_options steps, leapfrog); at most `rows` z's per decoder call (None: all).
    `amp`: autocast dtype of the decoder network (IS: the encoder, weights and sums stay fp32).
    `proposal` (IS): "encoder", q(z|x) alone, or "defensive", q mixed half and half with
    N(mean(x), I) (pipeline.evaluation.loglik, eq. IS-DEF)."""
    if method == "ais":
        return model_ais_log_likelihood(model, x, samples, seed=seed, rows=rows,
                                        progress=progress, **ais_options)
    if ais_options:
        raise ValueError(f"options {sorted(ais_options)} are for method 'ais' only")
    if model.training:
        raise ValueError("evaluate log-likelihoods in eval mode (model.eval())")
    x = x.to(next(model.parameters()).device)
    if method == "is":
        if proposal not in PROPOSALS:
            raise ValueError(f"unknown IS proposal {proposal!r}: one of {sorted(PROPOSALS)}")
        return importance_log_likelihood(x, model.encoder, decoder_log_lik(model.decoder, amp),
                                         samples, seed=seed, rows=rows, progress=progress,
                                         wide=PROPOSALS[proposal])
    if method == "prior":
        # Autoregressive pairs cost a decoder pass each: keep chunks of examples small there.
        per_chunk = 1 if model.decoder.autoregressive else 1024
        return prior_log_likelihood(x, decoder_log_lik_table(model.decoder), model.encoder.latent_dim,
                                    samples, seed=seed, rows=rows,
                                    examples_per_chunk=per_chunk, progress=progress)
    raise ValueError(f"unknown log-likelihood method {method!r}: 'is', 'prior' or 'ais'")
