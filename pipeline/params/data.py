"""The `data` section: which data set, where its raw files live, how it is split and binarized."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.params.base import Section

N_TRAIN_POOL = 60000  # MNIST and Fashion-MNIST training files; validation is carved from them


class DataParams(Section):
    placement = frozenset({"raw_dir", "out_dir", "summary", "train_sizes", "download", "mirrors",
                           "download_timeout_s"})

    dataset: Literal["mnist", "fashion_mnist"] = "mnist"  # mnist | fashion_mnist
    # dynamic: keep grey levels, the training loop draws a fresh Bernoulli sample per batch;
    # threshold: pixel > threshold; fixed: the Larochelle & Murray (2011) binarized MNIST.
    # dynamic (fresh Bernoulli sample per batch) | threshold | fixed (Larochelle)
    binarization: Literal["dynamic", "threshold", "fixed"] = "dynamic"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # raw files in data/raw/<dataset>/ (gz or plain); missing ones are downloaded
    raw_dir: str = Field("data/raw", min_length=1)
    out_dir: str = Field("data/prepared", min_length=1)
    summary: str = Field("results/prepare/summary.json", min_length=1)
    # carved from the 60k training images: 55k train / 5k validation
    validation_size: int = Field(5000, ge=1, le=N_TRAIN_POOL - 1)
    split_seed: int = Field(0, ge=0)
    # Nested training-set sizes for the overfitting study: subset n is the first n train rows.
    train_sizes: list[int] = [500, 1000, 5000, 10000, 50000]
    download: bool = True
    # Base URLs tried in order for missing files; empty means the official mirrors.
    mirrors: list[str] = []  # base URLs to try instead of the official mirrors
    download_timeout_s: float = Field(30.0, gt=0)

    @property
    def train_size(self) -> int:
        return N_TRAIN_POOL - self.validation_size

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.binarization == "fixed" and self.dataset != "mnist":
            raise ValueError(
                "binarization 'fixed' is the Larochelle binarized MNIST: it needs dataset 'mnist'"
            )
        for n in self.train_sizes:
            if not 1 <= n <= self.train_size:
                raise ValueError(
                    f"train_sizes: {n} is outside 1..{self.train_size} "
                    f"(the train split is {N_TRAIN_POOL} - validation_size {self.validation_size})"
                )
        if len(set(self.train_sizes)) != len(self.train_sizes):
            raise ValueError(f"train_sizes: duplicates in {self.train_sizes}")
        return self
