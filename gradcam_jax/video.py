"""Explaining videos and webcam streams frame by frame, with decoding, compute and encoding overlapped.

    decode thread          compute thread                                    calling thread
    read + resize (224) -> batch -> explain on the device -> overlay  ->  encode (ffmpeg)

Each stage is a generator; `prefetch` (`gradcam_jax._src.pipeline`, with the batching loop every
front end shares) runs one in a background thread behind a small bounded queue,
so the next batch is decoded and the previous one encoded while the device computes, and memory
stays bounded however long the video. Within the compute thread the next batch is dispatched
before the last one is fetched (JAX dispatches asynchronously), so the device never waits on the
host's overlay either.

Overlays are drawn on each frame at its own resolution: the map, computed on the frame resized to
224x224 as MATLAB resizes (aspect not kept), is stretched back over the whole frame, so every part
of it lands on the pixels it explains. Reading and writing files use imageio with imageio-ffmpeg
(`pip install 'gradcam-jax[video]'`); a webcam is read through OpenCV.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gradcam_jax._src import images as images_lib
from gradcam_jax._src import maps as maps_lib
from gradcam_jax._src import outputs, pipeline
from gradcam_jax._src.diagnostics import flag_names
from gradcam_jax._src.images import INPUT_SIZE
from gradcam_jax._src.methods import METHODS
from gradcam_jax._src.overlay import blend
from gradcam_jax._src.pipeline import prefetch

# Containers whose muxers take H.264, the codec written.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")
CAMERA_FPS = 30.0  # assumed when a camera does not report its frame rate
HINT = " (a method's own goes in method_options)"
DEPRECATED_OPTIONS = (
    "method options as keyword arguments ({}) are deprecated; pass method_options={{...}} (they go in the next release)"
)


class VideoError(ValueError):
    """A video or camera that cannot be read or written; str() is one line."""


class VideoInfo(NamedTuple):
    fps: float  # frames per second, kept in the output
    frames: int | None  # frame count estimated from the duration; None for a camera


class Source(NamedTuple):
    info: VideoInfo
    frames: Iterator[np.ndarray]  # uint8 RGB (H, W, 3), decoded lazily


class ExplainedFrame(NamedTuple):
    overlay: np.ndarray  # uint8 (H, W, 3): the frame with its map drawn over it
    map: np.ndarray  # float32 (h, w) in [0, 1], the input size: the explanation of the frame as the model saw it
    target: int  # the class explained
    score: float  # its score
    flags: tuple[str, ...] = ()  # why the map is not informative (`gradcam_jax.flag_names`); () when it is


class VideoStats(NamedTuple):
    frames: int
    seconds: float  # wall time, end to end (decode, compile, compute, encode)
    fps: float  # frames / seconds
    out: Path
    flagged: int = 0  # frames whose map is not informative (`ExplainedFrame.flags`)


# -- reading (I/O edge) --------------------------------------------------------------------------


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def quiet_fork():
    """Silence JAX's warning that forking a multithreaded process may deadlock: ffmpeg is started
    by fork + exec at once, which is safe."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def imageio_module():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (imageio's FFMPEG plugin needs it)
    except ImportError as err:
        raise VideoError(f"video needs imageio and imageio-ffmpeg ({err}); pip install 'gradcam-jax[video]'") from None
    return imageio


