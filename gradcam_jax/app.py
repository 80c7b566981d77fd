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
import html
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gradcam_jax import choices, labels, outputs
from gradcam_jax import images as images_lib
from gradcam_jax.adapters import taps
from gradcam_jax.classify import top_k
from gradcam_jax.googlenet import INPUT_SIZE
from gradcam_jax.methods import DEFAULT_LAYER, METHODS
from gradcam_jax.overlay import overlay
from gradcam_jax.scores import SCORES
from gradcam_jax.video import explain_frames

EXAMPLES = ("cat_dog.jpg", "cat.png")  # the bundled photos, in docs/images/
MAX_COMPARED = 4
# Methods that take many forward passes: the page says they may take a while and offers Cancel.
EXPENSIVE = ("score_cam", "occlusion", "integrated_gradients", "smoothgrad", "gradient_shap", "ablation_cam", "is_cam")
# System fonts only, so the page fetches nothing from the internet.
FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "Consolas", "monospace")


class Panel(NamedTuple):
    """One explained picture: the overlay (uint8 (H, W, 3) at the photo's size), the map
    (float32 (224, 224) in [0, 1]), the class explained, its score, and a caption."""

    overlay: np.ndarray
    map: np.ndarray
    target: int
    score: float
    caption: str


class Explorer:
    """What the page does, as plain functions of a photo and the options; no Gradio here.

    model, variables: as for every method (`load_googlenet()`). Errors are `ValueError`s
    (`ImageError`, `UnknownLayerError` included) whose text is the CLI's `error:` line.
    """

    def __init__(self, model, variables):
        self.model, self.variables = model, variables
        probe = np.zeros((1, *INPUT_SIZE, 3), np.float32)
        self.layers = taps.layer_shapes(model, variables, probe)  # {Flax path: shape}, in call order
        self.default_layer = taps.resolve_layer(model, variables, probe, DEFAULT_LAYER)[0]

    def layer_choices(self) -> list[tuple[str, str]]:
        """(label with the shape, Flax path) of every layer, for a dropdown."""
        return [(f"{path}  {'x'.join(map(str, s.shape[1:]))}", path) for path, s in self.layers.items()]

    def classify(self, photo: str | Path, k: int = 5) -> list[tuple[int, str, float]]:
        """(class index, label, softmax score) of the photo's top-k classes, best first."""
        probs, classes = top_k(self.model, self.variables, model_input(photo), k)
        return [(int(c), labels.label(int(c)), float(p)) for p, c in zip(np.asarray(probs)[0], np.asarray(classes)[0])]

    def explain(
        self,
        photo: str | Path,
        classes: list[int] | None = None,
        method: str = "grad_cam",
        *,
        layer: str = DEFAULT_LAYER,
        score: str = "softmax",
        relu: bool = False,
        alpha: float = 0.5,
    ) -> list[Panel]:
        """One panel per class in `classes` (one method call, K targets), or the top-1 class if None."""
        fn, options = self.method(method, layer, score, relu, alpha)
        photo_rgb = images_lib.read_image(photo)
        x = images_lib.resize(photo_rgb)[None].astype(np.float32)
        targets = None if classes is None else np.asarray([classes], np.int32)
        maps, scores, chosen = choices.per_class(fn(self.model, self.variables, x, targets, **options), targets)
        original = np.asarray(photo_rgb)
        return [
            Panel(
                overlay(original, m, alpha),
                m,
                int(c),
                float(s),
                f"{labels.label(int(c))} [{int(c)}] {s:.3f} · {method}",
            )
            for m, c, s in zip(maps[0], chosen[0], scores[0])
        ]

    def method(self, name: str, layer: str, score: str, relu: bool, alpha: float):
        """The method `name` and the options it takes, checked as the CLI checks them."""
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
        args = argparse.Namespace(layer=layer, score=score, relu=relu, alpha=alpha)
        choices.check_alpha(args)
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
        options = choices.method_options(METHODS[name], args)
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
        layer: str = DEFAULT_LAYER,
        score: str = "softmax",
        relu: bool = False,
        alpha: float = 0.5,
    ):
        """The live mode's work per webcam frame: uint8 RGB (H, W, 3) in, `ExplainedFrame` out
        (overlay at the frame's size, map (224, 224), class, score). Checks nothing: the page
        checks the options once when they change, not 10+ times a second."""
        options = choices.method_options(METHODS[method], argparse.Namespace(layer=layer, score=score, relu=relu))
        return next(
            explain_frames(
                [frame], self.model, self.variables, method=method, target=target, batch_size=1, alpha=alpha, **options
            )
        )


