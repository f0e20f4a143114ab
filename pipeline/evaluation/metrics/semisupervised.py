"""Semi-supervised classification error on the encodings (Zhao et al. 2017, Fig. 3E).

An RBF-kernel SVM (scikit-learn SVC, default C = 1 and gamma = "scale", i.e. 1 / (d Var(z)))
is fitted on n labelled encodings (posterior means) drawn from a pool and scored on held-out
encodings; the draw is repeated with seeded, class-balanced subsets (n / classes per class, the
remainder spread over randomly chosen classes) and the error reported as mean and std.
A code that separates the classes gives an error near 0; one that ignores them, about
1 - 1/classes (0.9 for ten balanced classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.svm import SVC

if TYPE_CHECKING:  # the metric's signature only: no import of the evaluation at run time
    from pipeline.evaluation.context import EvalData, Trained
    from pipeline.params.evaluate import EvaluateParams




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


def semisupervised_error(pool_z: np.ndarray, pool_y: np.ndarray, test_z: np.ndarray,
                         test_y: np.ndarray, label_counts: Sequence[int],
                         repeats: int, seed: int = 0) -> dict[str, float]:
    """Test error of an RBF SVC trained on n labelled pool encodings, for each n in label_counts.

    Returns {"ss_error_<n>": mean over repeats, "ss_error_<n>_std": std (ddof 0)}.
    """
    pool_z, test_z = np.asarray(pool_z, np.float64), np.asarray(test_z, np.float64)
    pool_y, test_y = np.asarray(pool_y), np.asarray(test_y)
    out: dict[str, float] = {}
    for n in label_counts:
        errors = []
        for r in range(repeats):
            rng = np.random.default_rng([seed, n, r])
            idx = balanced_subset(pool_y, n, rng)
            if len(np.unique(pool_y[idx])) < 2:  # SVC needs two classes; a constant guess
                pred = np.full_like(test_y, pool_y[idx][0])
            else:
                pred = SVC(kernel="rbf", gamma="scale").fit(pool_z[idx], pool_y[idx]).predict(test_z)
            errors.append(float(np.mean(pred != test_y)))
        out[f"ss_error_{n}"] = float(np.mean(errors))
        out[f"ss_error_{n}_std"] = float(np.std(errors))
    return out


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, float]:
    """The SVC on posterior means of the first semisupervised_pool train images, scored on the
    test encodings."""
    pool, _ = data.split("train", settings.semisupervised_pool)
    test, _ = data.split("test")
    pool_mean, _ = data.encodings(model, "train", settings.semisupervised_pool)
    test_mean, _ = data.encodings(model, "test")
    out = semisupervised_error(pool_mean.numpy(), pool.labels.numpy(), test_mean.numpy(),
                               test.labels.numpy(), settings.semisupervised_labels,
                               settings.semisupervised_repeats, settings.seed)
    return {**out, "ss_repeats": settings.semisupervised_repeats}
