"""prepare on the real MNIST (known answers) and on synthetic files (every error path)."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.formats import FormatError
from pipeline.data.prepare import prepare
from pipeline.data.raw import ChecksumError, RawDataError
from pipeline.data.splits import DataError, load_split, read_metadata
from pipeline.params.data import DataParams
from tests.conftest import BINARIZED_DIR, FASHION_DIR, link_raw
from tests.synthetic import fake_mnist, idx_contents, write_source

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _params(raw, out, **kw) -> DataParams:
    return DataParams(raw_dir=str(raw), out_dir=str(out / "data"),
                      summary=str(out / "summary.json"), download=False, **kw)


def _pool(prepared):
    """The 60k training pool in original order, rebuilt from the train and validation splits."""
    train, val = load_split(prepared, "train"), load_split(prepared, "validation")
    index = torch.cat([train.index, val.index])
    order = torch.argsort(index)
    return (torch.cat([train.images, val.images])[order], torch.cat([train.labels, val.labels])[order],
            index[order])


# ------------------------------------------------------------------ real MNIST, known answers


def test_real_mnist_counts_labels_and_mean(prepared_mnist):
    images, labels, index = _pool(prepared_mnist)
    assert len(load_split(prepared_mnist, "train")) == 55000
    assert len(load_split(prepared_mnist, "validation")) == 5000
    test = load_split(prepared_mnist, "test")
    assert len(test) == 10000 and torch.equal(index, torch.arange(60000))
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert float(images.double().mean() * 255) == pytest.approx(33.318, abs=5e-4)
    assert float(test.images.double().mean() * 255) == pytest.approx(33.791, abs=5e-4)
    assert torch.bincount(labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test.labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    # Dynamic binarization keeps the grey levels: exactly the 256 levels of the IDX bytes.
    assert torch.equal(torch.unique(images * 255).round(), torch.arange(256.0))


def test_metadata_records_sources_and_params(prepared_mnist):
    meta = read_metadata(prepared_mnist / "train.parquet")
    assert meta["sources"]["train-images-idx3-ubyte.gz"] == (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db")
    assert meta["binarization"] == "dynamic" and meta["pixel_scale"] == 255
    assert meta["data_params"]["validation_size"] == 5000 and meta["rows"] == 55000
    summary = json.loads((prepared_mnist.parent / "summary.json").read_text())
    assert summary["count"] == {"train": 55000, "validation": 5000, "test": 10000}
    assert "class_histogram" not in summary  # the DVC metrics file: out of dvc metrics show's columns
    config = json.loads((prepared_mnist / "config.json").read_text())
    assert sum(config["summary"]["class_histogram"]["test"].values()) == 10000
    schema = pq.read_schema(prepared_mnist / "train.parquet")
    assert str(schema.field("pixels").type) == "fixed_size_binary[784]"


def test_train_subsets_are_nested_prefixes(prepared_mnist):
    full = load_split(prepared_mnist, "train")
    assert len(full) > 5000
    small = load_split(prepared_mnist, "train", limit=500)
    large = load_split(prepared_mnist, "train", limit=5000)
    assert len(small) == 500 and len(large) == 5000
    assert torch.equal(large.index[:500], small.index)
    assert torch.equal(large.images[:500], small.images)
    # The order is a seeded shuffle, so a small subset holds every class.
    assert (torch.bincount(small.labels, minlength=10) > 20).all()


def test_split_is_seeded(mnist_raw, tmp_path, prepared_mnist):
    prepare(_params(mnist_raw, tmp_path, split_seed=1, train_sizes=[500]))
    other = load_split(tmp_path / "data", "validation")
    same = load_split(prepared_mnist, "validation")
    assert not torch.equal(other.index, same.index)
    assert len(set(other.index.tolist()) & set(load_split(tmp_path / "data", "train").index.tolist())) == 0


def test_threshold_binarization(mnist_raw, tmp_path, prepared_mnist):
    prepare(_params(mnist_raw, tmp_path, binarization="threshold"))
    binary, grey = load_split(tmp_path / "data", "test"), load_split(prepared_mnist, "test")
    assert torch.equal(binary.images, (grey.images > 0.5).float())


def test_fixed_binarization_is_larochelle_in_mnist_order(mnist_raw, tmp_path, prepared_mnist):
    if not BINARIZED_DIR.is_dir():
        pytest.skip(f"binarized MNIST not found at {BINARIZED_DIR}")
    summary = prepare(_params(mnist_raw, tmp_path, binarization="fixed"))
    fixed, grey = _pool(tmp_path / "data"), _pool(prepared_mnist)
    assert torch.equal(fixed[1], grey[1])  # same labels: rows are back in MNIST order
    on, off = grey[0] > 0.9, grey[0] < 0.05
    # Each fixed image is a Bernoulli sample of its grey image: dark stays off, ink stays on.
    assert fixed[0][on].mean() > 0.97 and fixed[0][off].mean() < 0.001
    # Means of Larochelle's files (../shared/datasets/README.md): train 0.13056 over its 50k.
    assert summary["mean_pixel"]["test"] == pytest.approx(0.13251, abs=1e-5)
    assert set(torch.unique(fixed[0]).tolist()) == {0.0, 1.0}


def test_fashion_mnist(tmp_path):
    if not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_DIR} (Debian package dataset-fashion-mnist)")
    raw = link_raw(tmp_path / "raw", "fashion_mnist", FASHION_DIR)
    summary = prepare(_params(raw, tmp_path, dataset="fashion_mnist"))
    assert summary["class_histogram"]["test"] == {str(d): 1000 for d in range(10)}
    train, val = load_split(tmp_path / "data", "train"), load_split(tmp_path / "data", "validation")
    counts = torch.bincount(torch.cat([train.labels, val.labels]), minlength=10)
    assert counts.tolist() == [6000] * 10


# ------------------------------------------------------------------ synthetic files, errors


@pytest.fixture(scope="module")
def fake():
    arrays = fake_mnist()
    return arrays, idx_contents(arrays)


@pytest.fixture
def good_output(tmp_path, fake):
    """A successful prepare from synthetic files, to show failures leave it intact."""
    arrays, contents = fake
    source = write_source(tmp_path / "raw", contents)
    cfg = _params(tmp_path / "raw", tmp_path, train_sizes=[500])
    prepare(cfg, sources={"mnist": source})
    snapshot = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    return cfg, source, snapshot


def _assert_intact(tmp_path, snapshot):
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == snapshot
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_synthetic_prepare_roundtrip(good_output, fake, tmp_path):
    arrays, _ = fake
    train = load_split(tmp_path / "data", "train")
    idx = train.index.numpy()
    assert np.array_equal(train.labels.numpy(), arrays["train_labels"][idx])
    assert np.array_equal((train.images[:, 0] * 255).round().numpy().astype(np.uint8),
                          arrays["train_images"][idx])


def test_truncated_gzip(good_output, tmp_path):
    cfg, source, snapshot = good_output
    path = tmp_path / "raw" / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(RawDataError, match="train-images-idx3-ubyte.gz: damaged gzip"):
        prepare(cfg, sources={"mnist": source})
    _assert_intact(tmp_path, snapshot)


def test_wrong_magic_number(good_output, fake, tmp_path):
    cfg, _, snapshot = good_output
    contents = dict(fake[1])
    contents["train_labels"] = b"\x00\x00\x08\x03" + contents["train_labels"][4:]
    source = write_source(tmp_path / "raw", contents)
    with pytest.raises(FormatError, match=r"train-labels-idx1-ubyte: wrong magic number "
                                          r"0x00000803, expected 0x00000801"):
        prepare(cfg, sources={"mnist": source})
    _assert_intact(tmp_path, snapshot)


def test_checksum_mismatch_names_file_and_both_digests(good_output, fake, tmp_path):
    cfg, _, snapshot = good_output
    contents = dict(fake[1])
    expected = dict(contents)
    expected["test_images"] = contents["test_images"][:-1] + b"\x01"
    source = write_source(tmp_path / "raw", contents, checksums=expected)
    with pytest.raises(ChecksumError) as err:
        prepare(cfg, sources={"mnist": source})
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg
    assert hashlib.sha256(contents["test_images"]).hexdigest() in msg
    assert hashlib.sha256(expected["test_images"]).hexdigest() in msg
    _assert_intact(tmp_path, snapshot)


def test_real_checksums_reject_a_substituted_file(tmp_path, fake):
    # The registry in code, not a test double: a synthetic file posing as MNIST is rejected.
    write_source(tmp_path / "raw", fake[1])
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        prepare(_params(tmp_path / "raw", tmp_path))
    assert not (tmp_path / "data").exists()


def test_missing_file(good_output, tmp_path):
    cfg, source, snapshot = good_output
    (tmp_path / "raw" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(RawDataError, match=r"missing raw file for mnist test_labels: looked for "
                                           r".*t10k-labels-idx1-ubyte.gz"):
        prepare(cfg, sources={"mnist": source})
    _assert_intact(tmp_path, snapshot)


def test_image_label_count_mismatch(good_output, fake, tmp_path):
    cfg, _, snapshot = good_output
    arrays = dict(fake[0])
    arrays["test_labels"] = arrays["test_labels"][:-1]
    source = write_source(tmp_path / "raw", idx_contents(arrays))
    with pytest.raises(DataError, match="test set: 10000 images but 9999 labels"):
        prepare(cfg, sources={"mnist": source})
    _assert_intact(tmp_path, snapshot)


def test_truncated_idx_payload(tmp_path, fake):
    contents = dict(fake[1])
    contents["train_images"] = contents["train_images"][:-784]
    source = write_source(tmp_path / "raw", contents)
    with pytest.raises(FormatError, match=r"train-images-idx3-ubyte: truncated: header says "
                                          r"shape \(60000, 28, 28\)"):
        prepare(_params(tmp_path / "raw", tmp_path), sources={"mnist": source})


def test_uncompressed_files_are_accepted(tmp_path, fake):
    source = write_source(tmp_path / "raw", fake[1])
    for f in (tmp_path / "raw" / "mnist").iterdir():
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    prepare(_params(tmp_path / "raw", tmp_path), sources={"mnist": source})
    assert len(load_split(tmp_path / "data", "test")) == 10000


def test_damaged_parquet_is_detected(good_output, tmp_path):
    path = tmp_path / "data" / "validation.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the pixel pages
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="validation.parquet"):
        load_split(tmp_path / "data", "validation")
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="validation.parquet: not a readable Parquet file"):
        load_split(tmp_path / "data", "validation")
