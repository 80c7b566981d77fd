"""The explorer: a local web page (Gradio) over the same public functions as the CLI.

    gradcam-jax app [--port 7860] [--host 127.0.0.1]          # pip install 'gradcam-jax[app]'

Upload a photo: its top-5 classes and the map of the top-1 class appear; choose the class, the
method, the layer, the score, the ReLU and the opacity and the map follows; compare classes or
methods side by side; download the overlay PNG and the map `.npy`; or stream a webcam through it.

The pure part (`Explorer`: classify, explain, compare, explain one frame) needs no Gradio; the page
(`build_app`) is a thin layer over it. The model and its variables live in the `Explorer`, built
once per app, so every request reuses the compiled functions. Requests run one at a time per model
(a queue shows each waiting page its position). Bad input is a message in the page with the CLI's
`error:` words, and the app serves the next request. It runs offline: no analytics, no share link,
no web fonts; uploads, downloads and Gradio's cache live in one temporary folder removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import jax
import numpy as np

from gradcam_jax._src import choices, outputs, pipeline
from gradcam_jax._src import images as images_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.classify import top_k
from gradcam_jax._src.diagnostics import DegenerateMapWarning, flag_names
from gradcam_jax._src.methods import METHODS
from gradcam_jax._src.methods.transformer import method_names
from gradcam_jax._src.overlay import blend
from gradcam_jax._src.scores import SCORES
from gradcam_jax.video import explain_frames

MAX_COMPARED = 4
# Methods that take many forward passes: the page says they may take a while and offers Cancel.
EXPENSIVE = ("score_cam", "occlusion", "integrated_gradients", "smoothgrad", "gradient_shap", "ablation_cam", "is_cam",
             "feature_ablation", "shapley_sampling", "ss_cam", "lime", "kernel_shap",
             "image_lime")  # fmt: skip
# System fonts only, so the page fetches nothing from the internet.
FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "Consolas", "monospace")


class Panel(NamedTuple):
    """One explained picture: the overlay (uint8 (H, W, 3) at the photo's size), the map
    (float32 (224, 224) in [0, 1]), the class explained, its score, a caption (with a note naming
    the causes and fixes when the map is not informative), and those causes' names (empty: fine)."""

    overlay: np.ndarray
    map: np.ndarray
    target: int
    score: float
    caption: str
    flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Preprocessed:
    """A model that takes photos as RGB 0..255 (B, h, w, 3) float32 batches: `preprocess` turns them
    into what `model` takes. Hashable, so it is a static argument under `jit` like the model; layers
    keep the inner model's paths (taps see through the wrapper)."""

    model: Any
    preprocess: Callable

    def __call__(self, variables, images):
        return taps.call_model(self.model, variables, self.preprocess(images))


class Explorer:
    """What the page does, as plain functions of a photo and the options; no Gradio here.

    model, variables: as for every method (`load_googlenet()`, or any supported model). For a model
    other than GoogLeNet say what it takes and what its classes are: `labels` (one name per output;
    None: ImageNet's 1000), `input_size` (h, w) photos are resized to (None: GoogLeNet's 224 x 224),
    `preprocess` (RGB 0..255 float32 (B, h, w, 3) -> the model's input; None: passed as they are)
    and `layers` (the paths offered; None: every layer). `method_options`: options for the methods
    beyond the page's controls (finer_cam's `alpha`, a `batch_size`), each passed to every method
    that takes it. Errors are `ValueError`s (`ImageError`, `UnknownLayerError` included) whose text
    is the CLI's `error:` line.
    """

    def __init__(
        self,
        model,
        variables,
        *,
        labels: Sequence[str] | None = None,
        input_size: tuple[int, int] | None = None,
        preprocess: Callable | None = None,
        layers: Sequence[str] | None = None,
        method_options: dict | None = None,
    ):
        self.model = model if preprocess is None else Preprocessed(model, preprocess)
        self.variables = variables
        self.spec = pipeline.model_spec(input_size, labels)
        self.input_size, self.labels = self.spec.input_size, self.spec.labels
        probe = np.zeros((1, *self.input_size, 3), np.float32)
        outputs = jax.eval_shape(lambda v, x: taps.apply_logits(self.model, v, x), variables, probe)
        self.num_classes = outputs.shape[-1]
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise ValueError(f"got {len(self.labels)} labels for a model with {self.num_classes} outputs")
        every = taps.layer_shapes(self.model, variables, probe)  # {path: shape}, in call order
        offered = [taps.resolve_layer(self.model, variables, probe, name)[0] for name in layers or ()]
        self.layers = {path: every[path] for path in offered} if layers else every
        default = taps.resolve_layer(self.model, variables, probe, None)[
            0
        ]  # the model's own (GoogLeNet's: inception_5b-output)
        self.default_layer = default if default in self.layers else next(reversed(self.layers))
        self.methods = method_names(METHODS, self.model, variables, probe)  # attention methods where it has some
        self.method_options = dict(method_options or {})
        taken = {name for method in self.methods for name in pipeline.accepted_options(METHODS[method])}
        unknown = sorted(set(self.method_options) - taken)
        if unknown:
            raise ValueError(f"no method takes the option {unknown[0]!r}; their options: {', '.join(sorted(taken))}")

    def label(self, index: int) -> str:
        """The display name of class `index`."""
        return self.spec.label(index)

    def class_index(self, spec: int | str) -> int:
        """A class by index or name (as `--class`), among this model's classes."""
        return self.spec.class_index(spec, self.num_classes)

    def options_for(self, name: str) -> dict:
        """The explorer's `method_options` that method `name` takes."""
        accepted = pipeline.accepted_options(METHODS[name])
        return {k: v for k, v in self.method_options.items() if k in accepted}

    def model_input(self, photo: str | Path) -> np.ndarray:
        """float32 (1, h, w, 3): the photo resized to `input_size` as the CLI resizes it."""
        return images_lib.load_image(photo, self.input_size)[None].astype(np.float32)

    def layer_choices(self) -> list[tuple[str, str]]:
        """(label with the shape, Flax path) of every layer, for a dropdown."""
        return [(f"{path}  {'x'.join(map(str, s.shape[1:]))}", path) for path, s in self.layers.items()]

    def classify(self, photo: str | Path, k: int = 5) -> list[tuple[int, str, float]]:
        """(class index, label, softmax score) of the photo's top-k classes, best first."""
        probs, classes = top_k(self.model, self.variables, self.model_input(photo), min(k, self.num_classes))
        return [(int(c), self.label(int(c)), float(p)) for p, c in zip(np.asarray(probs)[0], np.asarray(classes)[0])]

    def explain(
        self,
        photo: str | Path,
        classes: list[int] | None = None,
        method: str = "grad_cam",
        *,
        layer: str | None = None,
        score: str = "softmax",
        relu: bool = False,
        opacity: float = 0.5,
        **deprecated,
    ) -> list[Panel]:
        """One panel per class in `classes` (one method call, K targets), or the top-1 class if None;
        `layer` None is `default_layer`; `opacity`: the map's in the overlay (old name: alpha)."""
        opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, 0.5)
        no_other_arguments("explain", deprecated)
        fn, options = self.method(method, layer or self.default_layer, score, relu, opacity)
        photo_rgb = images_lib.read_image(photo)
        x = images_lib.resize(photo_rgb, self.input_size)[None].astype(np.float32)
        targets = None if classes is None else np.asarray([classes], np.int32)
        with warnings.catch_warnings():  # a flagged map is named in its panel's caption instead
            warnings.simplefilter("ignore", DegenerateMapWarning)
            result = fn(self.model, self.variables, x, targets, **options)
        maps, scores, chosen = choices.per_class(result, targets)
        flags = choices.class_flags(result, targets)
        original = np.asarray(photo_rgb)
        return [
            Panel(
                blend(original, m, opacity),
                m,
                int(c),
                float(s),
                f"{self.label(int(c))} [{int(c)}] {s:.3f} · {method}" + flag_caption(f),
                tuple(flag_names(f)),
            )
            for m, c, s, f in zip(maps[0], chosen[0], scores[0], flags[0])
        ]

    def method(self, name: str, layer: str, score: str, relu: bool, opacity: float):
        """The method `name` and the options it takes, checked as the CLI checks them."""
        if name not in self.methods:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(self.methods)}")
        choices.check_opacity(opacity, "opacity")
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
        args = argparse.Namespace(layer=layer, score=score, relu=relu)
        options = choices.method_options(METHODS[name], args, self.options_for(name), name)
        # as `cli.check_layer`, against the layers listed once (tracing the model costs ~1 s a request)
        if "layer" in options and not any(path in self.layers for path in taps.candidate_paths(layer)):
            raise taps.UnknownLayerError(layer, self.layers)
        return METHODS[name], options

    def explain_frame(
        self,
        frame: np.ndarray,
        target: int | None = None,
        method: str = "grad_cam",
        *,
        layer: str | None = None,
        score: str = "softmax",
        relu: bool = False,
        opacity: float = 0.5,
        **deprecated,
    ):
        """The live mode's work per webcam frame: uint8 RGB (H, W, 3) in, `ExplainedFrame` out
        (overlay at the frame's size, map at `input_size`, class, score). Checks nothing: the page
        checks the options once when they change, not 10+ times a second."""
        opacity = pipeline.renamed(deprecated, "alpha", "opacity", opacity, 0.5)
        no_other_arguments("explain_frame", deprecated)
        args = argparse.Namespace(layer=layer or self.default_layer, score=score, relu=relu)
        options = choices.method_options(METHODS[method], args, self.options_for(method), method)
        frames = explain_frames(
            [frame], self.model, self.variables, method=method, targets=target, method_options=options,
            frames_per_batch=1, opacity=opacity, input_size=self.input_size,
        )  # fmt: skip
        return next(frames)


