"""The `gradcam-jax` command line: a thin layer over the library (argument checks, files, printing).

    gradcam-jax classify IMG [IMG ...] [--top 5] [--json]
    gradcam-jax explain IMG|DIR [...] [--class NAME|INDEX ...] [--method grad_cam] [--layer L]
                        [--score softmax|logit] [--relu] [--option NAME=VALUE ...] [--opacity 0.5]
                        [--out PATH_OR_DIR] [--save-map PATH.npy]
    gradcam-jax video IN.mp4|--camera N [--out OUT.mp4] [--class NAME|INDEX | --top1] [--method ...]
    gradcam-jax app [--port 7860] [--host 127.0.0.1]    (the explorer in a browser: gradcam_jax.app)

`explain` with a folder is a resumable dataset run (`gradcam_jax.dataset`):
overlays as for images, plus OUT/maps/ and OUT/index.jsonl, sharded over every local device.
Every bad argument is a one-line `error: ...` before any heavy work; an unreadable image is a
one-line `error: <file>: <reason>`, the other images still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gradcam_jax import dataset as dataset_lib
from gradcam_jax import video as video_lib
from gradcam_jax._src import diagnostics, outputs, pipeline
from gradcam_jax._src import images as images_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.choices import check_opacity, class_flags, flag_note, method_options, per_class
from gradcam_jax._src.classify import top_k
from gradcam_jax._src.methods import METHODS
from gradcam_jax._src.methods.transformer import method_names
from gradcam_jax._src.overlay import blend
from gradcam_jax._src.scores import SCORES
from gradcam_jax.models.weights import VARIANTS, load_googlenet

SPEC = pipeline.model_spec()  # the bundled GoogLeNet's: 224 x 224 inputs, ImageNet's classes


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


class Images:
    """The readable images of `paths`, resized for the model, through the shared batching loop
    (`gradcam_jax._src.pipeline`: a short batch padded only to the next bucket, so one photo costs
    one image); unreadable files are reported and skipped."""

    def __init__(self, paths: list[Path], crop: str):
        self.paths, self.crop = paths, crop
        self.failures: list[str] = []

    def load(self, path: Path):
        try:
            original = images_lib.read_image(path)
            return path, original, images_lib.resize(original, SPEC.input_size, self.crop)
        except images_lib.ImageError as err:
            fail(str(err))
            self.failures.append(str(err))
            return None

    def readable(self) -> Iterator[tuple[Path, object, np.ndarray]]:
        """(path, the photo, its model input uint8 (h, w, 3)) per readable image."""
        return (loaded for loaded in map(self.load, self.paths) if loaded is not None)

    def explained(self, explain: Callable, batch_size: int) -> Iterator[tuple[list, Any]]:
        """(chunk, explain(batch float32 (rows, h, w, 3), chunk)) per batch of up to `batch_size`
        images, one batch at a time (so messages come in the order of the files)."""
        bar = tqdm(total=len(self.paths), unit="img", disable=None, file=sys.stderr)
        try:
            for chunk, result in pipeline.explained(
                self.readable(), explain, batch_size, inputs=lambda loaded: loaded[2], ahead=False
            ):
                yield chunk, result
                bar.update(len(chunk))
        finally:
            bar.close()

    def finish(self) -> int:
        if self.failures:
            print(f"{len(self.failures)} image(s) failed:", file=sys.stderr)
            for failure in self.failures:
                print(f"  {failure}", file=sys.stderr)
        return 1 if self.failures else 0


def input_paths(args) -> list[Path]:
    missing = [item for item in args.images if not Path(item).exists()]
    if missing:
        raise ValueError(f"{missing[0]}: no such file or folder")
    paths = images_lib.expand_paths(args.images)
    if not paths:
        raise ValueError("no images found in the given paths")
    return paths


def model_and_variables(args):
    return load_googlenet(args.weights, variant=args.variant)


def run_classify(args) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1; got {args.top}")
    paths = input_paths(args)
    model, variables = model_and_variables(args)
    images = Images(paths, args.crop)
    for chunk, (probs, indices) in images.explained(lambda x, _: top_k(model, variables, x, args.top), args.batch):
        for (path, _, _), p_row, i_row in zip(chunk, np.asarray(probs), np.asarray(indices)):
            top = [
                {"index": int(i), "label": SPEC.label(int(i)), "score": round(float(p), 6)}
                for p, i in zip(p_row, i_row)
            ]
            if args.json:
                print(json.dumps({"image": str(path), "top": top}), flush=True)
            else:
                print(f"{path}: " + ", ".join(f"{t['label']} ({t['score']:.3f})" for t in top), flush=True)
    return images.finish()


def output_plan(args, paths: list[Path], classes: list[int]):
    """{(image, class or None): (png path, npy path or None)}, named as documented in --help."""
    keys = [(p, c) for p in paths for c in (classes or [None])]
    single = len(keys) == 1
    out = Path(args.out)
    plan = {}
    for path, cls in keys:
        suffix = "" if cls is None else f"-{cls}"
        png = out if single and out.suffix.lower() == ".png" else out / f"{path.stem}{suffix}.png"
        npy = None
        if args.save_map:
            npy = Path(args.save_map)
            if not single:
                npy = npy.with_name(f"{npy.stem}-{path.stem}{suffix}.npy")
        plan[path, cls] = (png, npy)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("several input images share a file name; explain them in separate runs or folders")
    return plan


def check_layer(model, variables, options: dict) -> None:
    if options.get("layer") is not None:  # fail on a bad layer now, not after loading every image
        taps.resolve_layer(model, variables, np.zeros((1, *SPEC.input_size, 3), np.float32), options["layer"])


def chosen_options(args) -> dict:
    """The method's options: --layer, --score, --relu where it takes them, and every --option
    (a one-line error for one it does not take). Checked before any heavy work."""
    check_opacity(args.opacity)
    return method_options(METHODS[args.method], args, dict(args.method_options or []), args.method)


def run_explain(args) -> int:
    classes = [SPEC.class_index(c) for c in args.classes or []]
    options = chosen_options(args)
    if any(Path(p).is_dir() for p in args.images):
        if args.save_map:
            raise ValueError("--save-map is for image files; a folder run saves every map under OUT/maps/")
        return run_explain_dataset(args, options, classes)
    paths = input_paths(args)
    plan = output_plan(args, paths, classes)
    outputs.check_outputs([f for pair in plan.values() for f in pair if f is not None], paths, args.overwrite)
    model, variables = model_and_variables(args)
    check_layer(model, variables, options)
    method = METHODS[args.method]

    def explain(x, _):
        return method(
            model, variables, x, None if not classes else np.tile(np.asarray(classes, np.int32), (len(x), 1)), **options
        )

    images = Images(paths, args.crop)
    for chunk, result in images.explained(explain, args.batch):
        maps, scores, chosen = per_class(result, classes or None)
        flags = class_flags(result, classes or None)
        for b, (path, original, resized) in enumerate(chunk):
            backdrop = np.asarray(original) if args.crop == "none" else resized
            for k, cls in enumerate(classes or [None]):
                png, npy = plan[path, cls]
                outputs.save_png(png, blend(backdrop, maps[b, k], args.opacity))
                if npy is not None:
                    outputs.save_npy(npy, maps[b, k].astype(np.float32))
                c = int(chosen[b, k])
                print(f"{path}: {SPEC.label(c)} [{c}] ({scores[b, k]:.3f}) -> {png}", flush=True)
                warn_flagged(path, c, flags[b, k])
    return images.finish()


def warn_flagged(image, c: int, flags) -> None:
    """One line on stderr for a map that is not informative (`Explanation.flags`): why, and the fix."""
    note = flag_note(flags, cli=True)
    if note:
        print(f"warning: {image}: class {c} ({SPEC.label(c)}): {note}", file=sys.stderr, flush=True)


def run_explain_dataset(args, options: dict, classes: list[int]) -> int:
    """`explain` over folders: overlays named as for images (OUT/<path in folder>[-<class>].png), plus
    OUT/maps/ and OUT/index.jsonl written per batch; a rerun skips what is finished."""
    plan = dataset_lib.plan_dataset(
        args.images, args.out, method=args.method, options=options, targets=classes or None, crop=args.crop,
        overlays=True, overwrite=args.overwrite, maps=args.maps, overlay_format=args.overlay_format,
        input_size=SPEC.input_size,
    )  # fmt: skip
    outputs.check_outputs([plan.out / dataset_lib.SETTINGS], [], overwrite=True)  # a folder we can write to
    model, variables = model_and_variables(args)
    check_layer(model, variables, options)
    if plan.finished:
        print(f"resuming in {plan.out}: {plan.finished} image(s) already done, {len(plan.todo)} to go", file=sys.stderr)

    def report(record):
        c, png = record["class"], plan.out / record["overlay"]
        print(f"{record['image']}: {record['label']} [{c}] ({record['score']:.3f}) -> {png}", flush=True)
        warn_flagged(record["image"], c, flag_bits(record.get("flags", [])))

    with dataset_lib.host_processes(args.processes) if args.processes else contextlib.nullcontext() as host:
        summary = dataset_lib.run_dataset(
            plan, model, variables, images_per_batch=args.batch, opacity=args.opacity, progress=True,
            on_image=report, on_error=fail, host=host, spec=SPEC,
        )  # fmt: skip
    hosts = f" x {summary.processes} processes" if summary.processes > 1 else ""
    print(
        f"{summary.explained} image(s) explained on {summary.devices} device(s){hosts} -> {summary.index}",
        file=sys.stderr,
    )
    if summary.failed:
        print(f"{len(summary.failed)} image(s) failed:", file=sys.stderr)
        for failure in summary.failed:
            print(f"  {failure}", file=sys.stderr)
    return 1 if summary.failed else 0


@contextlib.contextmanager
def stop_on_interrupt(stop: threading.Event):
    """The first Ctrl-C sets `stop` (a camera recording ends and is saved); a second one aborts."""

    def handle(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping: finishing the video (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_video(args) -> int:
    if (args.video is None) == (args.camera is None):
        raise ValueError("give one video file, or --camera N")
    target = None if args.target is None else SPEC.class_index(args.target)
    options = chosen_options(args)
    camera = args.camera is not None
    name = f"camera {args.camera}" if camera else args.video
    default = f"camera-{args.camera}.mp4" if camera else f"{Path(args.video).stem}.mp4"
    out = Path(args.out) if args.out else Path("gradcam-out") / default
    video_lib.check_video_path(out)
    outputs.check_outputs([out], [] if camera else [Path(args.video)], args.overwrite)
    stop = threading.Event()
    source = video_lib.read_camera(args.camera, stop) if camera else video_lib.read_video(args.video)
    model, variables = model_and_variables(args)
    check_layer(model, variables, options)
    with stop_on_interrupt(stop) if camera else contextlib.nullcontext():
        stats = video_lib.explain_video(
            source, out, model, variables, method=args.method, targets=target, method_options=options,
            frames_per_batch=args.batch, opacity=args.opacity, input_size=SPEC.input_size, max_frames=args.frames,
            progress=True,
        )  # fmt: skip
    print(f"{name}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} frames/s) -> {out}", flush=True)
    if stats.flagged:
        print(
            f"warning: {name}: {stats.flagged} of {stats.frames} frames' maps are not informative; "
            "try --score logit or another --layer",
            file=sys.stderr,
        )
    return 0


class OldName(argparse.Action):
    """An option that also answers to an old name (`--alpha` for `--opacity`), which warns on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string != self.option_strings[0]:
            print(
                f"warning: {option_string} is now {self.option_strings[0]}; {option_string} goes in the next release",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)