def read_video(path: str | Path) -> Source:
    """(info, frames) of the video file at `path`: uint8 RGB (H, W, 3) frames, decoded lazily.
    The file is opened (and checked) now; `VideoError` if it is not a video ffmpeg can read."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    imageio = imageio_module()
    try:
        with quiet_fork():
            reader = imageio.get_reader(path, format="FFMPEG")
        meta = reader.get_meta_data()
    except Exception:  # imageio and ffmpeg raise many types, with ffmpeg's log as message
        raise VideoError(f"{path}: not a video ffmpeg can read") from None
    fps = float(meta.get("fps") or 0) or CAMERA_FPS
    duration = meta.get("duration")
    estimate = round(duration * fps) if duration and np.isfinite(duration) else None

    def frames():
        try:
            for frame in reader.iter_data():
                yield np.asarray(frame, np.uint8)[..., :3]
        except Exception as err:
            raise VideoError(f"{path}: damaged video ({first_line(err)})") from None
        finally:
            reader.close()

    return Source(VideoInfo(fps, estimate), frames())


def read_camera(index: int, stop: threading.Event | None = None) -> Source:
    """(info, frames) of webcam `index` through OpenCV, as uint8 RGB frames, until `stop` is set or
    the camera ends. The camera is opened now; `VideoError` if OpenCV is missing or it cannot be opened."""
    try:
        import cv2
    except ImportError:
        raise VideoError("--camera needs OpenCV: pip install opencv-python") from None
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    level = logging.getLogLevel() if logging else None
    if logging:  # OpenCV logs multi-line warnings for a missing camera; our error says it in one
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(index)
        opened = capture.isOpened()
    finally:
        if logging:
            logging.setLogLevel(level)
    if not opened:
        capture.release()
        raise VideoError(f"camera {index}: cannot be opened (no camera with that number, or it is in use)")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0) or CAMERA_FPS

    def frames():
        try:
            while stop is None or not stop.is_set():
                ok, bgr = capture.read()
                if not ok:
                    return
                yield np.ascontiguousarray(bgr[..., ::-1])
        finally:
            capture.release()

    return Source(VideoInfo(fps, None), frames())


# -- the pipeline (pure generators, plus one threading helper) ----------------------------------


def model_inputs(
    frames: Iterable[np.ndarray], size: tuple[int, int] = INPUT_SIZE
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, model input uint8 (*size, 3)) per frame, resized as `images.resize` does (MATLAB)."""
    for frame in frames:
        yield frame, images_lib.resize(Image.fromarray(frame), size)


@functools.partial(jax.jit, static_argnames="size")
def stretch(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(B, h, w) maps -> (B, *size), on the device, for drawing over frames at their resolution."""
    return maps_lib.upsample(maps, size)


def frame_explainer(model, variables, method: str, targets: int | None, options: dict) -> Callable:
    """`explain(inputs, frame_size)` -> device arrays (maps at the input size, maps at frame_size,
    classes, scores, flags), each (B, ...): one method call on a batch, dispatched without waiting."""
    fn = METHODS[method]

    def explain(inputs: np.ndarray, frame_size: tuple[int, int]):
        chosen = None if targets is None else np.full((len(inputs),), targets, np.int32)
        result = fn(model, variables, inputs, chosen, **options)
        flags = result.flags if result.flags is not None else jnp.zeros(jnp.shape(result.scores), jnp.int32)
        return result.map, stretch(result.map, frame_size), result.targets, result.scores, flags

    return explain


def checked_call(method: str, method_options: dict | None, opacity: float) -> dict:
    """The method's options, checked with the method and the opacity: a one-line ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(sorted(METHODS))}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1]; got {opacity}")
    return pipeline.check_method_options(method, METHODS[method], method_options)


def explain_frames(
    frames: Iterable[np.ndarray],
    model,
    variables,
    *,
    method: str = "grad_cam",
    targets: int | None = None,
    method_options: dict | None = None,
    frames_per_batch: int = 8,
    opacity: float = 0.5,
    input_size: tuple[int, int] | None = None,
    **deprecated,
) -> Iterator[ExplainedFrame]:
    """Explain a stream of uint8 RGB (H, W, 3) frames of one size; one `ExplainedFrame` per frame, in order.

    targets: a class index for every frame, or None for each frame's own top-1 class. Frames are
    resized to `input_size` (h, w), GoogLeNet's 224x224 by default, for the model, and go to it
    `frames_per_batch` at a time. method_options (layer, score, relu, ...) go to the method.
    Frames are decoded and resized in a background thread; the overlay is drawn at the frame's
    resolution (see the module doc). Deprecated for one release: target= (targets=), batch_size=
    (frames_per_batch=), alpha= (opacity=), method options as keywords (method_options=).
    """
    targets = pipeline.renamed(deprecated, "target", "targets", targets)
    frames_per_batch = pipeline.renamed(deprecated, "batch_size", "frames_per_batch", frames_per_batch, 8, HINT)
    opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, 0.5, HINT)
    options = checked_call(method, {**legacy_options(deprecated), **(method_options or {})}, opacity)
    explain = frame_explainer(model, variables, method, targets, options)
    inputs = prefetch(model_inputs(frames, pipeline.model_spec(input_size).input_size), depth=2 * frames_per_batch)
    batches = pipeline.explained(
        inputs, lambda x, chunk: explain(x, chunk[0][0].shape[:2]), frames_per_batch, inputs=lambda pair: pair[1]
    )
    try:
        for chunk, arrays in batches:
            maps, stretched, chosen, scores, flags = pipeline.real_rows(len(chunk), arrays)
            for b, (frame, _) in enumerate(chunk):
                # `blend` upsamples only where sizes differ: here the map is already at the frame's size
                yield ExplainedFrame(
                    blend(frame, stretched[b], opacity), maps[b], int(chosen[b]), float(scores[b]),
                    tuple(flag_names(flags[b])),
                )  # fmt: skip
    finally:
        inputs.close()