def flag_caption(flags) -> str:
    """What a caption adds for a map that is not informative: its causes and fixes ('' when fine)."""
    note = choices.flag_note(flags)
    return f"\n\n⚠ {note}" if note else ""


def no_other_arguments(name: str, given: dict) -> None:
    if given:
        raise TypeError(f"{name}() got an unexpected keyword argument {next(iter(given))!r}")


IMAGENET = pipeline.model_spec()  # what the page names classes by when the model gives no labels


def parse_classes(text: str, class_index: Callable = IMAGENET.class_index) -> list[int]:
    """Class indices from "bull mastiff, 282" (names or indices, comma-separated; as `--class`),
    each read by `class_index` (ImageNet's by default; `Explorer.class_index` for a model's own)."""
    return [class_index(part) for part in text.split(",") if part.strip()]


def save_downloads(folder: Path, panel: Panel, stem: str) -> list[str]:
    """Write the panel's overlay PNG and map .npy into a new folder under `folder`; their paths."""
    out = Path(tempfile.mkdtemp(dir=folder, prefix="download-"))
    name = f"{stem}-{panel.target}"
    return [
        str(outputs.save_png(out / f"{name}.png", panel.overlay)),
        str(outputs.save_npy(out / f"{name}.npy", panel.map)),
    ]