def parse_option(text: str) -> tuple[str, object]:
    """`name=value` -> (name, value): the value read as a Python literal (`0.5`, `True`, `(2, 2)`),
    else kept as the string it is (`fill=mean`)."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name.strip(), value


def option_arguments(p) -> None:
    p.add_argument(
        "--option",
        dest="method_options",
        action="append",
        type=parse_option,
        metavar="NAME=VALUE",
        help="an option of the method, passed as is (repeatable; VALUE a Python literal, else a string): "
        "--option alpha=0.5 for finer_cam, --option batch_size=4, --option fill=mean",
    )


def method_arguments(p) -> None:
    p.add_argument("--method", choices=method_names(METHODS), default="grad_cam")  # GoogLeNet: no attention
    p.add_argument(
        "--layer", default=None, help="layer name or Flax path (default: the model's own, inception_5b-output)"
    )
    # None: not given, so each method keeps its paper's default (Score-CAM's ReLU, IG's logit, ...)
    p.add_argument(
        "--score", choices=SCORES, default=None, help="softmax (MATLAB) or logit (the paper); default: the method's"
    )
    p.add_argument(
        "--relu", action="store_true", default=None, help="ReLU the map before rescaling (the paper's Grad-CAM)"
    )
    option_arguments(p)
    p.add_argument(
        "--opacity",
        "--alpha",
        type=float,
        default=0.5,
        action=OldName,
        help="opacity of the map in the overlay, 0..1 (--alpha: its old name)",
    )


def model_arguments(p) -> None:
    p.add_argument(
        "--weights", type=Path, default=None, help="a converted weights file (default: the bundled BVLC weights)"
    )
    p.add_argument("--variant", choices=list(VARIANTS), default="bvlc", help="which GoogLeNet the weights are for")


def image_arguments(p) -> None:
    p.add_argument("images", nargs="+", help="image files, or folders of images")
    p.add_argument(
        "--crop",
        choices=images_lib.CROPS,
        default="none",
        help="none: resize as MATLAB (aspect not kept); center: keep aspect",
    )
    p.add_argument("--batch", type=positive_int, default=16, help="images per batch (default 16)")
    model_arguments(p)


def classify_command(commands) -> None:
    c = commands.add_parser("classify", help="top-k ImageNet classes with softmax scores")
    image_arguments(c)
    c.add_argument("--top", type=int, default=5)
    c.add_argument("--json", action="store_true", help="one JSON object per line per image")
    c.set_defaults(run=run_classify)


EXPLAIN_DESCRIPTION = (
    "Writes OUT/<image stem>.png (top-1 class) or OUT/<image stem>-<class index>.png per --class; "
    "with one image and one class, --out may name the .png itself. --save-map PATH.npy writes the (224, 224) "
    "float32 map; with several images or classes, one file each: PATH-<image stem>[-<class index>].npy. "
    "A folder is a resumable dataset run, sharded over every local device: "
    "OUT/<path in folder>[-<class index>].png, the maps (--maps shards: one 8-bit PNG per batch, read "
    "with gradcam_jax.dataset.load_maps; --maps npy: OUT/maps/<path in folder>[-<class index>].npy) and "
    "OUT/index.jsonl (image, class, label, score, flags, map, overlay), written batch by batch; "
    "a rerun skips the images already done."
)


def explain_command(commands) -> None:
    e = commands.add_parser(
        "explain", help="explain classes with a heat map over each image", description=EXPLAIN_DESCRIPTION
    )
    image_arguments(e)
    e.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="NAME|INDEX",
        help="class to explain (repeatable; default: top-1)",
    )
    method_arguments(e)
    e.add_argument("--out", default="gradcam-out", help="output folder, or a .png for one image and class")
    e.add_argument("--save-map", metavar="PATH.npy", default=None, help="also save the raw map(s) as .npy")
    e.add_argument("--overwrite", action="store_true", help="replace existing output files")
    e.add_argument(
        "--maps",
        choices=dataset_lib.MAP_LAYOUTS,
        default="shards",
        help="folder runs: maps in per-batch 8-bit shards (default) or one float32 .npy each",
    )
    e.add_argument(
        "--overlay-format",
        choices=dataset_lib.OVERLAY_FORMATS,
        default="png",
        help="folder runs: overlays as PNG (default) or JPEG (quality 90; a tenth of the PNG's encoding time)",
    )
    e.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="folder runs: decode, draw and write in N processes instead of a thread per core "
        "(for many-core GPU hosts: threads stop scaling at about 4)",
    )
    e.set_defaults(run=run_explain)


def video_command(commands) -> None:
    v = commands.add_parser(
        "video",
        help="explain every frame of a video or webcam, written as a video",
        description="Writes OUT (default gradcam-out/<video stem>.mp4, or camera-<N>.mp4) with each frame's "
        "map drawn over it at the frame's own size, at the input's frame rate, one frame per input frame. "
        "Frames are resized to 224x224 for the model (aspect not kept, as MATLAB does); decoding, compute "
        "and encoding overlap. A camera records until Ctrl-C (or --frames).",
    )
    v.add_argument("video", nargs="?", help="input video file (anything ffmpeg reads)")
    v.add_argument("--camera", type=int, metavar="N", help="read webcam N through OpenCV instead of a file")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--class", dest="target", metavar="NAME|INDEX", help="class to explain in every frame")
    which.add_argument("--top1", action="store_true", help="each frame's own top-1 class (the default)")
    method_arguments(v)
    v.add_argument("--batch", type=positive_int, default=8, help="frames per batch (default 8)")
    v.add_argument("--frames", type=positive_int, default=None, metavar="N", help="stop after N frames")
    v.add_argument("--out", default=None, help=f"output video ({', '.join(video_lib.VIDEO_SUFFIXES)})")
    v.add_argument("--overwrite", action="store_true", help="replace an existing output video")
    model_arguments(v)
    v.set_defaults(run=run_video)


def app_command(commands) -> None:
    a = commands.add_parser(
        "app",
        help="a local web page to explore explanations, with a live webcam mode",
        description="Serves the explorer (pip install 'gradcam-jax[app]') until Ctrl-C; offline.",
    )
    a.add_argument("--port", type=positive_int, default=7860)
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    option_arguments(a)
    model_arguments(a)
    a.set_defaults(run=run_app)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gradcam-jax", description="Why did the network decide that? Grad-CAM for Flax, on GoogLeNet.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (classify_command, explain_command, video_command, app_command):
        command(commands)
    return parser


# The photos the explorer offers under its upload, where the source tree has them.
EXAMPLE_PHOTOS = [
    Path(__file__).resolve().parent.parent / "docs" / "images" / name for name in ("cat_dog.jpg", "cat.png")
]


def run_app(args) -> int:
    from gradcam_jax import app

    app.require_gradio()
    options = dict(args.method_options or [])
    examples = [path for path in EXAMPLE_PHOTOS if path.is_file()]
    return app.launch(
        *model_and_variables(args), examples=examples, method_options=options, host=args.host, port=args.port
    )


def flag_bits(names: list[str]) -> int:
    """The flag value of a record's flag names (`dataset` index records)."""
    return sum(bit for bit, (name, _) in diagnostics.FLAGS.items() if name in names)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # a flagged map gets the CLI's own line (`warn_flagged`)
            warnings.simplefilter("ignore", diagnostics.DegenerateMapWarning)
            return args.run(args)
    except (ValueError, RuntimeError, OSError, images_lib.ImageError) as err:  # OSError: a full disk, say
        fail(str(err))
        return 2
    except KeyboardInterrupt:
        fail("interrupted; files already written are complete, nothing is half-written")
        return 130


if __name__ == "__main__":
    sys.exit(main())