def legacy_options(given: dict) -> dict:
    """Method options given the old way, as keyword arguments: accepted, with a DeprecationWarning."""
    if given:
        warnings.warn(DEPRECATED_OPTIONS.format(", ".join(given)), DeprecationWarning, stacklevel=3)
    return given


def clips(pairs: Iterable[tuple[np.ndarray, np.ndarray]], length: int) -> Iterator[tuple[list, np.ndarray]]:
    """(frames, inputs float32 (1, length, h, w, 3)) per clip of `length` consecutive frames; a short
    last clip is filled up by repeating its last frame (only `len(frames)` of its maps are real)."""
    for chunk in pipeline.chunked(pairs, length):
        inputs = [c[1] for c in chunk] + [chunk[-1][1]] * (length - len(chunk))
        yield [c[0] for c in chunk], np.stack(inputs)[None].astype(np.float32)


def explain_clips(
    frames: Iterable[np.ndarray],
    model,
    variables,
    *,
    clip_length: int,
    method: str = "grad_cam",
    targets: int | None = None,
    method_options: dict | None = None,
    opacity: float = 0.5,
    input_size: tuple[int, int] | None = None,
    **deprecated,
) -> Iterator[ExplainedFrame]:
    """Explain a stream of uint8 RGB (H, W, 3) frames with a clip model, one that takes
    (B, T, h, w, 3) clips (a 3-D CNN over time): frames go to it in clips of `clip_length`
    consecutive frames, resized to `input_size`, one clip per method call, and its map (1, T, h, w)
    gives each frame its own map, drawn over the frame at the frame's resolution. One
    `ExplainedFrame` per frame, in order; target and score are the clip's. Deprecated for one
    release: target= (targets=), alpha= (opacity=), method options as keywords (method_options=).
    """
    targets = pipeline.renamed(deprecated, "target", "targets", targets)
    opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, 0.5, HINT)
    options = checked_call(method, {**legacy_options(deprecated), **(method_options or {})}, opacity)
    if clip_length < 1:
        raise ValueError(f"clip_length must be at least 1; got {clip_length}")
    explain = frame_explainer(model, variables, method, targets, options)
    inputs = prefetch(model_inputs(frames, pipeline.model_spec(input_size).input_size), depth=2 * clip_length)
    try:
        for chunk, clip in clips(inputs, clip_length):
            # maps (1, T, h, w) and stretched (1, T, H, W): one map per frame of the clip
            maps, stretched, chosen, scores, flags = (np.asarray(a) for a in explain(clip, chunk[0].shape[:2]))
            for t, frame in enumerate(chunk):
                yield ExplainedFrame(
                    blend(frame, stretched[0, t], opacity), maps[0, t], int(chosen[0]), float(scores[0]),
                    tuple(flag_names(flags[0])),
                )  # fmt: skip
    finally:
        inputs.close()


# -- writing (I/O edge) --------------------------------------------------------------------------


