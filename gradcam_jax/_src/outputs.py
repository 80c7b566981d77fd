"""Writing results safely: atomically (temporary file, then rename), never over an input, never over an
existing output unless asked. An interrupted run (Ctrl-C, a crash) leaves no half-written file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it onto `path`. The
    temporary ends in `.tmp<suffix of path>`, for writers (ffmpeg) that choose a format by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# zlib level 1: PNG encoding is most of an overlay's host cost, and level 1 is several times faster
# than Pillow's default (6) for files a little larger.
PNG_COMPRESS_LEVEL = 1


def save_png(path: Path, pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> Path:
    """uint8 (H, W, 3) or (H, W) -> PNG at `path`, atomically."""
    return atomic_write(
        path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG", compress_level=compress_level)
    )


JPEG_QUALITY = 90


def save_picture(path: Path, pixels: np.ndarray) -> Path:
    """uint8 (H, W, 3) -> `path`, atomically: JPEG (quality 90) for a .jpg/.jpeg path, else PNG.
    An overlay's PNG costs ~30 ms to encode on one core, its JPEG ~3 ms."""
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="JPEG", quality=JPEG_QUALITY))
    return save_png(path, pixels)


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[Path]:
    """Hold an exclusive lock on the file `path` (created if need be) for the `with` block; a
    ValueError at once if another process holds it. An flock: the kernel drops it when its
    holder dies, so a crashed run (or a stale file naming a dead pid) never blocks the next."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise ValueError(
                f"{path.parent}: another run (pid {holder}) is writing here; wait for it or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def save_npy(path: Path, array: np.ndarray) -> Path:
    """An array -> .npy at `path`, atomically."""

    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def check_outputs(outputs: Iterable[Path], inputs: Iterable[Path], overwrite: bool) -> None:
    """ValueError if an output would replace an input, or an existing file without `overwrite`,
    or lands in a folder that cannot be written — checked before any heavy work starts."""
    protected = {Path(p).resolve() for p in inputs}
    for out in map(Path, outputs):
        if out.resolve() in protected:
            raise ValueError(f"{out}: refusing to overwrite an input image")
        if out.exists() and not overwrite:
            raise ValueError(f"{out}: exists; pass --overwrite to replace it")
        folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ValueError(f"{out}: cannot write to {folder}")