class FrameRate:
    """Frames/s over the last `window` frames of a stream (a value the page keeps per session)."""

    def __init__(self, window: int = 30):
        self.times: list[float] = []
        self.window = window

    def tick(self) -> float:
        self.times = [*self.times[-self.window :], time.perf_counter()]
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


# -- the page (Gradio) --------------------------------------------------------------------------


def require_gradio():
    try:
        import gradio as gr
    except ImportError:
        raise RuntimeError("the app needs Gradio: pip install 'gradcam-jax[app]'") from None
    return gr


def theme():
    gr = require_gradio()
    return gr.themes.Default(font=list(FONTS), font_mono=list(MONO_FONTS))  # pyright: ignore[reportPrivateImportUsage]


class Handlers:
    """What the page's events call: the `Explorer`'s work with the page's inputs, a bad input turned
    into a message in the page (in the CLI's words); downloads are written under `workdir`."""

    def __init__(self, explorer: Explorer, workdir: str | Path):
        self.gr = require_gradio()
        self.explorer, self.workdir = explorer, Path(workdir)
        self.upload_root = Path(self.gr.utils.get_upload_folder())  # pyright: ignore[reportAttributeAccessIssue]
        for name in ("classify", "explain", "compare_classes", "check_live"):
            setattr(self, name, self.checked(getattr(self, name)))

    def checked(self, fn):
        """Run `fn`; a bad input becomes a message in the page, in the CLI's words."""

        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as err:  # ImageError and UnknownLayerError are ValueErrors
                message = str(err)
                for arg in args:  # an upload is named as the user named it, not by its place on the server
                    if isinstance(arg, str) and arg.startswith(str(self.upload_root)):
                        message = message.replace(arg, Path(arg).name)
                raise self.gr.Error(html.escape(f"error: {message}"), print_exception=False) from None

        run.__name__ = fn.__name__
        return run

    def options(self, layer, score, relu, opacity) -> dict[str, Any]:
        return dict(layer=layer or self.explorer.default_layer, score=score, relu=bool(relu), opacity=float(opacity))

    def chosen_class(self, picked, typed):
        typed = (typed or "").strip()
        if typed:
            return self.explorer.class_index(typed)
        return None if picked in (None, "") else int(picked)

    def classify(self, photo):
        if not photo:
            return None, self.gr.update(choices=[], value=None)
        top = self.explorer.classify(photo)
        scores = {f"{name} [{c}]": p for c, name, p in top}
        buttons = [(f"{name} ({p:.3f})", str(c)) for c, name, p in top]
        return scores, self.gr.update(choices=buttons, value=str(top[0][0]))

    # `progress`: Gradio hands a tracker only to a function whose signature shows `gr.Progress()`;
    # `checked`'s wrapper shows none, so it stays None (as before: the page shows Gradio's own timer)
    def explain(self, photo, picked, typed, method, layer, score, relu, opacity, progress=None):
        if not photo:
            return None, "", None
        target = self.chosen_class(picked, typed)
        if method in EXPENSIVE and progress is not None:
            progress(0, desc=f"{method}: many forward passes, this can take a while (Cancel stops waiting)")
        (panel,) = self.explorer.explain(
            photo, None if target is None else [target], method, **self.options(layer, score, relu, opacity)
        )
        return panel.overlay, panel.caption, save_downloads(self.workdir, panel, Path(photo).stem)

    def compare_classes(self, photo, typed, method, layer, score, relu, opacity, progress=None):
        if not photo:
            return []
        explorer = self.explorer
        classes = parse_classes(typed or "", explorer.class_index) or [c for c, _, _ in explorer.classify(photo, 2)]
        if not 2 <= len(classes) <= MAX_COMPARED:
            raise ValueError(f"compare 2 to {MAX_COMPARED} classes; got {len(classes)}")
        if progress is not None:
            progress(0, desc=f"{method}: {len(classes)} classes")
        panels = explorer.explain(photo, classes, method, **self.options(layer, score, relu, opacity))
        return [(p.overlay, p.caption) for p in panels]

    def compare_methods(self, photo, picked, typed, methods, layer, score, relu, opacity):
        """Shows each method's panel as it is done; a Cancel stops before the next method."""
        if not photo:
            yield []
            return
        if not methods:
            raise self.gr.Error("error: choose at least one method to compare", print_exception=False)
        target, panels = self.checked(self.chosen_class)(picked, typed), []
        for method in methods:
            panels += self.checked(self.explorer.explain)(
                photo, None if target is None else [target], method, **self.options(layer, score, relu, opacity)
            )
            yield [(p.overlay, p.caption) for p in panels]

    def check_live(self, typed, method, layer, score, relu, opacity):
        """Check the live options once when they change; the per-frame function trusts them."""
        if (typed or "").strip():
            self.explorer.class_index(typed)
        self.explorer.method(method, layer or self.explorer.default_layer, score, bool(relu), float(opacity))
        return ""

    def live(self, frame, typed, method, layer, score, relu, opacity, rate):
        if frame is None:
            return None, "", rate
        explorer = self.explorer
        try:
            target = explorer.class_index(typed) if (typed or "").strip() else None
            explained = explorer.explain_frame(
                np.asarray(frame, np.uint8)[..., :3], target, method, **self.options(layer, score, relu, opacity)
            )
        except ValueError as err:  # a typo while typing the class: show it, keep streaming
            return None, f"error: {err}", rate
        rate = rate or FrameRate()
        fps = rate.tick()
        text = f"{explorer.label(explained.target)} [{explained.target}] {explained.score:.3f} · {fps:.1f} frames/s"
        if explained.flags:
            text += f"\n\n⚠ map not informative: {', '.join(explained.flags)}"
        return explained.overlay, text, rate


