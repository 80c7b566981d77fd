"""Images/s of a folder run (`gradcam-jax explain DIR`) against the method's own rate.

    python benchmarks/dataset_rate.py                          # 192 JPEGs of 500x375, grad_cam, batch 16
    python benchmarks/dataset_rate.py --images 64 --batch 8
    python benchmarks/dataset_rate.py --device gpu --images 2048 --batch 256 --processes 16

Makes its own 500x375 JPEGs from the bundled photos (crops and flips of cat_dog.jpg and cat.png)
in a temporary folder, nothing downloaded. Prints, after a warm-up run that compiles every shape:
- the method alone: batches already decoded and resized, on the device, results fetched;
- end to end without overlays (`explain_dataset(..., alpha=None)`: decode, resize, explain, write
  map shards and index) and with overlays (`alpha=0.5`, what the CLI does) as PNG and as JPEG
  (`--overlay-format jpg`), each as a ratio of the above;
- the host cost per image on ONE core (decode + resize, overlay, PNG, JPEG), measured alone on one
  thread: a host with c cores can feed the device about c / cost images/s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--images", type=int, default=192, help="JPEGs to make and explain (default 192)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--method", default="grad_cam")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--processes", type=int, default=0, help="host work in N processes (default: a thread per core)")
    return p.parse_args()


ARGS = parse()
os.environ.setdefault("JAX_PLATFORMS", "cuda" if ARGS.device == "gpu" else "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax import dataset as dataset_lib  # noqa: E402
from gradcam_jax._src import images as images_lib  # noqa: E402
from gradcam_jax._src import outputs  # noqa: E402
from gradcam_jax.overlay import blend  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "docs" / "images"
SIZE = (500, 375)  # width, height


def make_jpegs(folder: Path, n: int) -> list[Path]:
    """n JPEGs of 500x375: crops at shifting offsets (and mirrors) of the two bundled photos."""
    sources = [Image.open(PHOTOS / name).convert("RGB") for name in ("cat_dog.jpg", "cat.png")]
    paths = []
    for i in range(n):
        photo = sources[i % 2]
        w, h = photo.size
        dx, dy = (i * 7) % max(1, w // 5), (i * 5) % max(1, h // 5)
        image = photo.crop((dx, dy, dx + w * 4 // 5, dy + h * 4 // 5)).resize(SIZE, Image.Resampling.BICUBIC)
        if i % 4 >= 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        paths.append(folder / f"img{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def method_rate(model, variables, paths: list[Path], batch: int) -> float:
    """Images/s of the method alone on batches prepared beforehand (the warm-up compiles them)."""
    method = gj.METHODS[ARGS.method]
    inputs = np.stack([gj.load_image(p) for p in paths]).astype(np.float32)
    batches = [jax.device_put(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    for x in {b.shape: b for b in batches}.values():
        jax.block_until_ready(method(model, variables, x).map)
    start = time.perf_counter()
    results = [method(model, variables, x).map for x in batches]
    for r in results:
        np.asarray(r)
    return len(inputs) / (time.perf_counter() - start)


def folder_rate(model, variables, folder: Path, out: Path, alpha, overlay_format: str = "png", host=None) -> float:
    start = time.perf_counter()
    summary = gj.explain_dataset(
        folder, out, model, variables, method=ARGS.method, batch_size=ARGS.batch, alpha=alpha,
        overlay_format=overlay_format, host=host,
    )  # fmt: skip
    return summary.explained / (time.perf_counter() - start)


def host_cost_ms(paths: list[Path], out: Path) -> tuple[float, float, float, float]:
    """ms per image on one thread: (decode + resize, overlay, PNG, JPEG)."""
    heatmap = np.asarray(gj.grad_cam(*gj.load_googlenet(), gj.load_image(paths[0])[None].astype(np.float32)).map[0])
    times = np.zeros(4)
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        original = images_lib.read_image(path)
        images_lib.resize(original, (224, 224), "none")
        t1 = time.perf_counter()
        picture = blend(np.asarray(original), heatmap, 0.5)
        t2 = time.perf_counter()
        outputs.save_picture(out / f"{i}.png", picture)
        t3 = time.perf_counter()
        outputs.save_picture(out / f"{i}.jpg", picture)
        t4 = time.perf_counter()
        times += np.diff([t0, t1, t2, t3, t4])
    return tuple(1e3 * times / len(paths))


def main() -> int:
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    device = jax.devices()[0]
    print(
        f"{ARGS.method}, batch {ARGS.batch}, {ARGS.images} JPEGs of {SIZE[0]}x{SIZE[1]}; "
        f"{device.device_kind} ({device.platform}), {os.cpu_count()} host cores "
        f"({platform.processor() or platform.machine()}), load {load}; host work in "
        f"{f'{ARGS.processes} processes' if ARGS.processes else 'a thread per core'}"
    )
    model, variables = gj.load_googlenet()
    processes = dataset_lib.host_processes(ARGS.processes) if ARGS.processes else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, processes as host:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = make_jpegs(tmp / "in", ARGS.images)
        warm = tmp / "warm"
        warm.mkdir()
        for p in paths[: ARGS.batch + 1]:  # a full batch and the short tail's bucket: compiled before timing
            os.link(p, warm / p.name)
        gj.explain_dataset(  # also starts the host processes, if any
            warm, tmp / "w0", model, variables, method=ARGS.method, batch_size=ARGS.batch, alpha=0.5, host=host
        )
        tail = len(paths) % ARGS.batch
        if tail:
            tail_dir = tmp / "tail"
            tail_dir.mkdir()
            for p in paths[:tail]:
                os.link(p, tail_dir / p.name)
            gj.explain_dataset(tail_dir, tmp / "w1", model, variables, method=ARGS.method, batch_size=ARGS.batch)

        alone = method_rate(model, variables, paths, ARGS.batch)
        bare = folder_rate(model, variables, tmp / "in", tmp / "bare", None, host=host)
        drawn = folder_rate(model, variables, tmp / "in", tmp / "drawn", 0.5, host=host)
        jpeg = folder_rate(model, variables, tmp / "in", tmp / "jpeg", 0.5, "jpg", host=host)
        (tmp / "host").mkdir()
        load_ms, overlay_ms, png_ms, jpg_ms = host_cost_ms(paths[: min(64, len(paths))], tmp / "host")
    print(f"method alone:                      {alone:8.1f} images/s")
    print(f"end to end, no overlays:           {bare:8.1f} images/s  ({bare / alone:.2f}x the method)")
    print(f"end to end, overlays as PNG:       {drawn:8.1f} images/s  ({drawn / alone:.2f}x the method)")
    print(f"end to end, overlays as JPEG:      {jpeg:8.1f} images/s  ({jpeg / alone:.2f}x the method)")
    print(
        f"host cost per image per core: decode+resize {load_ms:.1f} ms, overlay {overlay_ms:.1f} ms, "
        f"PNG {png_ms:.1f} ms, JPEG {jpg_ms:.1f} ms"
    )
    cores = os.cpu_count() or 1
    costs = {
        "without overlays": load_ms,
        "with PNG": load_ms + overlay_ms + png_ms,
        "with JPEG": load_ms + overlay_ms + jpg_ms,
    }
    print(
        "  -> images/s one core feeds (this host's cores): "
        + ", ".join(f"{k} {1e3 / ms:.0f} ({cores * 1e3 / ms:.0f})" for k, ms in costs.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
