"""The raw files of each data set: names, SHA-256 of their contents, official mirrors.

Checksums are of the *decompressed* contents. A file may be stored gzipped or plain, and
gzip headers differ between copies (Debian's `dataset-fashion-mnist` recompressed the
official archives; our shared binarized MNIST is `gzip -9 -n` of the original text), while
the contents are what the study depends on. The MNIST values match tensorflow/datasets and
torchvision (see ../shared/datasets/README.md); Fashion-MNIST's are those of the archives
matching Zalando's published MD5s; the binarized MNIST values are those of the original
Larochelle `.amat` text files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawFile:
    name: str  # decompressed file name, e.g. "train-images-idx3-ubyte"
    sha256: str  # of the decompressed contents
    size: int  # decompressed bytes
    remote: str  # name on the mirrors, e.g. "train-images-idx3-ubyte.gz"


@dataclass(frozen=True)
class Source:
    name: str  # also the sub-directory of the raw-data directory
    files: dict[str, RawFile]  # role -> file
    mirrors: tuple[str, ...]

    def file(self, role: str) -> RawFile:
        return self.files[role]


def _idx(train_images: str, train_labels: str, test_images: str, test_labels: str) -> dict:
    return {
        "train_images": RawFile("train-images-idx3-ubyte", train_images, 47040016,
                                "train-images-idx3-ubyte.gz"),
        "train_labels": RawFile("train-labels-idx1-ubyte", train_labels, 60008,
                                "train-labels-idx1-ubyte.gz"),
        "test_images": RawFile("t10k-images-idx3-ubyte", test_images, 7840016,
                               "t10k-images-idx3-ubyte.gz"),
        "test_labels": RawFile("t10k-labels-idx1-ubyte", test_labels, 10008,
                               "t10k-labels-idx1-ubyte.gz"),
    }


MNIST = Source(
    "mnist",
    _idx(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

FASHION_MNIST = Source(
    "fashion_mnist",
    _idx(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
)

# Larochelle & Murray (2011): train = the first 50000 MNIST training images, valid = the
# remaining 10000, test = the MNIST test set; one image per line, "0"/"1" separated by spaces.
BINARIZED_MNIST = Source(
    "binarized_mnist",
    {
        "train": RawFile("binarized_mnist_train.amat",
                         "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
                         78400000, "binarized_mnist_train.amat"),
        "valid": RawFile("binarized_mnist_valid.amat",
                         "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
                         15680000, "binarized_mnist_valid.amat"),
        "test": RawFile("binarized_mnist_test.amat",
                        "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
                        15680000, "binarized_mnist_test.amat"),
    },
    ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",),
)

SOURCES = {s.name: s for s in (MNIST, FASHION_MNIST, BINARIZED_MNIST)}