def controls_column(gr, explorer: Explorer, examples: list[list[str]]) -> dict[str, Any]:
    """The left column: the photo, its classes and the method's controls."""
    first, second = explorer.label(0), explorer.label(min(1, explorer.num_classes - 1))
    one_class = "bull mastiff, or 243" if explorer.labels is None else f"{first}, or 0"
    ui: dict[str, Any] = {}
    ui["photo"] = gr.File(label="photo", file_types=["image"], type="filepath", elem_id="photo")
    if examples:
        gr.Examples(examples, inputs=ui["photo"], label="example photos")
    ui["top5"] = gr.Label(num_top_classes=5, label="top-5 classes", elem_id="top5")
    ui["picked"] = gr.Radio(choices=[], label="explain class", elem_id="picked")
    ui["typed"] = gr.Textbox(
        label="or type a class: name or index (as --class)", placeholder=one_class, elem_id="typed"
    )
    ui["method"] = gr.Dropdown(explorer.methods, value="grad_cam", label="method", elem_id="method")
    ui["layer"] = gr.Dropdown(
        explorer.layer_choices(),
        value=explorer.default_layer,
        label="layer (output shape)",
        allow_custom_value=True,
        elem_id="layer",
    )
    with gr.Row():
        ui["score"] = gr.Radio(list(SCORES), value="softmax", label="score", elem_id="score")
        ui["relu"] = gr.Checkbox(False, label="ReLU (the paper's Grad-CAM: logit + ReLU)", elem_id="relu")
    ui["opacity"] = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="opacity")
    ui["two_classes"] = "bull mastiff, tiger cat" if explorer.labels is None else f"{first}, {second}"
    return ui


