"""Known answers for the evaluation metrics: semi-supervised error, class mismatch, and the
MNIST classifier behind it (caching; the >= 98% accuracy check is slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.evaluation.classifier import cache_key, get_classifier, load_cached
from pipeline.evaluation.metrics.class_mismatch import class_frequencies, class_mismatch, generated_labels
from pipeline.evaluation.metrics.semisupervised import balanced_subset, choose_gamma, semisupervised_error
from pipeline.params.evaluate import ClassifierParams, EvaluateParams

# ----------------------------------------------------------------------------- semi-supervised


def clusters(n: int, spread: float, seed: int, d: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    centres = np.random.default_rng(99).normal(size=(10, d)) * 10
    return centres[y] * spread + rng.normal(size=(n, d)), y


def test_separated_clusters_give_zero_error():
    pool_z, pool_y = clusters(3000, 1.0, 0)
    test_z, test_y = clusters(2000, 1.0, 1)
    out = semisupervised_error(pool_z, pool_y, test_z, test_y, label_counts=(100, 1000), repeats=3)
    assert set(out) == {"ss_error_100", "ss_error_100_std", "ss_error_1000", "ss_error_1000_std",
                        "ss_gamma_100", "ss_gamma_1000"}
    assert out["ss_error_100"] < 0.01 and out["ss_error_1000"] < 0.01


def test_codes_independent_of_labels_give_chance_error():
    pool_z, pool_y = clusters(3000, 0.0, 2)  # spread 0: pure noise
    test_z, test_y = clusters(4000, 0.0, 3)
    out = semisupervised_error(pool_z, pool_y, test_z, test_y, label_counts=(100, 1000), repeats=3)
    for n in (100, 1000):
        assert out[f"ss_error_{n}"] == pytest.approx(0.9, abs=0.03)
        assert out[f"ss_error_{n}_std"] < 0.03


def test_partially_informative_codes_fall_in_between_and_improve_with_labels():
    pool_z, pool_y = clusters(3000, 0.15, 4)
    test_z, test_y = clusters(2000, 0.15, 5)
    out = semisupervised_error(pool_z, pool_y, test_z, test_y, label_counts=(20, 1000), repeats=3, seed=1)
    assert 0.05 < out["ss_error_1000"] < out["ss_error_20"] < 0.85
    again = semisupervised_error(pool_z, pool_y, test_z, test_y, label_counts=(20, 1000), repeats=3, seed=1)
    assert again == out  # seeded draws


def test_gamma_is_chosen_by_cross_validation_on_the_labelled_codes():
    """Labels alternating every 0.1 along one axis need a kernel much narrower than 'scale'
    (1 / (d Var z)): cross-validation on the labelled codes alone finds a larger gamma, and the
    error on fresh codes is then far below the 'scale' SVC's (which is near chance)."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(7)

    def codes(n):
        z = rng.uniform(0, 1, (n, 1))
        return z, (np.floor(z[:, 0] / 0.1) % 2).astype(int)

    z, y = codes(400)
    tz, ty = codes(2000)
    scale = 1.0 / z.var()
    gamma = choose_gamma(z, y, seed=0)
    assert gamma >= 4 * scale
    err = semisupervised_error(z, y, tz, ty, label_counts=(400,), repeats=2)["ss_error_400"]
    assert err < 0.1 < 0.3 < np.mean(SVC(gamma="scale").fit(z, y).predict(tz) != ty)


def test_balanced_subset():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 50)
    idx = balanced_subset(labels, 105, rng)
    counts = np.bincount(labels[idx], minlength=10)
    assert len(set(idx)) == 105 and counts.min() == 10 and counts.max() == 11
    few = np.array([0] * 3 + [1] * 100)  # class 0 smaller than its quota: filled from class 1
    idx = balanced_subset(few, 20, rng)
    assert len(set(idx)) == 20 and (few[idx] == 0).sum() == 3
    with pytest.raises(ValueError, match="pool has"):
        balanced_subset(labels, 501, rng)


# ----------------------------------------------------------------------------- class mismatch


def test_uniform_predictions_score_zero():
    out = class_mismatch(torch.arange(10000) % 10)
    assert out["class_mismatch"] == pytest.approx(0.0, abs=1e-12)
    assert out["class_empty"] == 0 and out["class_max_freq"] == pytest.approx(0.1)


