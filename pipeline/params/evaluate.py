"""The `evaluate` section: how a trained checkpoint is measured (pipeline.evaluation).

Test-set log-likelihood by importance sampling (K = 5000, Burda et al.), the latent metrics of
the paper's Fig. 3 on the test encodings, semi-supervised error, and the class mismatch of
generated samples scored by an MNIST classifier the project trains and caches itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.params.accel import AccelParams
from pipeline.params.base import Section


class ClassifierParams(Section):
    """The CNN that labels generated samples; retrained when its cache is missing or stale
    (different data checksums or different settings below)."""

    placement = frozenset({"path"})

    path: str = Field("results/classifier/classifier.pt", min_length=1)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(3e-3, gt=0.0, le=1.0)  # Adam, one-cycle schedule peaking here
    seed: int = Field(0, ge=0)
    train_size: int | None = Field(None, ge=1)  # first n train rows; null: all


# The metrics of pipeline.evaluation.evaluate.METRICS, by name (a test keeps the two lists equal).
METRIC_NAMES = ("nll", "loglik_prior", "loglik_ais", "latent", "semisupervised", "class_mismatch")


class EvaluateParams(Section):
    # loglik_rows and batch_size only chunk the work: the estimators draw their noise per
    # (example, block), independent of chunking (pipeline.evaluation.loglik).
    placement = frozenset({"out_dir", "summary", "plots_dir", "device", "threads", "max_concurrent",
                           "gpus_per_cell", "batch_size", "loglik_rows"})

    out_dir: str = Field("results/eval", min_length=1)  # metrics/history tables, images, cache
    summary: str = Field("results/metrics/evaluate.json", min_length=1)  # DVC metrics
    plots_dir: str = Field("results/plots", min_length=1)  # DVC plots data (CSV)
    seed: int = Field(0, ge=0)  # test binarization, IS noise, prior samples, SVM draws
    # checkpoint: the run's own train.device (auto: CUDA when visible); or auto, cpu, cuda
    # checkpoint (the run's train.device) | auto | cpu | cuda
    device: Literal["checkpoint", "auto", "cpu", "cuda"] = "checkpoint"
    threads: int = Field(1, ge=1)  # torch intra-op threads (and a Ray evaluation task's CPUs)
    # Cells evaluated at once. 1: one after another in the stage's own process. More: each
    # cell is a Ray task (local Ray, or the cluster at cluster.address / RAY_ADDRESS, whose
    # nodes must see the repository's paths) holding `threads` CPUs and gpus_per_cell GPUs.
    # cells at once: 1 in the stage's process; more as Ray tasks (local, or cluster.address)
    max_concurrent: int = Field(1, ge=1)
    # A Ray evaluation task's GPU share; "auto": one GPU when the cluster has any, else none.
    # a Ray evaluation task's GPU share; auto: 1 when the cluster has GPUs
    gpus_per_cell: Literal["auto"] | float = Field("auto")
    batch_size: int = Field(1000, ge=1)  # encoder batch for the latent metrics
    # Importance-sampled log-likelihood: K samples of q(z|x) per image, on the first
    # loglik_test_size test images (null: all 10k) and, to show overfitting, on the first
    # loglik_train_size train images (0: skip).
    loglik_k: int = Field(5000, ge=1)  # IS samples of q(z|x) per image (Burda et al. 2016)
    # The IS proposal (pipeline.evaluation.loglik): defensive, 1/2 q(z|x) + 1/2 N(mean(x), I)
    # (an encoder trained without a KL term is far narrower than p(z|x): q alone over-states
    # InfoVAE's NLL by 18-31 nats with a PixelCNN decoder), or encoder, q(z|x) alone.
    # defensive | encoder
    loglik_proposal: Literal["defensive", "encoder"] = "defensive"
    loglik_test_size: int | None = Field(None, ge=1)  # first n test images; null: all 10k
    loglik_train_size: int = Field(1000, ge=0)  # first n train images, to show overfitting; 0: skip
    loglik_rows: int = Field(2048, ge=1)  # decoder rows per call (memory bound, not K)
    # The authors' first estimator (z ~ p(z)), for comparison; 0 turns it off. Affordable for
    # factorized decoders only (an autoregressive decoder needs one pass per (x, z) pair).
    # authors' first estimator (z ~ p(z)), e.g. 50000; 0: off (factorized decoders only)
    prior_samples: int = Field(0, ge=0)
    # Annealed importance sampling (pipeline.evaluation.ais; Wu et al. 2017), which does not use
    # the encoder: on the first ais_test_size test images (0: off), ais_chains chains of
    # ais_steps intermediate distributions, one HMC step of ais_leapfrog leapfrog steps each.
    # Cost: (ais_chains + 4 pilot chains) x (1 + (ais_steps - 1) x ais_leapfrog) decoder passes
    # (forward + backward) per image; decoder calls see at most loglik_rows z's.
    ais_test_size: int = Field(0, ge=0)
    ais_chains: int = Field(16, ge=1)
    ais_steps: int = Field(200, ge=1)
    ais_leapfrog: int = Field(10, ge=1)
    # Where each metric runs: metric name -> the sweep grids whose cells it measures (a metric
    # not named runs on every cell). The costly ones can run only where a claim reads them,
    # e.g. {loglik_ais: [table1], class_mismatch: [latent_dim]}.
    # metric -> grids whose cells it measures (unnamed: every cell), e.g. {loglik_ais: [table1]}
    metric_grids: dict[str, list[str]] = Field(default_factory=dict)
    # Latent metrics (MMD to the prior, covariance log-det, MI, active units) on this many
    # test encodings (null: all), and on as many train encodings (the first rows of the
    # cell's own training set: log-det on train vs test shows over-fitting, the paper's Fig. 4).
    # encodings for MMD / log-det / MI / active units (test, and train); null: all
    latent_size: int | None = Field(None, ge=2)
    # MMD(q(z), p(z)) of Fig. 3A: the unbiased U-statistic on sampled codes z ~ q(z|x) of the
    # first mmd_samples train images against as many N(0, I) samples (the authors: 40k of each).
    # sampled train codes for the unbiased MMD to the prior (authors: 40000)
    mmd_samples: int = Field(10000, ge=2)
    # Semi-supervised error (the authors' Fig. 3E: 1000 labels): RBF SVM on sampled codes
    # z ~ q(z|x) of labelled train images, gamma by cross-validation on the labelled draw, scored
    # on sampled test codes; repeated with seeded class-balanced draws (the s.e. comes from them).
    # labelled images per run (one error per size; the authors: 1000)
    semisupervised_labels: list[int] = Field([1000], min_length=1)
    semisupervised_repeats: int = Field(5, ge=1)
    semisupervised_pool: int = Field(10000, ge=1)  # first n train images to draw labels from
    # Class mismatch of generated samples: n decoded prior samples; "sample" classifies
    # x ~ p(x|z) (binary), "mean" the decoder's mean image.
    class_mismatch_samples: int = Field(10000, ge=0)  # 0: skip
    # sample (x ~ p(x|z), binary) | mean (decoder mean image)
    class_mismatch_images: Literal["sample", "mean"] = "sample"
    # the MNIST CNN that labels generated samples (trained once, cached)
    classifier: ClassifierParams = ClassifierParams()
    accel: AccelParams = AccelParams()  # GPU fast paths (auto: on for CUDA only)

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        if isinstance(self.gpus_per_cell, float) and not 0 <= self.gpus_per_cell <= 8:
            raise ValueError(f"gpus_per_cell must be in [0, 8] or 'auto', got {self.gpus_per_cell}")
        if self.device == "cuda" and self.gpus_per_cell == 0 and self.max_concurrent > 1:
            raise ValueError("device 'cuda' needs gpus_per_cell > 0 (or 'auto') when max_concurrent > 1")
        unknown = sorted(set(self.metric_grids) - set(METRIC_NAMES))
        if unknown:
            raise ValueError(f"metric_grids: unknown metrics {unknown}; the metrics are {list(METRIC_NAMES)}")
        if any(n < 2 for n in self.semisupervised_labels):
            raise ValueError(f"semisupervised_labels must be >= 2, got {self.semisupervised_labels}")
        if max(self.semisupervised_labels) > self.semisupervised_pool:
            raise ValueError(f"semisupervised_labels {self.semisupervised_labels} exceed "
                             f"semisupervised_pool {self.semisupervised_pool}")
        return self
