"""Explaining whole image folders: data parallel over every local device, shared across hosts,
written as it goes, and resumable.

    summary = explain_dataset(["photos/"], "out/", model, variables, images_per_batch=32)

What `out/` holds (<name> is the image's path inside its folder, without suffix; a file given
directly is named by its stem):

    settings.json               method, options, classes, crop, maps, input_size: a rerun must use the same
                                (or overwrite)
    index.jsonl                 one JSON line per finished (image, class): image, name, output
                                (<name>[-<class>]), class, label, score, flags (why the map is not
                                informative: flag names, [] when it is), map (its file), row (its
                                place in a shard), overlay, and the image's size and mtime_ns when
                                read; under jax.distributed one file per process, index.<i>-of-<n>.jsonl
    .lock                       held (flock) while a run writes here; under jax.distributed one per process
    maps/shard-<p>-<n>.png      maps="shards" (the default): up to SHARD_MAPS (32) maps of one batch
                                stacked (row r is rows r*h .. r*h+h-1, h the input's height) as 8-bit grayscale,
                                map = pixel / 255 (the overlay's own resolution); about 10 KB per
                                smooth CAM map
    maps/<name>[-<class>].npy   maps="npy": the float32 (h, w) map in [0, 1], one file each
    <name>[-<class>].png        the map over the photo, when `opacity` is given (`gradcam-jax explain DIR`);
                                .jpg with overlay_format="jpg" (a tenth of the PNG's encoding time)

`load_maps(out)` gives back (outputs, classes, maps) whatever the layout.

Parallelism: each batch, padded (by repeating an image) only up to the next bucket, a multiple of
the local device count (`gradcam_jax._src.pipeline`, the loop every front end shares), is put on a 1-D `Mesh` of the local devices as
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
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

from gradcam_jax._src import images as images_lib
from gradcam_jax._src import outputs, pipeline
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.diagnostics import flag_names
from gradcam_jax._src.images import INPUT_SIZE
from gradcam_jax._src.methods import METHODS
from gradcam_jax._src.overlay import blend
from gradcam_jax._src.pipeline import ModelSpec, ordered_map  # noqa: F401  (ordered_map: as before)

SETTINGS = "settings.json"
MAPS = "maps"
LOCK = ".lock"
MAP_LAYOUTS = ("shards", "npy")
OVERLAY_FORMATS = ("png", "jpg")
# maps per shard file: a batch's shards are encoded in parallel, one per host thread (a single
# PNG of a 256-image batch took ~0.5 s to encode, and capped a GPU run at ~260 images/s)
SHARD_MAPS = 32
DEPRECATED_OPTIONS = (
    "method options as keyword arguments ({}) are deprecated; pass method_options={{...}} (they go in the next release)"
)


class Item(NamedTuple):
    path: Path  # the image file
    name: str  # its output name: path inside its folder, no suffix, '/'-separated


class DatasetPlan(NamedTuple):
    out: Path
    todo: list[Item]  # this process's images still to explain
    finished: int  # this process's images already finished by earlier runs
    settings: dict  # method, options, classes, crop, maps, overlay_format, input_size, as settings.json holds them
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
    flagged: int = 0  # maps this call indexed whose record has flags (not informative)


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


def run_input_size(out: Path) -> tuple[int, int]:
    """The (h, w) a run in `out` resized its images to (runs before it was recorded: GoogLeNet's)."""
    settings = json.loads((out / SETTINGS).read_text()) if (out / SETTINGS).is_file() else {}
    return pipeline.model_spec(settings.get("input_size")).input_size


def load_maps(out: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(outputs, classes, maps) of every finished (image, class) in a dataset run's folder `out`:
    output names <name>[-<class>] (sorted), int32 (N,) classes explained, float32 (N, H, W) maps
    in [0, 1] (shards: in steps of 1/255), whatever the layout (see the module doc)."""
    out = Path(out)
    size = run_input_size(out)
    done = finished_maps(out)
    shards: dict[str, np.ndarray] = {}
    names = sorted(done)
    maps = []
    for name in names:
        record = done[name]
        if "row" in record:
            if record["map"] not in shards:
                shards[record["map"]] = read_shard(out / record["map"], size)
            maps.append(shards[record["map"]][record["row"]])
        else:
            maps.append(np.load(out / record["map"]).astype(np.float32))
    classes = np.asarray([done[n]["class"] for n in names], np.int32)
    return names, classes, np.stack(maps) if maps else np.zeros((0, *size), np.float32)


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
    targets: list[int] | None = None,
    crop: str = "none",
    overlays: bool = False,
    overwrite: bool = False,
    maps: str = "shards",
    overlay_format: str = "png",
    input_size: tuple[int, int] | None = None,
    **deprecated,
) -> DatasetPlan:
    """What `explain_dataset` will do, checked before any heavy work: ValueError for a missing input,
    clashing names, an output over an input, an option the method does not take, or an `out`
    folder holding other results. `options`: the method's; `targets`: the classes (old name: classes)."""
    classes = pipeline.renamed(deprecated, "classes", "targets", targets)
    if deprecated:
        raise TypeError(f"plan_dataset() got an unexpected keyword argument {next(iter(deprecated))!r}")
    out = Path(out)
    options = check_choices(method, options, crop, maps, overlay_format)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    items = list_images(inputs, exclude=out)
    if not items:
        raise ValueError("no images found in the given paths")
    check_inputs_kept(items, out, classes, overlay_format)
    settings = {
        "method": method,
        "options": full_options(method, options),
        "classes": classes,
        "crop": crop,
        "maps": maps,
        "overlay_format": overlay_format,
        "input_size": list(pipeline.model_spec(input_size).input_size),
    }
    settings = json.loads(json.dumps(settings, default=str))  # as it reads back from settings.json
    done = {} if overwrite else earlier_results(out, settings)
    process, processes = jax.process_index(), jax.process_count()
    mine = process_share(items, process, processes)
    todo = [
        item
        for item in mine
        if not all(unchanged(item, done.get(o)) for _, o, _, _ in output_files(item.name, classes, overlay_format))
    ]
    finished = len(mine) - len(todo)
    return DatasetPlan(out, todo, finished, settings, options, overlays, overwrite, process, processes)


def check_choices(method: str, options: dict | None, crop: str, maps: str, overlay_format: str) -> dict:
    """The method's options, checked with the run's other choices: a one-line ValueError for any unknown."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(sorted(METHODS))}")
    if crop not in images_lib.CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(images_lib.CROPS)}")
    if maps not in MAP_LAYOUTS:
        raise ValueError(f"unknown maps layout {maps!r}; choose from {', '.join(MAP_LAYOUTS)}")
    if overlay_format not in OVERLAY_FORMATS:
        raise ValueError(f"unknown overlay format {overlay_format!r}; choose from {', '.join(OVERLAY_FORMATS)}")
    return pipeline.check_method_options(method, METHODS[method], options)


def check_inputs_kept(items: list[Item], out: Path, classes: list[int] | None, overlay_format: str) -> None:
    """ValueError if an output file of the run would land on one of its input images."""
    protected = {item.path.resolve() for item in items}
    for item in items:
        for _, _, npy, png in output_files(item.name, classes, overlay_format):
            if (out / png).resolve() in protected or (out / npy).resolve() in protected:
                raise ValueError(f"{out / png}: refusing to overwrite an input image")


def earlier_results(out: Path, settings: dict) -> dict[str, dict]:
    """{output name: record} finished by earlier runs in `out` with the same `settings`; a ValueError
    if `out` holds other files, or results for other settings."""
    if not out.is_dir() or all(starting_run_file(p.name) for p in out.iterdir()):
        return {}
    if not (out / SETTINGS).is_file():
        raise ValueError(
            f"{out}: exists and holds no earlier dataset run; choose another output folder or pass --overwrite"
        )
    # older runs wrote .npy maps and PNG overlays at GoogLeNet's size, and said nothing of any
    older = {"maps": "npy", "overlay_format": "png", "input_size": list(pipeline.model_spec().input_size)}
    earlier = {**older, **json.loads((out / SETTINGS).read_text())}
    if earlier != settings:
        raise ValueError(
            f"{out}: holds results for other settings: {differences(earlier, settings)}; "
            "choose another output folder or pass --overwrite"
        )
    return finished_maps(out)


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


def load(
    item: Item, crop: str, original: bool = True, size: tuple[int, int] = INPUT_SIZE
) -> tuple[Item, np.ndarray | None, object, dict | None]:
    """(item, the photo uint8 (H, W, 3) if `original` else None, model input uint8 (*size, 3),
    stamp), or (item, None, ImageError, None). Runs in a host worker (a thread or a process)."""
    try:
        when = stamp(item.path)  # before reading: a change while it is read shows on the next run
        photo = images_lib.read_image(item.path)
        return item, np.asarray(photo) if original else None, images_lib.resize(photo, size, crop), when
    except OSError as err:
        return item, None, images_lib.ImageError(f"{item.path}: {err.strerror or err}"), None
    except images_lib.ImageError as err:
        return item, None, err, None


def write_files(out: Path, files: list[tuple[str | None, str | None]], maps, backdrop, opacity) -> None:
    """One image's files, in a host worker: for each class k, files[k] = (its .npy file or None,
    its overlay file or None), relative to `out`; maps float32 (K, H, W); backdrop uint8 (h, w, 3)
    or None when no overlay is drawn."""
    for (npy, picture), heatmap in zip(files, maps):
        if npy is not None:
            outputs.save_npy(out / npy, heatmap.astype(np.float32))
        if picture is not None:
            outputs.save_picture(out / picture, blend(backdrop, heatmap, opacity))


def host_processes(workers: int | None = None) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `workers` (default one per core) host processes for `run_dataset(host=...)`.
    Threads share one interpreter lock: on an H200's 16-core host, decoding scaled 4.5x on 16
    threads and drawing overlays 3.4x, flat after 4. Processes are started by "spawn" (JAX is
    multithreaded, so fork is unsafe): a script using them needs `if __name__ == "__main__":`."""
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count(), multiprocessing.get_context("spawn"))


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh, axis "data", over `devices` (default: this process's local devices)."""
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), ("data",))


