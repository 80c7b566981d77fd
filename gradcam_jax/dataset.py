"""Explaining whole image folders: data parallel over every local device, shared across hosts,
written as it goes, and resumable.

    summary = explain_dataset(["photos/"], "out/", model, variables, batch_size=32)

What `out/` holds (<name> is the image's path inside its folder, without suffix; a file given
directly is named by its stem):

    settings.json               method, options, classes, crop, maps: a rerun must use the same (or overwrite)
    index.jsonl                 one JSON line per finished (image, class): image, name, output
                                (<name>[-<class>]), class, label, score, map (its file), row (its
                                place in a shard), overlay, and the image's size and mtime_ns when
                                read; under jax.distributed one file per process, index.<i>-of-<n>.jsonl
    .lock                       held (flock) while a run writes here; under jax.distributed one per process
    maps/shard-<p>-<n>.png      maps="shards" (the default): up to SHARD_MAPS (32) maps of one batch
                                stacked (row r is rows r*224 .. r*224+223) as 8-bit grayscale,
                                map = pixel / 255 (the overlay's own resolution); about 10 KB per
                                smooth CAM map
    maps/<name>[-<class>].npy   maps="npy": the float32 (224, 224) map in [0, 1], one file each
    <name>[-<class>].png        the map over the photo, when `alpha` is given (`gradcam-jax explain DIR`);
                                .jpg with overlay_format="jpg" (a tenth of the PNG's encoding time)

`load_maps(out)` gives back (outputs, classes, maps) whatever the layout.

Parallelism: each batch, padded (by repeating an image) only up to the next bucket, a multiple of
the local device count (`gradcam_jax._src.batching`), is put on a 1-D `Mesh` of the local devices as
`NamedSharding(mesh, P("data"))`, with the variables replicated; the jitted method then runs data
parallel (XLA partitions it along the batch; images never interact, so the devices never talk). Under `jax.distributed`, process i of n
takes images i, i+n, i+2n, ... of the sorted list on its own devices: hosts never wait for each other.
The host side runs beside the device: a thread pool (one thread per core) decodes and resizes
the next images and draws, encodes and writes the finished ones, while the device computes.

Sharing: a second run into the same folder while one is writing is refused (a ValueError); the
lock is an flock, so a crashed run leaves nothing stuck. A failed write (a full disk, a folder
made read-only) raises its OSError; everything finished before it stays finished.

Resume: an (image, class) is finished once its line is in an index file, and its map and overlay
are written (atomically) before that line, so a kill loses at most the two batches in flight. A rerun reads every index file, skips what is
finished (unless the image's size or modification time changed since: then it is explained
again, and its newer line wins), and first repairs its own index if a kill cut its last line short.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

from gradcam_jax._src import batching, outputs
from gradcam_jax._src import images as images_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.methods import METHODS
from gradcam_jax._src.overlay import blend
from gradcam_jax.models import imagenet as labels
from gradcam_jax.models.googlenet import INPUT_SIZE

SETTINGS = "settings.json"
MAPS = "maps"
LOCK = ".lock"
MAP_LAYOUTS = ("shards", "npy")
OVERLAY_FORMATS = ("png", "jpg")
# maps per shard file: a batch's shards are encoded in parallel, one per host thread (a single
# PNG of a 256-image batch took ~0.5 s to encode, and capped a GPU run at ~260 images/s)
SHARD_MAPS = 32


class Item(NamedTuple):
    path: Path  # the image file
    name: str  # its output name: path inside its folder, no suffix, '/'-separated


class DatasetPlan(NamedTuple):
    out: Path
    todo: list[Item]  # this process's images still to explain
    finished: int  # this process's images already finished by earlier runs
    settings: dict  # method, options, classes, crop, as settings.json holds them
    options: dict  # the method's keyword options, as given
    overlays: bool  # whether overlay PNGs are written
    overwrite: bool
    process: int
    processes: int


class DatasetSummary(NamedTuple):
    explained: int  # images explained by this call (this process)
    skipped: int  # images finished by earlier runs (this process's share)
    failed: list[str]  # `<file>: <reason>` for each unreadable image
    devices: int  # local devices each batch was sharded over
    processes: int
    index: Path


# -- planning (pure, apart from reading the folder and earlier indexes) --------------------------


def list_images(inputs: Iterable[str | Path], exclude: str | Path | None = None) -> list[Item]:
    """Image files (by suffix, sorted) inside each folder in `inputs`, and files given directly,
    each with its output name. Files under `exclude` (the output folder) are left out.
    ValueError for a missing path or two images that would share outputs."""
    skip = Path(exclude).resolve() if exclude is not None else None
    items: list[Item] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for path in sorted(
                p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in images_lib.IMAGE_SUFFIXES
            ):
                if skip is None or skip not in path.resolve().parents:
                    items.append(Item(path, path.relative_to(given).with_suffix("").as_posix()))
        elif given.exists():
            items.append(Item(given, given.stem))
        else:
            raise ValueError(f"{given}: no such file or folder")
    seen: dict[str, Path] = {}
    for item in items:
        if item.name in seen:
            raise ValueError(
                f"{seen[item.name]} and {item.path} would share output files; explain them in separate runs"
            )
        seen[item.name] = item.path
    return items


def process_share(items: list, process: int | None = None, processes: int | None = None) -> list:
    """This process's share of `items` under jax.distributed (all of them otherwise): every n-th from i."""
    process = jax.process_index() if process is None else process
    processes = jax.process_count() if processes is None else processes
    return items[process::processes]


