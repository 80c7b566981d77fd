"""The front ends' one layer over the methods: the CLI, the explorer, folder runs and video all
feed their inputs through `explained` (chunk, pad to a bucket, call the explainer, hand on the
real rows), describe their model with one `ModelSpec`, and check a method's options with
`check_method_options`.

Batch shapes: a jitted method compiles once per batch shape. Rather than padding every batch to
`batch_size` (one photo explained sixteen times), a short batch is padded only up to the next
*bucket*: the powers of two times `multiple` (the device count), capped at `batch_size` rounded up
to `multiple`. A run then compiles for at most log2(batch_size) + 1 shapes, and a batch of n real
images costs at most the next bucket (never more than 2n rows, and exactly n when n is a bucket).

Ordering: `explained` dispatches batch i+1 before it hands batch i on (`ahead=True`; JAX
dispatches asynchronously), so the device computes while the caller fetches, draws and writes.
`prefetch` (a background thread) and `ordered_map` (a worker pool) run the host's side ahead of
the loop, in order, with bounded memory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import inspect
import queue
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from gradcam_jax._src.methods.base import RENAMED
from gradcam_jax.models import imagenet
from gradcam_jax.models.googlenet import INPUT_SIZE

# -- the model the front ends explain -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a front end knows of its model besides calling it: the (h, w) inputs are resized to
    and the class names (None: ImageNet's 1000). `model_spec()` fills in the defaults."""

    input_size: tuple[int, int]
    labels: tuple[str, ...] | None = None

    def label(self, index: int) -> str:
        """The display name of class `index`."""
        return imagenet.label(index, self.labels)

    def class_index(self, spec: int | str, num_classes: int = 1000) -> int:
        """A class by index or name (as `--class`), among this model's classes."""
        return imagenet.class_index(spec, num_classes, self.labels)


def model_spec(input_size: Sequence[int] | None = None, labels: Sequence[str] | None = None) -> ModelSpec:
    """The one place the front ends' defaults are resolved: GoogLeNet's 224 x 224 input and
    ImageNet's class names, unless the caller's model says otherwise."""
    size = INPUT_SIZE if input_size is None else input_size
    return ModelSpec((int(size[0]), int(size[1])), None if labels is None else tuple(labels))


# -- batch shapes -------------------------------------------------------------------------------


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


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last may be shorter)."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def real_rows(n: int, arrays: Iterable) -> tuple:
    """The first `n` rows of each array on the host (waiting for the device); None stays None."""
    return tuple(None if a is None else np.asarray(a)[:n] for a in arrays)


# -- the loop the front ends share --------------------------------------------------------------


def explained(
    items: Iterable,
    explain: Callable[[np.ndarray, list], Any],
    batch_size: int,
    *,
    inputs: Callable[[Any], np.ndarray],
    multiple: int = 1,
    dtype: type = np.float32,
    ahead: bool = True,
) -> Iterator[tuple[list, Any]]:
    """(chunk, explain(batch, chunk)) for each chunk of at most `batch_size` items (rounded up to a
    multiple of `multiple`, the device count); `batch` is (rows, ...) `dtype`, `inputs(item)` per
    item, padded to the chunk's bucket, so only the first len(chunk) rows of what `explain` returns
    are real (`real_rows`). With `ahead`, chunk i+1 is dispatched before chunk i is handed on."""
    step = -(-batch_size // multiple) * multiple
    pending = None
    for chunk in chunked(items, step):
        batch = stack_padded([inputs(item) for item in chunk], bucket(len(chunk), step, multiple), dtype)
        dispatched = (chunk, explain(batch, chunk))
        if not ahead:
            yield dispatched
            continue
        if pending is not None:
            yield pending
        pending = dispatched
    if pending is not None:
        yield pending


# -- host work ahead of the loop ----------------------------------------------------------------


def prefetch(iterable: Iterable, depth: int = 2) -> Generator:
    """The items of `iterable`, produced in a background thread up to `depth` items ahead.

    An exception in the producer is raised here, in the consumer. Closing this generator (or
    leaving the loop) stops the producer and closes `iterable` in the producer's thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterable:
                if not put((item, None)):
                    break
            else:
                put((end, None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            put((end, err))
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="gradcam-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = items.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()


def ordered_map(pool: concurrent.futures.Executor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """fn(item) for each item, in order, computed in `pool` at most `ahead` items ahead."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


# -- method options and renamed arguments -------------------------------------------------------


def accepted_options(method: Callable) -> list[str]:
    """The options `method` takes: the keyword-only parameters its signature shows (`score` included)."""
    return [p.name for p in inspect.signature(method).parameters.values() if p.kind is p.KEYWORD_ONLY]


def check_method_options(name: str, method: Callable, options: dict | None) -> dict:
    """`options` as a dict, or a one-line ValueError naming `name`'s options if one is not among them."""
    options = dict(options or {})
    accepted = accepted_options(method)
    older = RENAMED.get(name, {})  # an option's older name still reaches the method (it warns there)
    unknown = [k for k in options if k not in accepted and k not in older]
    if unknown:
        raise ValueError(f"{name} has no option {unknown[0]!r}; its options: {', '.join(accepted) or 'none'}")
    return options


def renamed(given: dict, old: str, new: str, value: Any, default: Any = None, hint: str = "") -> Any:
    """`value` (the new argument), or `given.pop(old)` with a DeprecationWarning where the caller
    used the old name (accepted for one release); a TypeError if both are given. Call it from the
    public function itself, so that the warning points at its caller."""
    if old not in given:
        return value
    if value is not default:
        raise TypeError(f"got both {new}= and its old name {old}=; pass {new}= only")
    warnings.warn(f"{old}= is now {new}={hint}; {old}= goes in the next release", DeprecationWarning, stacklevel=3)
    return given.pop(old)


def split_options(name: str, method: Callable, method_options: dict | None, legacy: dict) -> dict:
    """The method's options: `method_options`, plus any given the old way as keyword arguments
    (`layer=...`, with a DeprecationWarning), checked against the method's signature."""
    if legacy:
        warnings.warn(
            f"method options as keyword arguments ({', '.join(legacy)}) are deprecated; pass method_options={{...}}",
            DeprecationWarning,
            stacklevel=3,
        )
    return check_method_options(name, method, {**legacy, **(method_options or {})})