def results_column(gr, explorer: Explorer, two_classes: str) -> dict[str, Any]:
    """The right column: the Explain, Compare and Live tabs."""
    ui: dict[str, Any] = {}
    with gr.Tab("Explain"):
        ui["shown"] = gr.Image(
            label="map over the photo",
            format="png",
            interactive=False,
            elem_id="overlay",
            buttons=["download", "fullscreen"],
        )
        ui["caption"] = gr.Markdown(elem_id="caption")
        ui["downloads"] = gr.File(
            label="download: overlay PNG and map .npy", file_count="multiple", interactive=False, elem_id="downloads"
        )
        ui["cancel"] = gr.Button("Cancel", variant="stop", size="sm")
    with gr.Tab("Compare"):
        ui["compare_typed"] = gr.Textbox(
            label="classes, 2 to 4, comma-separated (empty: the top 2)",
            placeholder=two_classes,
            elem_id="compare-classes",
        )
        ui["compare_classes"] = gr.Button("Compare classes", elem_id="compare-classes-button")
        ui["compare_picked"] = gr.CheckboxGroup(explorer.methods, value=["grad_cam", "occlusion"], label="methods")
        ui["compare_methods"] = gr.Button("Compare methods", elem_id="compare-methods-button")
        ui["gallery"] = gr.Gallery(label="side by side", columns=MAX_COMPARED, format="png", elem_id="gallery")
    with gr.Tab("Live"):
        with gr.Row():
            ui["camera"] = gr.Image(
                sources=["webcam"],
                streaming=True,
                type="numpy",
                label="camera",
                webcam_options=gr.WebcamOptions(mirror=False),
                elem_id="camera",
            )
            ui["painted"] = gr.Image(label="map over each frame", format="jpeg", elem_id="live", buttons=["fullscreen"])
        ui["live_text"] = gr.Markdown(elem_id="live-text")
        ui["rate"] = gr.State(None)
    return ui