def output_files(
    name: str, classes: list[int] | None, overlay_format: str = "png"
) -> list[tuple[int | None, str, str, str]]:
    """(class or None for top-1, output name, .npy map file, overlay file) per class; the files
    relative to the output folder."""
    return [
        (cls, f"{name}{suffix}", f"{MAPS}/{name}{suffix}.npy", f"{name}{suffix}.{overlay_format}")
        for cls in (classes or [None])
        for suffix in ["" if cls is None else f"-{cls}"]
    ]


def output_of(record: dict) -> str:
    """A record's output name (records of older runs have none: it is their .npy file's path)."""
    return record.get("output") or record["map"][len(MAPS) + 1 : -len(".npy")]


def index_name(process: int, processes: int) -> str:
    return "index.jsonl" if processes == 1 else f"index.{process}-of-{processes}.jsonl"


def parse_index(path: Path) -> tuple[list[dict], bool]:
    """(records, clean) of one index file: lines that parse as records; clean=False if any did not
    (a line cut short by a kill)."""
    records, clean = [], True
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and "map" in record:
            records.append(record)
        else:
            clean = False
    return records, clean


def finished_maps(out: Path) -> dict[str, dict]:
    """{output name: its latest record} of every finished (image, class), from every index file in `out`."""
    done = {}
    for path in sorted(out.glob("index*.jsonl")):
        done.update({output_of(r): r for r in parse_index(path)[0] if (out / r["map"]).is_file()})
    return done


