"""Semi-supervised classification error on sampled codes (Zhao et al. 2017, Fig. 3E).

The authors' protocol (their svm.py; the figure's codes are sampled z ~ q(z|x), not posterior
means): an RBF-kernel SVM (scikit-learn SVC, C = 1) fitted on n labelled codes and scored on the
test codes, error = 1 - accuracy. Here each image is encoded once and one code z = mean + std * eps
is drawn per image (seeded), for the labelled pool and the test set alike.

gamma: the authors swept gamma by factors of 2 and kept the best *test* accuracy, which selects on
the test set and biases the error down. Here gamma is chosen on the labelled draw alone, by
stratified k-fold cross-validation (k = min(5, smallest class count)) over

    gamma = 2^j / (d Var(z_labelled)),   j = -4 .. 4       (scikit-learn's "scale" at j = 0)

taking the highest mean fold accuracy (ties: the smallest |j|), then refitting on the whole draw;
the test codes are never seen before the final score. A draw too small for two folds per class
keeps j = 0.

The draw is repeated with seeded, class-balanced subsets (n / classes per class, the remainder
spread over randomly chosen classes; the authors drew 1000 at random, once) and the error is
reported as mean and std (ddof 0) over the repeats; its standard error is
pipeline.report.claims.rules.semisupervised_stderr. A code that separates the classes gives an error
near 0; one that ignores them, about 1 - 1/classes (0.9 for ten balanced classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

if TYPE_CHECKING:  # the metric's signature only: no import of the evaluation at run time
    from pipeline.evaluation.context import EvalData, Trained
    from pipeline.params.evaluate import EvaluateParams

GAMMA_STEPS = tuple(range(-4, 5))  # gamma = 2^j * scale
MAX_FOLDS = 5


def balanced_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n examples, as equal per class as the classes allow, drawn without replacement."""
    classes = np.unique(labels)
    if n > len(labels):
        raise ValueError(f"asked for {n} labelled examples, the pool has {len(labels)}")
    quota = {c: n // len(classes) for c in classes}
    for c in rng.choice(classes, n % len(classes), replace=False):
        quota[c] += 1
    picked, spare = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        picked.append(members[:quota[c]])
        spare.append(members[quota[c]:])
    chosen = np.concatenate(picked)
    short = n - len(chosen)  # a class smaller than its quota: fill from the others at random
    if short:
        chosen = np.concatenate([chosen, rng.choice(np.concatenate(spare), short, replace=False)])
    return np.sort(chosen)


def choose_gamma(z: np.ndarray, y: np.ndarray, seed: int = 0,
                 steps: Sequence[int] = GAMMA_STEPS) -> float:
    """The RBF gamma of highest stratified k-fold accuracy on the labelled codes (module docstring)."""
    var = float(z.var())
    scale = 1.0 / (z.shape[1] * var) if var > 0 else 1.0
    folds = min(MAX_FOLDS, int(np.unique(y, return_counts=True)[1].min()))
    if folds < 2:
        return scale
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y))
    best, best_key = scale, None
    for j in sorted(steps, key=lambda j: (abs(j), j)):  # ties keep the step nearest "scale"
        gamma = scale * 2.0 ** j
        acc = np.mean([np.mean(SVC(kernel="rbf", gamma=gamma).fit(z[tr], y[tr]).predict(z[va]) == y[va])
                       for tr, va in splits])
        if best_key is None or acc > best_key:
            best, best_key = gamma, acc
    return best


def semisupervised_error(pool_z: np.ndarray, pool_y: np.ndarray, test_z: np.ndarray,
                         test_y: np.ndarray, label_counts: Sequence[int],
                         repeats: int, seed: int = 0, steps: Sequence[int] = GAMMA_STEPS) -> dict[str, float]:
    """Test error of an RBF SVC trained on n labelled pool codes, for each n in label_counts,
    gamma chosen by cross-validation on those n (choose_gamma).

    Returns {"ss_error_<n>": mean over repeats, "ss_error_<n>_std": std (ddof 0),
    "ss_gamma_<n>": the median chosen gamma}.
    """
    pool_z, test_z = np.asarray(pool_z, np.float64), np.asarray(test_z, np.float64)
    pool_y, test_y = np.asarray(pool_y), np.asarray(test_y)
    out: dict[str, float] = {}
    for n in label_counts:
        errors, gammas = [], []
        for r in range(repeats):
            rng = np.random.default_rng([seed, n, r])
            idx = balanced_subset(pool_y, n, rng)
            if len(np.unique(pool_y[idx])) < 2:  # SVC needs two classes; a constant guess
                pred = np.full_like(test_y, pool_y[idx][0])
            else:
                gamma = choose_gamma(pool_z[idx], pool_y[idx], seed=int(rng.integers(2**31)), steps=steps)
                gammas.append(gamma)
                pred = SVC(kernel="rbf", gamma=gamma).fit(pool_z[idx], pool_y[idx]).predict(test_z)
            errors.append(float(np.mean(pred != test_y)))
        out[f"ss_error_{n}"] = float(np.mean(errors))
        out[f"ss_error_{n}_std"] = float(np.std(errors))
        if gammas:
            out[f"ss_gamma_{n}"] = float(np.median(gammas))
    return out


def sampled_codes(mean: torch.Tensor, std: torch.Tensor, seed: int) -> np.ndarray:
    """One z ~ q(z|x) per image, from a generator of its own (the authors classify sampled z)."""
    g = torch.Generator().manual_seed(seed)
    return (mean + std * torch.randn(mean.shape, generator=g, dtype=mean.dtype)).numpy()


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, float]:
    """The SVC on sampled codes of the first semisupervised_pool train images, scored on sampled
    codes of the test images."""
    pool, _ = data.split("train", settings.semisupervised_pool)
    test, _ = data.split("test")
    pool_z = sampled_codes(*data.encodings(model, "train", settings.semisupervised_pool), settings.seed + 3)
    test_z = sampled_codes(*data.encodings(model, "test"), settings.seed + 4)
    out = semisupervised_error(pool_z, pool.labels.numpy(), test_z, test.labels.numpy(),
                               settings.semisupervised_labels, settings.semisupervised_repeats, settings.seed)
    return {**out, "ss_repeats": settings.semisupervised_repeats, "ss_codes": "sampled"}
