"""Class-distribution mismatch of generated samples (Zhao et al. 2017, Fig. 3C).

n samples x ~ p(x) = E_p(z) p(x|z) are classified by the project's MNIST classifier; with
predicted class frequencies p_k the score is

    KL(uniform || p) = sum_k (1/C) log((1/C) / p_k) = mean_k [-log p_k] - log C

0 when every class is generated equally often, large when the model drops classes. An empty
class would make it infinite: its count is floored at half a sample (frequencies
max(c_k, 1/2) / sum_j max(c_j, 1/2)), so a model generating a single class scores about
(C-1)/C log(2n) - log C (6.61 for n = 10,000, C = 10) and scores of runs with the same n compare.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pipeline.model.base import Decoder

if TYPE_CHECKING:  # the metric's signature only: no import of the evaluation at run time
    from pipeline.evaluation.context import EvalData, Trained
    from pipeline.params.evaluate import EvaluateParams


EMPTY_CLASS_COUNT = 0.5  # the floor of a class count (half a sample), see above


def class_frequencies(predicted: Tensor, n_classes: int = 10) -> Tensor:
    """Floored, normalised class frequencies [C] (float64) of predicted labels [n]."""
    counts = torch.bincount(predicted.flatten().long().cpu(), minlength=n_classes).double()
    if counts.numel() > n_classes:
        raise ValueError(f"predicted labels outside 0..{n_classes - 1}")
    floored = counts.clamp_min(EMPTY_CLASS_COUNT)
    return floored / floored.sum()


def class_mismatch(predicted: Tensor, n_classes: int = 10) -> dict[str, float]:
    """{"class_mismatch": KL(uniform || class frequencies), "class_empty": empty classes,
    "class_max_freq": the largest frequency} for predicted labels [n]."""
    freq = class_frequencies(predicted, n_classes)
    kl = float(-freq.log().mean() - math.log(n_classes))
    empty = int((torch.bincount(predicted.flatten().long().cpu(), minlength=n_classes) == 0).sum())
    return {"class_mismatch": kl, "class_empty": float(empty), "class_max_freq": float(freq.max())}


@torch.no_grad()
def generated_labels(decoder: Decoder, classifier: nn.Module, latent_dim: int,
                     n: int, images: str = "sample", seed: int = 0,
                     batch: int = 1000) -> Tensor:
    """Labels [n] the classifier gives to images decoded from z ~ N(0, I).

    images="sample": x ~ p(x|z), binary, the model's own generative distribution and the same
    kind of image for factorized and autoregressive decoders (the default; the classifier is
    trained on dynamically binarized digits, see pipeline.evaluation.classifier). images="mean": the
    decoder's mean_image (pixel probabilities; a sample for autoregressive decoders).
    Seeded through a forked global RNG (Decoder.sample draws from it), which is left untouched.
    """
    if images not in ("sample", "mean"):
        raise ValueError(f"unknown images {images!r}: 'sample' or 'mean'")
    device = next(decoder.parameters()).device
    labels = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), latent_dim, device=device)
            x = decoder.sample(z) if images == "sample" else decoder.mean_image(z)
            labels.append(classifier(x).argmax(1).cpu())
    return torch.cat(labels)


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    """class_mismatch_samples images from the model, labelled by the cached MNIST classifier.
    A Gaussian decoder (model.likelihood) is shown by its mean images, grey levels in [0, 1] like
    half the classifier's training images: its samples mu + sigma eps are pixel noise around them,
    an image kind the classifier never saw. `class_images` says which images were labelled."""
    from pipeline.evaluation.classifier import get_classifier

    clf, meta = get_classifier(data.data_dir, settings.classifier, model.device)
    decoder = model.net.decoder
    gaussian = getattr(decoder, "likelihood", "bernoulli") == "gaussian"
    images = "mean" if gaussian else settings.class_mismatch_images
    labels = generated_labels(decoder, clf, model.spec.model.latent_dim,
                              settings.class_mismatch_samples, images, settings.seed)
    return {**class_mismatch(labels), "class_samples": len(labels), "class_images": images,
            "classifier_accuracy": meta["test_accuracy"]}