def read_shard(path: Path, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """float32 (N, H, W) maps in [0, 1] of one shard file."""
    with Image.open(path) as image:
        pixels = np.asarray(image, np.float32)
    return pixels.reshape(-1, *size) / 255.0


def load_maps(out: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(outputs, classes, maps) of every finished (image, class) in a dataset run's folder `out`:
    output names <name>[-<class>] (sorted), int32 (N,) classes explained, float32 (N, H, W) maps
    in [0, 1] (shards: in steps of 1/255), whatever the layout (see the module doc)."""
    out = Path(out)
    done = finished_maps(out)
    shards: dict[str, np.ndarray] = {}
    names = sorted(done)
    maps = []
    for name in names:
        record = done[name]
        if "row" in record:
            if record["map"] not in shards:
                shards[record["map"]] = read_shard(out / record["map"])
            maps.append(shards[record["map"]][record["row"]])
        else:
            maps.append(np.load(out / record["map"]).astype(np.float32))
    classes = np.asarray([done[n]["class"] for n in names], np.int32)
    return names, classes, np.stack(maps) if maps else np.zeros((0, *INPUT_SIZE), np.float32)


def stamp(path: Path) -> dict:
    """{"size", "mtime_ns"} of an input file: what tells a resume that it changed since."""
    info = os.stat(path)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def unchanged(item: Item, record: dict | None) -> bool:
    """Whether `record` explains `item` as it is now (records of older runs carry no stamp: kept)."""
    if record is None:
        return False
    if "mtime_ns" not in record:
        return True
    try:
        return stamp(item.path) == {"size": record["size"], "mtime_ns": record["mtime_ns"]}
    except OSError:
        return False


def full_options(method: str, options: dict) -> dict:
    """`options` with the method's defaults filled in, so that runs with equal settings compare equal."""
    defaults = {
        p.name: p.default
        for p in inspect.signature(METHODS[method]).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
    }
    return {k: v for k, v in sorted({**defaults, **options}.items())}


def differences(earlier: dict, now: dict) -> str:
    """'method cam (now grad_cam), classes [243] (now None)': what two settings dicts differ in."""

    def flat(settings):
        return {**{k: v for k, v in settings.items() if k != "options"}, **settings.get("options", {})}

    a, b = flat(earlier), flat(now)
    return ", ".join(f"{k} {a.get(k)} (now {b.get(k)})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def plan_dataset(
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    method: str = "grad_cam",
    options: dict | None = None,
    classes: list[int] | None = None,
    crop: str = "none",
    overlays: bool = False,
    overwrite: bool = False,
    maps: str = "shards",
    overlay_format: str = "png",
) -> DatasetPlan:
    """What `explain_dataset` will do, checked before any heavy work: ValueError for a missing input,
    clashing names, an output over an input, or an `out` folder holding other results."""
    out = Path(out)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(sorted(METHODS))}")
    if crop not in images_lib.CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(images_lib.CROPS)}")
    if maps not in MAP_LAYOUTS:
        raise ValueError(f"unknown maps layout {maps!r}; choose from {', '.join(MAP_LAYOUTS)}")
    if overlay_format not in OVERLAY_FORMATS:
        raise ValueError(f"unknown overlay format {overlay_format!r}; choose from {', '.join(OVERLAY_FORMATS)}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    items = list_images(inputs, exclude=out)
    if not items:
        raise ValueError("no images found in the given paths")
    protected = {item.path.resolve() for item in items}
    for item in items:
        for _, _, npy, png in output_files(item.name, classes, overlay_format):
            if (out / png).resolve() in protected or (out / npy).resolve() in protected:
                raise ValueError(f"{out / png}: refusing to overwrite an input image")
    settings = {
        "method": method,
        "options": full_options(method, options or {}),
        "classes": classes,
        "crop": crop,
        "maps": maps,
        "overlay_format": overlay_format,
    }
    settings = json.loads(json.dumps(settings, default=str))  # as it reads back from settings.json
    done: dict[str, dict] = {}
    if out.is_dir() and any(not starting_run_file(p.name) for p in out.iterdir()) and not overwrite:
        if not (out / SETTINGS).is_file():
            raise ValueError(
                f"{out}: exists and holds no earlier dataset run; choose another output folder or pass --overwrite"
            )
        # older runs wrote .npy maps and PNG overlays, and said nothing of either
        earlier = {"maps": "npy", "overlay_format": "png", **json.loads((out / SETTINGS).read_text())}
        if earlier != settings:
            raise ValueError(
                f"{out}: holds results for other settings: {differences(earlier, settings)}; "
                "choose another output folder or pass --overwrite"
            )
        done = finished_maps(out)
    process, processes = jax.process_index(), jax.process_count()
    mine = process_share(items, process, processes)
    todo = [
        item
        for item in mine
        if not all(unchanged(item, done.get(o)) for _, o, _, _ in output_files(item.name, classes, overlay_format))
    ]
    finished = len(mine) - len(todo)
    return DatasetPlan(out, todo, finished, settings, dict(options or {}), overlays, overwrite, process, processes)


def starting_run_file(name: str) -> bool:
    """A file a run writes before settings.json is in place: any process's lock, or settings.json's
    temporary. Another host that plans in that moment must not take them for someone else's files."""
    settings = Path(SETTINGS)
    return name.startswith(LOCK) or (name.startswith(f".{settings.stem}.") and name.endswith(f".tmp{settings.suffix}"))


# -- running -------------------------------------------------------------------------------------


def start_index(plan: DatasetPlan) -> Path:
    """Write settings.json; return this process's index file, emptied on overwrite, repaired if cut short."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    if plan.overwrite or not (out / SETTINGS).is_file():
        outputs.atomic_write(out / SETTINGS, lambda tmp: tmp.write_text(json.dumps(plan.settings, indent=1) + "\n"))
    index = out / index_name(plan.process, plan.processes)
    if plan.overwrite:
        if plan.process == 0:  # the others only empty their own index, so no live file is removed
            live = {index_name(i, plan.processes) for i in range(plan.processes)}
            for path in out.glob("index*.jsonl"):
                if path.name not in live:
                    path.unlink(missing_ok=True)
        outputs.atomic_write(index, lambda tmp: tmp.write_text(""))
    elif index.is_file():
        records, clean = parse_index(index)
        kept = [r for r in records if (out / r["map"]).is_file()]
        if not clean or len(kept) != len(records):
            text = "".join(json.dumps(r) + "\n" for r in kept)
            outputs.atomic_write(index, lambda tmp: tmp.write_text(text))
    return index


def append_index(index: Path, records: list[dict]) -> None:
    """Append records as JSON lines, in one write, flushed to disk before returning."""
    with open(index, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def load(item: Item, crop: str, original: bool = True) -> tuple[Item, np.ndarray | None, object, dict | None]:
    """(item, the photo uint8 (H, W, 3) if `original` else None, model input uint8 (224, 224, 3),
    stamp), or (item, None, ImageError, None). Runs in a host worker (a thread or a process)."""
    try:
        when = stamp(item.path)  # before reading: a change while it is read shows on the next run
        photo = images_lib.read_image(item.path)
        return item, np.asarray(photo) if original else None, images_lib.resize(photo, INPUT_SIZE, crop), when
    except OSError as err:
        return item, None, images_lib.ImageError(f"{item.path}: {err.strerror or err}"), None
    except images_lib.ImageError as err:
        return item, None, err, None


def write_files(out: Path, files: list[tuple[str | None, str | None]], maps, backdrop, alpha) -> None:
    """One image's files, in a host worker: for each class k, files[k] = (its .npy file or None,
    its overlay file or None), relative to `out`; maps float32 (K, H, W); backdrop uint8 (h, w, 3)
    or None when no overlay is drawn."""
    for (npy, picture), heatmap in zip(files, maps):
        if npy is not None:
            outputs.save_npy(out / npy, heatmap.astype(np.float32))
        if picture is not None:
            outputs.save_picture(out / picture, blend(backdrop, heatmap, alpha))


def host_processes(workers: int | None = None) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `workers` (default one per core) host processes for `run_dataset(host=...)`.
    Threads share one interpreter lock: on an H200's 16-core host, decoding scaled 4.5x on 16
    threads and drawing overlays 3.4x, flat after 4. Processes are started by "spawn" (JAX is
    multithreaded, so fork is unsafe): a script using them needs `if __name__ == "__main__":`."""
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count(), multiprocessing.get_context("spawn"))


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


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh, axis "data", over `devices` (default: this process's local devices)."""
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), ("data",))