def layout(gr, explorer: Explorer, examples: list[list[str]]) -> SimpleNamespace:
    """The page's components, laid out (inside an open `gr.Blocks`); no events yet."""
    gr.Markdown("## gradcam-jax: why did the network decide that?")
    with gr.Row():
        with gr.Column(scale=1):
            left = controls_column(gr, explorer, examples)
        with gr.Column(scale=2):
            right = results_column(gr, explorer, left.pop("two_classes"))
    return SimpleNamespace(**left, **right)


def wire(ui: SimpleNamespace, handlers: Handlers) -> None:
    """The page's events: what each control triggers, and which of them Cancel stops."""
    controls = [ui.method, ui.layer, ui.score, ui.relu, ui.opacity]
    explain = handlers.explain
    explain_inputs, explain_outputs = [ui.photo, ui.picked, ui.typed, *controls], [ui.shown, ui.caption, ui.downloads]
    new_photo = ui.photo.change(handlers.classify, ui.photo, [ui.top5, ui.picked], api_name="classify").then(
        explain, explain_inputs, explain_outputs, api_name="explain"
    )
    # a class button clears the typed class first, so the click is what gets explained
    events = [
        new_photo,
        ui.picked.input(lambda: "", None, ui.typed, queue=False).then(
            explain,
            explain_inputs,
            explain_outputs,
            api_name=False,  # pyright: ignore[reportArgumentType]
        ),
    ]
    for trigger in (ui.typed.submit, ui.method.change, ui.layer.change, ui.score.change, ui.relu.change):
        events.append(trigger(explain, explain_inputs, explain_outputs, api_name=False))  # pyright: ignore[reportArgumentType]
    events.append(ui.opacity.release(explain, explain_inputs, explain_outputs, api_name=False))  # pyright: ignore[reportArgumentType]
    events.append(
        ui.compare_classes.click(
            handlers.compare_classes, [ui.photo, ui.compare_typed, *controls], ui.gallery, api_name="compare_classes"
        )
    )
    events.append(
        ui.compare_methods.click(
            handlers.compare_methods,
            [ui.photo, ui.picked, ui.typed, ui.compare_picked, *controls[1:]],
            ui.gallery,
            api_name="compare_methods",
        )
    )
    ui.cancel.click(None, None, None, cancels=events)  # pyright: ignore[reportArgumentType]
    wire_live(ui, handlers, controls)


def wire_live(ui: SimpleNamespace, handlers: Handlers, controls: list) -> None:
    """The Live tab: options checked once when they change, then every webcam frame explained."""
    for trigger in (ui.typed.submit, *(c.change for c in controls)):
        trigger(handlers.check_live, [ui.typed, *controls], ui.live_text, api_name=False)  # pyright: ignore[reportArgumentType]
    ui.camera.stream(
        handlers.live,
        [ui.camera, ui.typed, *controls, ui.rate],
        [ui.painted, ui.live_text, ui.rate],
        stream_every=0.05,
        concurrency_id="live",
        concurrency_limit=1,
        api_name="live",
        show_progress="hidden",
    )


