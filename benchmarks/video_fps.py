"""End-to-end frames/s of `gradcam-jax video`: decode, explain, overlay and encode a synthetic clip.

    python benchmarks/video_fps.py                      # 224x224 frames, batches of 4 and 8
    python benchmarks/video_fps.py --size 360x640 --frames 240 --batch 8

The clip pans across docs/images/cat_dog.jpg. Each setting is first run once on a short clip so
that compilation is not timed; then the whole pipeline (`video.explain_video`, exactly what the
CLI runs) is timed, and beside it each stage alone: decoding, the method on the device (batch
ready on the host), overlay drawing, and encoding. The end-to-end rate is the figure that counts;
the stage rates show which one bounds it (the stages overlap, so it approaches the slowest one).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import video

PHOTO = Path(__file__).resolve().parent.parent / "docs" / "images" / "cat_dog.jpg"


def pan_frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """n uint8 frames (H, W, 3): a window of 5/8 of the photo's width panning left to right."""
    photo = Image.open(PHOTO).convert("RGB")
    width, height = photo.size
    window = int(width * 5 / 8)
    return [
        np.asarray(photo.crop((x0, 0, x0 + window, height)).resize((size[1], size[0]), Image.Resampling.BICUBIC))
        for x0 in np.linspace(0, width - window, n).astype(int)
    ]


def rate(n: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--size", default="224x224", help="frame size HxW (default 224x224)")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--method", default="grad_cam")
    parser.add_argument("--fps", type=float, default=24.0)
    args = parser.parse_args()
    height, width = (int(s) for s in args.size.lower().split("x"))
    size = (height, width)

    device = jax.devices()[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
        f"jax {jax.__version__} on {device.platform} ({device.device_kind}), {len(jax.devices())} device(s)"
    )
    print(f"clip: {args.frames} frames of {size[0]}x{size[1]} at {args.fps:g} fps; method {args.method}")
    model, variables = gj.load_googlenet()
    frames = pan_frames(args.frames, size)
    method = gj.METHODS[args.method]
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        video.write_video(clip, frames, args.fps)
        decode = rate(args.frames, lambda: sum(1 for _ in video.read_video(clip)[1]))
        encode = rate(args.frames, lambda: video.write_video(Path(tmp) / "copy.mp4", frames, args.fps))
        maps = np.random.default_rng(0).random((len(frames), *size), dtype=np.float32)
        draw = rate(args.frames, lambda: [gj.blend(f, m) for f, m in zip(frames, maps)])
        print(
            f"decode alone: {decode:7.1f} frames/s   encode alone: {encode:7.1f} frames/s   "
            f"overlay alone: {draw:7.1f} frames/s"
        )
        print(f"{'batch':>5} {'device alone':>14} {'end to end':>12}")
        for batch in args.batch:
            short = Path(tmp) / "short.mp4"
            video.write_video(short, frames[: 2 * batch], args.fps)  # compiles this batch size and frame size
            video.explain_video(short, Path(tmp) / "warm.mp4", model, variables, method=args.method, batch_size=batch)
            inputs = np.stack([x for _, x in video.model_inputs(frames[:batch])]).astype(np.float32)
            steps = max(1, args.frames // batch)

            def device_only(steps=steps, inputs=inputs):  # bound now: called within this iteration
                for _ in range(steps):
                    method(model, variables, inputs).map.block_until_ready()

            device_rate = rate(steps * batch, device_only)
            stats = video.explain_video(
                clip, Path(tmp) / "out.mp4", model, variables, method=args.method, batch_size=batch
            )
            print(
                f"{batch:>5} {device_rate:>9.1f} f/s {stats.fps:>7.1f} f/s   "
                f"({stats.frames} frames in {stats.seconds:.2f} s)"
            )


if __name__ == "__main__":
    main()