def run_dataset(
    plan: DatasetPlan,
    model,
    variables,
    *,
    batch_size: int = 16,
    alpha: float | None = None,
    limit: int | None = None,
    progress: bool = False,
    on_image: Callable[[dict], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    mesh: Mesh | None = None,
    host: concurrent.futures.Executor | None = None,
) -> DatasetSummary:
    """Carry out `plan` (see `plan_dataset`); see `explain_dataset`. `host`: the executor whose
    workers load, draw and write beside the device (default: a thread per core, made and shut
    down here; `host_processes()` on many-core hosts, yours to reuse and shut down)."""
    settings, out = plan.settings, plan.out
    classes = settings["classes"]
    if plan.overlays and (alpha is None or not 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1] to draw overlays; got {alpha}")
    mesh = mesh or data_mesh()
    step = -(-batch_size // mesh.size) * mesh.size  # a multiple of the device count
    data = NamedSharding(mesh, PartitionSpec("data"))
    variables = jax.device_put(taps.prepare(model, variables), NamedSharding(mesh, PartitionSpec()))
    method = METHODS[settings["method"]]
    todo = plan.todo if limit is None else plan.todo[:limit]
    failed: list[str] = []
    explained = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", disable=None)

    shards = shard_names(out, plan.process)

    def records_of(chunk, result) -> tuple[list[dict], list, int]:
        maps, pixels, scores, chosen = result
        top1 = scores.ndim == 1

        def fetched(a):  # waits for the device; top-1 (B, ...) -> (B, 1, ...), so one loop serves both
            a = np.asarray(a)[: len(chunk)]
            return a[:, None] if top1 else a

        maps, pixels = (None if a is None else fetched(a) for a in (maps, pixels))
        scores, chosen = fetched(scores), fetched(chosen)
        files = [output_files(item.name, classes, settings["overlay_format"]) for item, _, _, _ in chunk]
        writes = []
        if maps is not None:
            writes = [
                pool.submit(
                    write_files,
                    out,
                    [
                        (npy if settings["maps"] == "npy" else None, picture if plan.overlays else None)
                        for _, _, npy, picture in files[b]
                    ],
                    maps[b],
                    original if settings["crop"] == "none" else image,
                    alpha,
                )
                for b, (_, original, image, _) in enumerate(chunk)
            ]
        pieces = []
        if pixels is not None:
            pixels = pixels.reshape(-1, *pixels.shape[2:])  # (B * K, H, W): row b * K + k
            pieces = [next(shards) for _ in range(0, len(pixels), SHARD_MAPS)]
            writes += [
                pool.submit(write_shard, out / piece, pixels[i * SHARD_MAPS : (i + 1) * SHARD_MAPS])
                for i, piece in enumerate(pieces)
            ]
        records = []
        for b, (item, _, _, when) in enumerate(chunk):
            for k, (_, output, npy, picture) in enumerate(files[b]):
                c = int(chosen[b, k])
                r = b * scores.shape[1] + k
                where = {"map": npy} if not pieces else {"map": pieces[r // SHARD_MAPS], "row": r % SHARD_MAPS}
                records.append(
                    {
                        "image": str(item.path),
                        "name": item.name,
                        "output": output,
                        "class": c,
                        "label": labels.label(c),
                        "score": round(float(scores[b, k]), 6),
                        **where,
                        "overlay": picture if plan.overlays else None,
                        **when,
                    }
                )
        return records, writes, len(chunk)

    def finish(records: list[dict], writes: list, images: int) -> int:  # index lines only once their files are written
        for future in writes:
            future.result()
        append_index(index, records)
        for record in records:
            if on_image is not None:
                on_image(record)
        if bar is not None:
            bar.update(images)
        return images

    with (
        outputs.folder_lock(out / lock_name(plan.process, plan.processes)),
        contextlib.nullcontext(host) if host else concurrent.futures.ThreadPoolExecutor(os.cpu_count(), "host") as pool,
    ):
        index = start_index(plan)
        reader = functools.partial(load, crop=settings["crop"], original=plan.overlays and settings["crop"] == "none")
        loaded = ordered_map(pool, reader, todo, ahead=2 * step)
        host_maps = plan.overlays or settings["maps"] == "npy"  # float maps drawn or saved on the host
        dispatched = None  # the batch on the device while the previous one is fetched
        saving: collections.deque = collections.deque()  # batches whose files are being written
        try:
            for chunk in chunks(loaded, step, failed, on_error):
                rows = batching.bucket(len(chunk), step, mesh.size)
                # uint8 to the device, cast there: a quarter of the bytes to stack and copy
                pixels = jax.device_put(batching.stack_padded([c[2] for c in chunk], rows, np.uint8), data)
                images = pixels.astype(jnp.float32)
                targets = (
                    None if not classes else jax.device_put(np.tile(np.asarray(classes, np.int32), (rows, 1)), data)
                )
                result = method(model, variables, images, targets, **plan.options)
                if dispatched is not None:
                    saving.append(records_of(*dispatched))
                quantized = quantize(result.map) if settings["maps"] == "shards" else None
                dispatched = (chunk, (result.map if host_maps else None, quantized, result.scores, result.targets))
                while len(saving) > 1 or (saving and all(f.done() for f in saving[0][1])):
                    explained += finish(*saving.popleft())
            if dispatched is not None:
                saving.append(records_of(*dispatched))
            while saving:
                explained += finish(*saving.popleft())
        finally:
            loaded.close()  # pyright: ignore[reportAttributeAccessIssue]  (a generator)
            if bar is not None:
                bar.close()
    return DatasetSummary(explained, plan.finished, failed, mesh.size, plan.processes, index)


def shard_names(out: Path, process: int) -> Iterator[str]:
    """maps/shard-<process>-<n>.png for n after every shard this process wrote before (a resume
    never overwrites a shard that finished records point into)."""
    prefix = f"shard-{process:03d}-"
    taken = [int(p.stem[len(prefix) :]) for p in (out / MAPS).glob(f"{prefix}*.png") if p.stem[len(prefix) :].isdigit()]
    n = max(taken, default=-1) + 1
    while True:
        yield f"{MAPS}/{prefix}{n:06d}.png"
        n += 1


@jax.jit
def quantize(maps: jax.Array) -> jax.Array:
    """float (..., H, W) maps in [0, 1] -> uint8 pixels round(map * 255), the shards' values;
    jitted, so it runs where the maps are: a quarter of the bytes to fetch, no pass on the host."""
    return jnp.round(jnp.clip(maps, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def write_shard(path: Path, pixels: np.ndarray) -> None:
    """uint8 (N, H, W) quantized maps -> one 8-bit grayscale PNG of N*H rows, atomically."""
    outputs.save_png(path, pixels.reshape(-1, pixels.shape[-1]))


def lock_name(process: int, processes: int) -> str:
    return LOCK if processes == 1 else f"{LOCK}.{process}-of-{processes}"


def chunks(loaded: Iterable, size: int, failed: list[str], on_error) -> Iterator[list]:
    """Readable images in lists of `size` (the last may be shorter); unreadable ones reported and skipped."""
    chunk = []
    for item, original, image, when in loaded:
        if isinstance(image, images_lib.ImageError):
            failed.append(str(image))
            if on_error is not None:
                on_error(str(image))
            continue
        chunk.append((item, original, image, when))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def explain_dataset(
    inputs: str | Path | Iterable[str | Path],
    out: str | Path,
    model,
    variables,
    *,
    method: str = "grad_cam",
    classes: list[int] | None = None,
    batch_size: int = 16,
    crop: str = "none",
    alpha: float | None = None,
    overwrite: bool = False,
    maps: str = "shards",
    overlay_format: str = "png",
    limit: int | None = None,
    progress: bool = False,
    on_image: Callable[[dict], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    host: concurrent.futures.Executor | None = None,
    **options,
) -> DatasetSummary:
    """Explain every image in `inputs` (folders and files) into `out`, resuming an earlier run there.

    classes: class indices to explain in each image (default: its top-1). batch_size: images per
    step over all local devices (a short last batch is padded only to the next bucket, a multiple
    of their count). alpha: also draw overlay
    PNGs at this opacity. maps: "shards" (8-bit PNGs of up to 32 stacked maps, read back
    with `load_maps`) or "npy" (one float32 .npy per map). overlay_format: "png" or "jpg". limit: stop after this many images (rerun to go on). on_image(record) is
    called per finished (image, class), on_error("<file>: <reason>") per unreadable image, which is
    skipped (and tried again by a rerun). host: the executor for the host work (default a thread
    per core; `with host_processes() as host:` on many-core GPU hosts, where threads stop scaling).
    `options` (layer, score, relu, ...) go to the method.
    The layout of `out`, the sharding and the resume rule are in the module doc.
    """
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    plan = plan_dataset(
        inputs,
        out,
        method=method,
        options=options,
        classes=classes,
        crop=crop,
        overlays=alpha is not None,
        overwrite=overwrite,
        maps=maps,
        overlay_format=overlay_format,
    )
    return run_dataset(
        plan,
        model,
        variables,
        batch_size=batch_size,
        alpha=alpha,
        limit=limit,
        progress=progress,
        on_image=on_image,
        on_error=on_error,
        host=host,
    )