def build_app(explorer: Explorer, workdir: str | Path, examples: Sequence[str | Path] | None = None):
    """The page, a `gradio.Blocks`, over `explorer`; downloads are written under `workdir`;
    `examples`: photos offered under the upload (None: none). Launch it with `launch` (offline
    settings, one request at a time)."""
    gr = require_gradio()
    handlers = Handlers(explorer, workdir)
    example_rows = [[str(path)] for path in examples or () if Path(path).is_file()]
    with gr.Blocks(title="gradcam-jax explorer", analytics_enabled=False) as demo:
        wire(layout(gr, explorer, example_rows), handlers)
    return demo


def start(demo, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True):
    """Serve the page `demo` offline, one request at a time per model (others wait in a queue that
    shows their position); `block=False` returns at once (tests). Returns Gradio's (app, url, share url)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # launch() reads only this, whatever the Blocks says
    demo.queue(default_concurrency_limit=1)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        quiet=not block,
        theme=theme(),
        footer_links=[],
        show_error=True,
        mcp_server=False,
        pwa=False,
        ssr_mode=False,
    )


@contextlib.contextmanager
def private_folder() -> Iterator[Path]:
    """A temporary folder for uploads, downloads and Gradio's cache, removed on exit; Gradio reads
    its place from the environment, so it is set here, at the edge, for this process."""
    folder = Path(tempfile.mkdtemp(prefix="gradcam-jax-app-"))
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def serve(
    model, variables, host: str = "127.0.0.1", port: int | None = None, examples=None, **model_options
) -> Iterator[str]:
    """The page over (model, variables), served in the background of this process while the
    context is open (on a free port if `port` is None); yields its URL. `model_options` are
    `Explorer`'s (labels, input_size, preprocess, layers, method_options). For tests and benchmarks."""
    explorer = Explorer(model, variables, **model_options)  # a bad model or labels fail before any serving
    with private_folder() as folder:
        demo = build_app(explorer, folder, examples)
        _, url, _ = start(demo, host, port or free_port(host), block=False)
        try:
            yield url.rstrip("/")
        finally:
            demo.close()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(
    model,
    variables,
    *,
    labels: Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    preprocess: Callable | None = None,
    layers: Sequence[str] | None = None,
    method_options: dict | None = None,
    examples: Sequence[str | Path] | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
) -> int:
    """Serve the explorer over your own model on http://host:port until Ctrl-C (`pip install
    'gradcam-jax[app]'`); `gradcam-jax app` is this over GoogLeNet.

    model, variables: any supported model (linen, NNX split, Equinox partition, Keras, a function).
    labels: one name per output (None: ImageNet's 1000). input_size: (h, w) uploads and webcam frames
    are resized to (None: GoogLeNet's 224 x 224). preprocess: RGB 0..255 float32 (B, h, w, 3) -> the
    model's input (None: as is). layers: the paths offered (None: every layer; the default is
    `default_layer`'s choice). method_options: options for the methods beyond the page's controls
    (`{"alpha": 0.5}` reaches finer_cam's), each passed to every method that takes it. examples:
    photos offered under the upload (None: none; `gradcam-jax app` offers the repository's).
    A wrong label count, an unknown layer or option: one ValueError before anything is served.
    """
    require_gradio()
    explorer = Explorer(
        model, variables, labels=labels, input_size=input_size, preprocess=preprocess, layers=layers,
        method_options=method_options,
    )  # fmt: skip
    with private_folder() as folder:
        demo = build_app(explorer, folder, examples)
        try:
            start(demo, host, port)
        except OSError as err:  # the port is taken, or the address is not this machine's
            raise RuntimeError(f"cannot serve on {host}:{port} ({str(err).split('. ')[0]})") from None
        finally:
            demo.close()
    return 0