def model_input(photo: str | Path) -> np.ndarray:
    """float32 (1, 224, 224, 3): the photo resized as the CLI resizes it."""
    return images_lib.load_image(photo)[None].astype(np.float32)


def parse_classes(text: str) -> list[int]:
    """Class indices from "bull mastiff, 282" (names or indices, comma-separated; as `--class`)."""
    return [labels.class_index(part) for part in text.split(",") if part.strip()]


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


def build_app(explorer: Explorer, workdir: str | Path, examples_dir: str | Path | None = None):
    """The page, a `gradio.Blocks`, over `explorer`; downloads are written under `workdir`.
    Launch it with `launch` (offline settings, one request at a time)."""
    gr = require_gradio()
    workdir = Path(workdir)
    examples_dir = Path(examples_dir) if examples_dir else Path(__file__).resolve().parent.parent / "docs" / "images"
    upload_root = Path(gr.utils.get_upload_folder())  # pyright: ignore[reportAttributeAccessIssue]
    examples = [[str(examples_dir / name)] for name in EXAMPLES if (examples_dir / name).is_file()]

    def checked(fn):
        """Run `fn`; a bad input becomes a message in the page, in the CLI's words."""

        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as err:  # ImageError and UnknownLayerError are ValueErrors
                message = str(err)
                for arg in args:  # an upload is named as the user named it, not by its place on the server
                    if isinstance(arg, str) and arg.startswith(str(upload_root)):
                        message = message.replace(arg, Path(arg).name)
                raise gr.Error(html.escape(f"error: {message}"), print_exception=False) from None

        run.__name__ = fn.__name__
        return run

    def options(layer, score, relu, alpha) -> dict[str, Any]:
        return dict(layer=layer or DEFAULT_LAYER, score=score, relu=bool(relu), alpha=float(alpha))

    def chosen_class(picked, typed):
        typed = (typed or "").strip()
        if typed:
            return labels.class_index(typed)
        return None if picked in (None, "") else int(picked)

    @checked
    def classify(photo):
        if not photo:
            return None, gr.update(choices=[], value=None)
        top = explorer.classify(photo)
        scores = {f"{name} [{c}]": p for c, name, p in top}
        buttons = [(f"{name} ({p:.3f})", str(c)) for c, name, p in top]
        return scores, gr.update(choices=buttons, value=str(top[0][0]))

    @checked
    def explain(photo, picked, typed, method, layer, score, relu, alpha, progress=gr.Progress()):  # noqa: B008  (Gradio's idiom)
        if not photo:
            return None, "", None
        target = chosen_class(picked, typed)
        if method in EXPENSIVE:
            progress(0, desc=f"{method}: many forward passes, this can take a while (Cancel stops waiting)")
        (panel,) = explorer.explain(
            photo, None if target is None else [target], method, **options(layer, score, relu, alpha)
        )
        return panel.overlay, panel.caption, save_downloads(workdir, panel, Path(photo).stem)

    @checked
    def compare_classes(photo, typed, method, layer, score, relu, alpha, progress=gr.Progress()):  # noqa: B008  (Gradio's idiom)
        if not photo:
            return []
        classes = parse_classes(typed or "") or [c for c, _, _ in explorer.classify(photo, 2)]
        if not 2 <= len(classes) <= MAX_COMPARED:
            raise ValueError(f"compare 2 to {MAX_COMPARED} classes; got {len(classes)}")
        progress(0, desc=f"{method}: {len(classes)} classes")
        panels = explorer.explain(photo, classes, method, **options(layer, score, relu, alpha))
        return [(p.overlay, p.caption) for p in panels]

    def compare_methods(photo, picked, typed, methods, layer, score, relu, alpha):
        """Shows each method's panel as it is done; a Cancel stops before the next method."""
        if not photo:
            yield []
            return
        if not methods:
            raise gr.Error("error: choose at least one method to compare", print_exception=False)
        target, panels = checked(chosen_class)(picked, typed), []
        for method in methods:
            panels += checked(explorer.explain)(
                photo, None if target is None else [target], method, **options(layer, score, relu, alpha)
            )
            yield [(p.overlay, p.caption) for p in panels]

    @checked
    def check_live(typed, method, layer, score, relu, alpha):
        """Check the live options once when they change; the per-frame function trusts them."""
        if (typed or "").strip():
            labels.class_index(typed)
        explorer.method(method, layer or DEFAULT_LAYER, score, bool(relu), float(alpha))
        return ""

    def live(frame, typed, method, layer, score, relu, alpha, rate):
        if frame is None:
            return None, "", rate
        try:
            target = labels.class_index(typed) if (typed or "").strip() else None
            explained = explorer.explain_frame(
                np.asarray(frame, np.uint8)[..., :3], target, method, **options(layer, score, relu, alpha)
            )
        except ValueError as err:  # a typo while typing the class: show it, keep streaming
            return None, f"error: {err}", rate
        rate = rate or FrameRate()
        fps = rate.tick()
        text = f"{labels.label(explained.target)} [{explained.target}] {explained.score:.3f} · {fps:.1f} frames/s"
        return explained.overlay, text, rate

    with gr.Blocks(title="gradcam-jax explorer", analytics_enabled=False) as demo:
        gr.Markdown("## gradcam-jax: why did the network decide that?")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label="photo", file_types=["image"], type="filepath", elem_id="photo")
                if examples:
                    gr.Examples(examples, inputs=photo, label="bundled photos")
                top5 = gr.Label(num_top_classes=5, label="top-5 classes", elem_id="top5")
                picked = gr.Radio(choices=[], label="explain class", elem_id="picked")
                typed = gr.Textbox(
                    label="or type a class: name or index (as --class)",
                    placeholder="bull mastiff, or 243",
                    elem_id="typed",
                )
                method = gr.Dropdown(sorted(METHODS), value="grad_cam", label="method", elem_id="method")
                layer = gr.Dropdown(
                    explorer.layer_choices(),
                    value=explorer.default_layer,
                    label="layer (output shape)",
                    allow_custom_value=True,
                    elem_id="layer",
                )
                with gr.Row():
                    score = gr.Radio(list(SCORES), value="softmax", label="score", elem_id="score")
                    relu = gr.Checkbox(False, label="ReLU (the paper's Grad-CAM: logit + ReLU)", elem_id="relu")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="opacity")
            with gr.Column(scale=2):
                with gr.Tab("Explain"):
                    shown = gr.Image(
                        label="map over the photo",
                        format="png",
                        interactive=False,
                        elem_id="overlay",
                        buttons=["download", "fullscreen"],
                    )
                    caption = gr.Markdown(elem_id="caption")
                    downloads = gr.File(
                        label="download: overlay PNG and map .npy",
                        file_count="multiple",
                        interactive=False,
                        elem_id="downloads",
                    )
                    cancel = gr.Button("Cancel", variant="stop", size="sm")
                with gr.Tab("Compare"):
                    compare_typed = gr.Textbox(
                        label="classes, 2 to 4, comma-separated (empty: the top 2)",
                        placeholder="bull mastiff, tiger cat",
                        elem_id="compare-classes",
                    )
                    compare_classes_button = gr.Button("Compare classes", elem_id="compare-classes-button")
                    compare_picked = gr.CheckboxGroup(sorted(METHODS), value=["grad_cam", "occlusion"], label="methods")
                    compare_methods_button = gr.Button("Compare methods", elem_id="compare-methods-button")
                    gallery = gr.Gallery(label="side by side", columns=MAX_COMPARED, format="png", elem_id="gallery")
                with gr.Tab("Live"):
                    with gr.Row():
                        camera = gr.Image(
                            sources=["webcam"],
                            streaming=True,
                            type="numpy",
                            label="camera",
                            webcam_options=gr.WebcamOptions(mirror=False),
                            elem_id="camera",
                        )
                        painted = gr.Image(
                            label="map over each frame", format="jpeg", elem_id="live", buttons=["fullscreen"]
                        )
                    live_text = gr.Markdown(elem_id="live-text")
                    rate = gr.State(None)

        controls = [method, layer, score, relu, alpha]
        explain_inputs = [photo, picked, typed, *controls]
        explain_outputs = [shown, caption, downloads]
        new_photo = photo.change(classify, photo, [top5, picked], api_name="classify").then(
            explain, explain_inputs, explain_outputs, api_name="explain"
        )
        # a class button clears the typed class first, so the click is what gets explained
        events = [
            new_photo,
            picked.input(lambda: "", None, typed, queue=False).then(
                explain,
                explain_inputs,
                explain_outputs,
                api_name=False,  # pyright: ignore[reportArgumentType]
            ),
        ]
        for trigger in (typed.submit, method.change, layer.change, score.change, relu.change, alpha.release):
            events.append(trigger(explain, explain_inputs, explain_outputs, api_name=False))  # pyright: ignore[reportArgumentType]
        events.append(
            compare_classes_button.click(
                compare_classes, [photo, compare_typed, *controls], gallery, api_name="compare_classes"
            )
        )
        events.append(
            compare_methods_button.click(
                compare_methods,
                [photo, picked, typed, compare_picked, *controls[1:]],
                gallery,
                api_name="compare_methods",
            )
        )
        cancel.click(None, None, None, cancels=events)  # pyright: ignore[reportArgumentType]
        for trigger in (typed.submit, *(c.change for c in controls)):
            trigger(check_live, [typed, *controls], live_text, api_name=False)  # pyright: ignore[reportArgumentType]
        camera.stream(
            live,
            [camera, typed, *controls, rate],
            [painted, live_text, rate],
            stream_every=0.05,
            concurrency_id="live",
            concurrency_limit=1,
            api_name="live",
            show_progress="hidden",
        )
    return demo


def launch(demo, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True):
    """Serve `demo` offline, one request at a time per model (others wait in a queue that shows
    their position); `block=False` returns at once (tests). Returns Gradio's (app, url, share url)."""
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
def serve(model, variables, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """The app over (model, variables), served in the background of this process while the
    context is open (on a free port if `port` is None); yields its URL. For tests and benchmarks."""
    with private_folder() as folder:
        demo = build_app(Explorer(model, variables), folder)
        _, url, _ = launch(demo, host, port or free_port(host), block=False)
        try:
            yield url.rstrip("/")
        finally:
            demo.close()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_until_stopped(model, variables, host: str = "127.0.0.1", port: int = 7860) -> int:
    """`gradcam-jax app`: build the page over `model` and serve it on host:port until Ctrl-C."""
    require_gradio()
    with private_folder() as folder:
        demo = build_app(Explorer(model, variables), folder)
        try:
            launch(demo, host, port)
        except OSError as err:  # the port is taken, or the address is not this machine's
            raise RuntimeError(f"cannot serve on {host}:{port} ({str(err).split('. ')[0]})") from None
        finally:
            demo.close()
    return 0
