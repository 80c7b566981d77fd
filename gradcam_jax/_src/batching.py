"""Batch shapes at the I/O edges (CLI, folder runs, video): right-sized, so no call does work for
images that were not given.

A jitted method compiles once per batch shape. Rather than padding every batch to `batch_size`
(one photo explained sixteen times), a short batch is padded only up to the next *bucket*: the
powers of two times `multiple` (the device count), capped at `batch_size` rounded up to
`multiple`. A run then compiles for at most log2(batch_size) + 1 shapes, and a batch of n real
images costs at most the next bucket (never more than 2n rows, and exactly n when n is a bucket).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bucket(n: int, batch_size: int, multiple: int = 1) -> int:
    """Rows for a batch of `n` real images (1 <= n <= batch_size): the smallest bucket >= n.
    Buckets are multiple * 1, 2, 4, ... and the cap -(-batch_size // multiple) * multiple."""
    if not 1 <= n <= batch_size:
        raise ValueError(f"a batch holds 1 to {batch_size} images; got {n}")
    cap = -(-batch_size // multiple) * multiple
    size = multiple
    while size < n:
        size *= 2
    return min(size, cap)


def stack_padded(rows: Sequence[np.ndarray], size: int, dtype: type = np.float32) -> np.ndarray:
    """(size, ...) `dtype` from `rows` (each (...)), padded by repeating the first row; the first
    len(rows) rows are the real ones."""
    if not 1 <= len(rows) <= size:
        raise ValueError(f"cannot pad {len(rows)} rows to {size}")
    return np.stack([*rows, *[rows[0]] * (size - len(rows))]).astype(dtype, copy=False)
