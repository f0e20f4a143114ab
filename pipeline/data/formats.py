"""Parsers for the raw formats: IDX (MNIST, Fashion-MNIST) and Larochelle's .amat text.

Both are vectorised over the whole buffer (no per-row Python) and check the structure
before trusting it, so a damaged file is named and explained rather than mis-read.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError

IDX_UBYTE = 0x08


class FormatError(PipelineError, ValueError):
    """A raw file is not what its format promises."""


def parse_idx(data: bytes, name: str, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with `ndim` dimensions (1 labels, 3 images)."""
    if len(data) < 4:
        raise FormatError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, dtype, dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or dtype != IDX_UBYTE or dims != ndim:
        raise FormatError(
            f"{name}: wrong magic number 0x{magic:08x}, expected 0x{(IDX_UBYTE << 8) | ndim:08x} "
            f"(unsigned-byte IDX with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise FormatError(
            f"{name}: {what}: header says shape {shape} ({expected} bytes in all), "
            f"file holds {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def parse_amat(data: bytes, name: str, side: int = 28) -> np.ndarray:
    """Parse binarized-MNIST .amat text: per line `side*side` values '0'/'1', space-separated.

    Every value is one character followed by a space (a newline after the last), so a line
    is exactly 2*side*side bytes: the digits are the even bytes, the separators the odd ones.
    """
    width = 2 * side * side
    if len(data) == 0 or len(data) % width:
        raise FormatError(
            f"{name}: {len(data)} bytes is not a whole number of {width}-byte lines "
            f"({side * side} binary values per line)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, width)
    seps = rows[:, 1::2]
    if not ((seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all()):
        raise FormatError(f"{name}: values are not single characters separated by spaces")
    digits = rows[:, 0::2] - ord("0")
    if digits.max(initial=0) > 1:  # uint8 arithmetic: characters below '0' wrap to > 1 too
        raise FormatError(f"{name}: values other than 0 and 1")
    return digits.reshape(-1, side, side)