def test_single_class_scores_the_floor_value():
    n = 10000
    out = class_mismatch(torch.full((n,), 3))
    floor = 0.5 / (n + 9 * 0.5)
    expected = -(9 * math.log(floor) + math.log(n / (n + 4.5))) / 10 - math.log(10)
    assert out["class_mismatch"] == pytest.approx(expected, rel=1e-12)
    assert out["class_mismatch"] == pytest.approx(0.9 * math.log(2 * n) - math.log(10), abs=1e-3)
    assert out["class_empty"] == 9


def test_skewed_histogram_matches_closed_form_kl():
    counts = np.array([500, 1500, 1000, 1000, 800, 1200, 600, 1400, 1000, 1000])
    labels = torch.from_numpy(np.repeat(np.arange(10), counts))
    p = counts / counts.sum()
    kl = float(np.sum(0.1 * np.log(0.1 / p)))
    assert class_mismatch(labels)["class_mismatch"] == pytest.approx(kl, rel=1e-12)
    assert float(class_frequencies(labels).sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        class_frequencies(torch.tensor([0, 10]))


class _PixelClassifier(nn.Module):
    """Labels an image by how many pixels are on (0..784 -> 10 bins): a stand-in classifier."""

    def forward(self, x):
        return nn.functional.one_hot((x.flatten(1).sum(1) * 10 / 785).long(), 10).float()


class _ConstantDecoder(nn.Module):
    autoregressive = False

    def __init__(self, p: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))

    def logits(self, z, x=None):
        return self.logit.expand(z.shape[0], 1, 28, 28)

    def sample(self, z):
        return torch.bernoulli(torch.sigmoid(self.logits(z)))

    def mean_image(self, z):
        return torch.sigmoid(self.logits(z))


def test_generated_labels_are_seeded_and_leave_global_rng_alone():
    dec, clf = _ConstantDecoder(0.45), _PixelClassifier()
    state = torch.get_rng_state()
    a = generated_labels(dec, clf, latent_dim=2, n=250, seed=3, batch=100)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (250,) and torch.equal(a, generated_labels(dec, clf, 2, n=250, seed=3, batch=100))
    assert set(a.tolist()) <= {3, 4, 5}  # ~353 of 784 pixels on
    mean = generated_labels(dec, clf, 2, n=50, images="mean")
    assert set(mean.tolist()) == {4}  # the mean image: 784 * 0.45 = 352.8 -> bin 4
    with pytest.raises(ValueError, match="images"):
        generated_labels(dec, clf, 2, n=5, images="grey")


# ----------------------------------------------------------------------------- classifier


def test_classifier_is_cached_and_retrained_when_stale(prepared_mnist, tmp_path):
    torch.set_num_threads(1)
    cfg = ClassifierParams(path=str(tmp_path / "clf.pt"), epochs=1, train_size=2000, batch_size=50)
    logs: list[str] = []
    model, meta = get_classifier(prepared_mnist, cfg, log=logs.append)
    assert not meta["cached"] and logs and 0.7 < meta["test_accuracy"] <= 1.0
    assert 0.7 < meta["test_accuracy_grey"] <= 1.0
    again, meta2 = get_classifier(prepared_mnist, cfg, log=logs.append)
    assert meta2["cached"] and meta2["test_accuracy"] == meta["test_accuracy"]
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(again(x), model(x))
    cpu = torch.device("cpu")
    assert load_cached(cfg.path, cache_key(prepared_mnist, cfg), cpu) is not None
    # other settings or other data -> stale; a damaged file -> retrained, not an error
    assert load_cached(cfg.path, cache_key(prepared_mnist, cfg.model_copy(update={"seed": 1})), cpu) is None
    assert load_cached(cfg.path, {**cache_key(prepared_mnist, cfg), "train_sha256": "0" * 64}, cpu) is None
    (tmp_path / "clf.pt").write_bytes(b"not a checkpoint")
    assert load_cached(cfg.path, cache_key(prepared_mnist, cfg), cpu) is None
    assert load_cached(tmp_path / "missing.pt", cache_key(prepared_mnist, cfg), cpu) is None


@pytest.mark.slow
def test_classifier_reaches_98_percent_on_mnist(prepared_mnist, tmp_path):
    torch.set_num_threads(2)
    cfg = EvaluateParams().classifier.model_copy(update={"path": str(tmp_path / "clf.pt")})
    _, meta = get_classifier(prepared_mnist, cfg)
    assert meta["test_accuracy"] >= 0.98 and meta["test_accuracy_grey"] >= 0.98
