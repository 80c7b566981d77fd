"""Speed of the explorer (`gradcam-jax app`): the live mode's frames/s and the time from upload to first map.

    python benchmarks/app_webcam_fps.py                  # 224x224 frames, Grad-CAM, 100 frames
    python benchmarks/app_webcam_fps.py --size 480x640 --method layer_cam

Live: the per-frame function the page's webcam mode calls (`Explorer.explain_frame`: resize to
224x224, the method on one frame, overlay at the frame's size), timed over a clip panning across
docs/images/cat_dog.jpg after one warm-up frame that compiles; beside it the method alone and the
overlay alone. What a browser sees on top of this is Gradio's transport (each frame is uploaded
and each overlay sent back).

Upload to first map: an app served in this process, driven through `gradio_client` as the page
drives it (the photo is uploaded, the top-5 come back, then the top-1 map): first on a fresh app
(compilation included: what the first visitor waits), then for a second photo (warm).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/...` from anywhere
import gradcam_jax as gj  # noqa: E402
from benchmarks.video_fps import pan_frames  # noqa: E402
from gradcam_jax import app

PHOTOS = Path(__file__).resolve().parent.parent / "docs" / "images"


def frames_per_second(frames, fn) -> float:
    start = time.perf_counter()
    for frame in frames:
        fn(frame)
    return len(frames) / (time.perf_counter() - start)


def upload_to_first_map(url: str, photo: Path) -> float:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    start = time.perf_counter()
    _, picked = client.predict(handle_file(str(photo)), api_name="/classify")
    client.predict(
        handle_file(str(photo)),
        picked["value"],
        "",
        "grad_cam",
        "inception_5b/output",
        "softmax",
        False,
        0.5,
        api_name="/explain",
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="224x224", help="camera frame size HxW (default 224x224)")
    parser.add_argument("--method", default="grad_cam")
    parser.add_argument("--no-upload", action="store_true", help="skip the upload-to-first-map timing")
    args = parser.parse_args()
    size = tuple(int(s) for s in args.size.lower().split("x"))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    model, variables = gj.load_googlenet()
    if not args.no_upload:  # first, while nothing is compiled yet
        with app.serve(model, variables) as url:
            cold = upload_to_first_map(url, PHOTOS / "cat_dog.jpg")
            warm = upload_to_first_map(url, PHOTOS / "cat.png")
        print(
            f"upload to first map (top-5 + top-1 Grad-CAM, through gradio_client): "
            f"fresh app {cold:.2f} s (compiling included), then {warm:.2f} s"
        )

    explorer = app.Explorer(model, variables)
    frames = pan_frames(args.frames, (size[0], size[1]))
    explain = lambda frame: explorer.explain_frame(frame, None, args.method)  # noqa: E731
    explain(frames[0])  # compiles
    live = frames_per_second(frames, explain)
    x = np.stack([gj.load_image(PHOTOS / "cat_dog.jpg")]).astype(np.float32)
    method = gj.METHODS[args.method]
    method(model, variables, x).map.block_until_ready()
    alone = frames_per_second(frames, lambda _: method(model, variables, x).map.block_until_ready())
    heatmap = np.asarray(method(model, variables, x).map[0])
    drawing = frames_per_second(frames, lambda frame: gj.blend(frame, heatmap))
    print(
        f"live, {args.method}, {size[0]}x{size[1]} frames: per-frame function {live:.1f} frames/s "
        f"(method alone {alone:.1f}/s, overlay alone {drawing:.1f}/s)"
    )


if __name__ == "__main__":
    main()