def check_video_path(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{out}: unsupported video format; use {', '.join(VIDEO_SUFFIXES)}")
    return out


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Encode uint8 RGB (H, W, 3) frames as H.264 at `fps`, atomically (a temporary file beside
    `path`, renamed when complete: an interrupted run leaves no half-written video). Every frame
    keeps its size: odd sizes are stored as yuv444p, even ones as the widely played yuv420p.
    Returns the number of frames written."""
    path = check_video_path(path)
    imageio = imageio_module()
    count = 0

    def encode(tmp: Path):
        nonlocal count
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    even = frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0
                    writer = imageio.get_writer(
                        tmp,
                        format="FFMPEG",
                        fps=fps,
                        codec="libx264",
                        quality=8,
                        macro_block_size=1,
                        pixelformat="yuv420p" if even else "yuv444p",
                        ffmpeg_log_level="error",
                        output_params=["-preset", "veryfast"],  # real time on a few cores; files a little larger
                    )
                    with quiet_fork():  # ffmpeg starts with the first frame
                        writer.append_data(frame)
                else:
                    writer.append_data(frame)
                count += 1
            if writer is None:
                raise VideoError(f"{path}: no frames to write")
        finally:
            if writer is not None:
                writer.close()

    try:
        outputs.atomic_write(path, encode)
    except (OSError, RuntimeError) as err:
        if isinstance(err, VideoError):
            raise
        raise VideoError(f"{path}: cannot write video ({first_line(err)})") from None
    return count


def explain_video(
    source: str | Path | int | Source,
    out: str | Path,
    model,
    variables,
    *,
    method: str = "grad_cam",
    targets: int | None = None,
    method_options: dict | None = None,
    frames_per_batch: int = 8,
    opacity: float = 0.5,
    input_size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    progress: bool = False,
    clip_length: int | None = None,
    **deprecated,
) -> VideoStats:
    """Write `out`, the video (file path), webcam (int) or opened `Source` with each frame's map
    drawn over it, at the source's frame rate and frame size, one output frame per input frame.

    targets, method_options, frames_per_batch, opacity, input_size: as for `explain_frames`.
    clip_length: for a clip model ((B, T, h, w, 3) in, a 3-D CNN over time), the frames go to it in
    clips of that many (`explain_clips`); None: a per-frame image model (`explain_frames`).
    max_frames: stop after that many (a camera runs until `stop` is set, or this). progress: a tqdm
    bar on stderr with the frames/s achieved. Decoding, compute and encoding run concurrently (see
    the module doc). Returns `VideoStats`; raises `VideoError` for an unreadable source or
    unwritable out. The old names (target=, batch_size=, alpha=, options as keywords) are accepted
    for one release, with a DeprecationWarning.
    """
    targets = pipeline.renamed(deprecated, "target", "targets", targets)
    frames_per_batch = pipeline.renamed(deprecated, "batch_size", "frames_per_batch", frames_per_batch, 8, HINT)
    opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, 0.5, HINT)
    method_options = {**legacy_options(deprecated), **(method_options or {})}
    out = check_video_path(out)
    info, frames = open_source(source, out, stop)
    total = info.frames if max_frames is None else min(max_frames, info.frames or max_frames)
    if max_frames is not None:
        frames = limited(frames, max_frames)
    start = time.perf_counter()
    common: dict[str, Any] = dict(
        method=method, targets=targets, method_options=method_options, opacity=opacity, input_size=input_size
    )
    if clip_length is None:
        stream = explain_frames(frames, model, variables, frames_per_batch=frames_per_batch, **common)
    else:
        stream = explain_clips(frames, model, variables, clip_length=clip_length, **common)
    explained = prefetch(stream, depth=2 * frames_per_batch)
    counted = Overlays(explained)
    try:
        overlays = iter(counted)
        if progress:
            from tqdm import tqdm

            overlays = tqdm(overlays, total=total, unit="frame", disable=None, dynamic_ncols=True)
        count = write_video(out, overlays, info.fps)
    finally:
        explained.close()
    seconds = time.perf_counter() - start
    return VideoStats(count, seconds, count / seconds if seconds > 0 else 0.0, out, counted.flagged)


class Overlays:
    """The overlays of explained frames, counting the frames whose map is flagged."""

    def __init__(self, frames: Iterable[ExplainedFrame]):
        self.frames, self.flagged = frames, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self.frames:
            self.flagged += bool(frame.flags)
            yield frame.overlay


def open_source(source: str | Path | int | Source, out: Path, stop: threading.Event | None) -> Source:
    """`source` opened (a file path or a camera number), refusing to write over an input file."""
    if isinstance(source, (str, Path)) and Path(source).resolve() == out.resolve():
        raise VideoError(f"{out}: refusing to overwrite the input video")
    if isinstance(source, Source):
        return source
    return read_camera(source, stop) if isinstance(source, int) else read_video(source)


def limited(frames: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """The first `n` frames, closing the source after them (a camera is released at once)."""
    try:
        for i, frame in enumerate(frames, 1):
            yield frame
            if i >= n:
                return
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