class Writer:
    """One run's host side, beside the device: fetch each batch's real rows, write its files in
    the host pool, and index them once written (a kill loses at most the batches in flight)."""

    def __init__(self, plan: DatasetPlan, pool, index: Path, spec: ModelSpec, opacity, on_image, bar):
        self.plan, self.pool, self.index, self.spec = plan, pool, index, spec
        self.opacity, self.on_image, self.bar = opacity, on_image, bar
        self.settings = plan.settings
        self.shards = shard_names(plan.out, plan.process)
        self.flagged = 0  # maps indexed with flags

    def submit(self, chunk: list, result: tuple) -> tuple[list[dict], list, int]:
        """Fetch a batch's results (waiting for the device), start writing its files; (records,
        the writes, images)."""
        maps, pixels, scores, chosen, flags = per_class(len(chunk), result)
        files = [
            output_files(item.name, self.settings["classes"], self.settings["overlay_format"]) for item, *_ in chunk
        ]
        writes = [] if maps is None else self.write_maps(chunk, files, maps)
        pieces: list[str] = []
        if pixels is not None:
            pieces, shard_writes = self.write_shards(pixels.reshape(-1, *pixels.shape[2:]))  # row b * K + k
            writes += shard_writes
        return self.records(chunk, files, scores, chosen, flags, pieces), writes, len(chunk)

    def write_maps(self, chunk: list, files: list, maps: np.ndarray) -> list:
        """Each image's .npy maps and overlays, one host task per image."""
        npy_maps, crop = self.settings["maps"] == "npy", self.settings["crop"]
        return [
            self.pool.submit(
                write_files,
                self.plan.out,
                [
                    (npy if npy_maps else None, picture if self.plan.overlays else None)
                    for _, _, npy, picture in files[b]
                ],
                maps[b],
                original if crop == "none" else image,
                self.opacity,
            )
            for b, (_, original, image, _) in enumerate(chunk)
        ]

    def write_shards(self, pixels: np.ndarray) -> tuple[list[str], list]:
        """uint8 (B * K, H, W) maps into shards of SHARD_MAPS: (their files, the host tasks)."""
        pieces = [next(self.shards) for _ in range(0, len(pixels), SHARD_MAPS)]
        writes = [
            self.pool.submit(write_shard, self.plan.out / piece, pixels[i * SHARD_MAPS : (i + 1) * SHARD_MAPS])
            for i, piece in enumerate(pieces)
        ]
        return pieces, writes

    def records(self, chunk: list, files: list, scores, chosen, flags, pieces: list[str]) -> list[dict]:
        """The index lines of a batch: one per (image, class); "flags": why its map is not informative
        (`gradcam_jax.flag_names`), [] when it is."""
        records = []
        for b, (item, _, _, when) in enumerate(chunk):
            for k, (_, output, npy, picture) in enumerate(files[b]):
                c, r = int(chosen[b, k]), b * scores.shape[1] + k
                where = {"map": npy} if not pieces else {"map": pieces[r // SHARD_MAPS], "row": r % SHARD_MAPS}
                records.append(
                    {
                        "image": str(item.path),
                        "name": item.name,
                        "output": output,
                        "class": c,
                        "label": self.spec.label(c),
                        "score": round(float(scores[b, k]), 6),
                        "flags": flag_names(flags[b, k]),
                        **where,
                        "overlay": picture if self.plan.overlays else None,
                        **when,
                    }
                )
        return records

    def finish(self, records: list[dict], writes: list, images: int) -> int:
        """Index a batch once its files are written; the images it held."""
        for future in writes:
            future.result()
        append_index(self.index, records)
        self.flagged += sum(bool(record["flags"]) for record in records)
        for record in records:
            if self.on_image is not None:
                self.on_image(record)
        if self.bar is not None:
            self.bar.update(images)
        return images


def per_class(n: int, result: tuple) -> tuple:
    """(maps, pixels, scores, chosen, flags): the first `n` rows on the host, top-1 (B, ...) made
    (B, 1, ...) so that one loop serves both."""
    arrays = pipeline.real_rows(n, result)
    if arrays[2].ndim == 1:
        arrays = tuple(None if a is None else a[:, None] for a in arrays)
    return arrays


def batch_explainer(plan: DatasetPlan, model, variables, mesh: Mesh) -> Callable:
    """`explain(pixels uint8 (rows, h, w, 3), chunk)` -> device arrays (maps for the host or None,
    quantized maps or None, scores, classes, flags), dispatched without waiting: the batch sharded over
    `mesh`, cast to float32 there (a quarter of the bytes to stack and copy)."""
    settings = plan.settings
    data = NamedSharding(mesh, PartitionSpec("data"))
    variables = jax.device_put(taps.prepare(model, variables), NamedSharding(mesh, PartitionSpec()))
    method, classes = METHODS[settings["method"]], settings["classes"]
    host_maps = plan.overlays or settings["maps"] == "npy"  # float maps drawn or saved on the host

    def explain(pixels: np.ndarray, chunk: list) -> tuple:
        images = jax.device_put(pixels, data).astype(jnp.float32)
        rows = len(pixels)
        targets = None if not classes else jax.device_put(np.tile(np.asarray(classes, np.int32), (rows, 1)), data)
        result = method(model, variables, images, targets, **plan.options)
        quantized = quantize(result.map) if settings["maps"] == "shards" else None
        flags = result.flags if result.flags is not None else jnp.zeros(jnp.shape(result.scores), jnp.int32)
        return result.map if host_maps else None, quantized, result.scores, result.targets, flags

    return explain


def progress_bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=None)


def run_dataset(
    plan: DatasetPlan,
    model,
    variables,
    *,
    images_per_batch: int = 16,
    opacity: float | None = None,
    limit: int | None = None,
    progress: bool = False,
    on_image: Callable[[dict], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    mesh: Mesh | None = None,
    host: concurrent.futures.Executor | None = None,
    spec: ModelSpec | None = None,
) -> DatasetSummary:
    """Carry out `plan` (see `plan_dataset`); see `explain_dataset`. `host`: the executor whose
    workers load, draw and write beside the device (default: a thread per core, made and shut
    down here; `host_processes()` on many-core hosts, yours to reuse and shut down). `spec`: the
    model's input size and labels (`pipeline.model_spec()`: GoogLeNet's, ImageNet's)."""
    if plan.overlays and (opacity is None or not 0.0 <= opacity <= 1.0):
        raise ValueError(f"opacity must be in [0, 1] to draw overlays; got {opacity}")
    spec = spec or pipeline.model_spec(plan.settings.get("input_size"))
    mesh = mesh or data_mesh()
    todo = plan.todo if limit is None else plan.todo[:limit]
    explain = batch_explainer(plan, model, variables, mesh)
    failed: list[str] = []
    bar = progress_bar(len(todo), progress)
    with (
        outputs.folder_lock(plan.out / lock_name(plan.process, plan.processes)),
        contextlib.nullcontext(host) if host else concurrent.futures.ThreadPoolExecutor(os.cpu_count(), "host") as pool,
    ):
        writer = Writer(plan, pool, start_index(plan), spec, opacity, on_image, bar)
        crop = plan.settings["crop"]
        reader = functools.partial(load, crop=crop, original=plan.overlays and crop == "none", size=spec.input_size)
        step = -(-images_per_batch // mesh.size) * mesh.size
        loaded = pipeline.ordered_map(pool, reader, todo, ahead=2 * step)
        try:
            batches = pipeline.explained(
                readable(loaded, failed, on_error), explain, images_per_batch,
                inputs=lambda entry: entry[2], multiple=mesh.size, dtype=np.uint8,
            )  # fmt: skip
            explained = write_as_computed(batches, writer)
        finally:
            loaded.close()  # pyright: ignore[reportAttributeAccessIssue]  (a generator)
            if bar is not None:
                bar.close()
    return DatasetSummary(explained, plan.finished, failed, mesh.size, plan.processes, writer.index, writer.flagged)


def write_as_computed(batches: Iterable[tuple[list, tuple]], writer: Writer) -> int:
    """Hand each computed batch to `writer`, indexing batches as their files finish (at most two
    in flight, so the host never falls behind the device); the images explained."""
    explained = 0
    saving: collections.deque = collections.deque()  # batches whose files are being written
    for chunk, result in batches:
        saving.append(writer.submit(chunk, result))
        while len(saving) > 1 or (saving and all(f.done() for f in saving[0][1])):
            explained += writer.finish(*saving.popleft())
    while saving:
        explained += writer.finish(*saving.popleft())
    return explained


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


def readable(loaded: Iterable, failed: list[str], on_error) -> Iterator[tuple]:
    """The readable images of `loaded`; unreadable ones reported (into `failed`, and `on_error`) and skipped."""
    for entry in loaded:
        if isinstance(entry[2], images_lib.ImageError):
            failed.append(str(entry[2]))
            if on_error is not None:
                on_error(str(entry[2]))
            continue
        yield entry


def explain_dataset(
    inputs: str | Path | Iterable[str | Path],
    out: str | Path,
    model,
    variables,
    *,
    method: str = "grad_cam",
    targets: list[int] | None = None,
    method_options: dict | None = None,
    images_per_batch: int = 16,
    crop: str = "none",
    opacity: float | None = None,
    input_size: tuple[int, int] | None = None,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    maps: str = "shards",
    overlay_format: str = "png",
    limit: int | None = None,
    progress: bool = False,
    on_image: Callable[[dict], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    host: concurrent.futures.Executor | None = None,
    **deprecated,
) -> DatasetSummary:
    """Explain every image in `inputs` (folders and files) into `out`, resuming an earlier run there.

    targets: class indices to explain in each image (default: its top-1). method_options: the
    method's own (layer, score, relu, its batch_size, ...). images_per_batch: images per step over
    all local devices (a short batch is padded only to the next bucket, a multiple of their count).
    opacity: also draw overlays, the map at this opacity. input_size, labels: the model's (h, w)
    and class names (default: GoogLeNet's 224 x 224, ImageNet's). maps: "shards" (8-bit PNGs of up
    to 32 maps, read back with `load_maps`) or "npy" (one float32 .npy per map). overlay_format:
    "png" or "jpg". limit: stop after this many images (rerun to go on). on_image(record) per
    finished (image, class); on_error("<file>: <reason>") per unreadable image, skipped (a rerun
    tries it again). host: the executor for the host work (default a thread per core;
    `host_processes()` on many-core GPU hosts). The layout of `out`, the sharding and the resume
    rule are in the module doc. Deprecated for one release: classes= (targets=), batch_size=
    (images_per_batch=), alpha= (opacity=), method options as keywords (method_options=).
    """
    targets = pipeline.renamed(deprecated, "classes", "targets", targets)
    hint = " (a method's own goes in method_options)"
    images_per_batch = pipeline.renamed(deprecated, "batch_size", "images_per_batch", images_per_batch, 16, hint)
    opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, None, hint)
    if deprecated:
        warnings.warn(DEPRECATED_OPTIONS.format(", ".join(deprecated)), DeprecationWarning, stacklevel=2)
    spec = pipeline.model_spec(input_size, labels)
    plan = plan_dataset(
        [inputs] if isinstance(inputs, (str, Path)) else list(inputs), out, method=method,
        options={**deprecated, **(method_options or {})}, targets=targets, crop=crop, overlays=opacity is not None,
        overwrite=overwrite, maps=maps, overlay_format=overlay_format, input_size=spec.input_size,
    )  # fmt: skip
    return run_dataset(
        plan, model, variables, images_per_batch=images_per_batch, opacity=opacity, limit=limit,
        progress=progress, on_image=on_image, on_error=on_error, host=host, spec=spec,
    )  # fmt: skip
