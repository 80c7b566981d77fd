"""The explorer over your own model (`gradcam_jax.app.launch`): the toy shape classifier trained here,
its classes named, its photos grey 32x32, served on a free local port and used in Debian's headless
Chromium as a person would; and the one-line errors before anything is served."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax._src import images as images_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax.toys import classifier as toy

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")
from gradcam_jax import app
from tests.test_app_browser import CHROMIUM, browser, shown_image  # noqa: E402, F401  (browser: a fixture)

TOY_SIZE = (toy.IMAGE_SIZE, toy.IMAGE_SIZE)


def grey_unit(images):
    """The toy's input from RGB 0..255 photos: one grey channel in [0, 1]."""
    return images.mean(axis=-1, keepdims=True) / 255.0


@pytest.fixture(scope="module")
def scene_photo(tmp_path_factory) -> tuple[str, int]:
    """A held-out toy scene saved as a 128x128 RGB PNG (what a user uploads), and its true class."""
    batch = toy.make_batch(jax.random.key(7), 1)
    grey = np.clip(np.asarray(batch.images[0, ..., 0]), 0.0, 1.0)
    picture = Image.fromarray((grey * 255).round().astype(np.uint8)).convert("RGB").resize((128, 128), Image.NEAREST)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    picture.save(path)
    return str(path), int(batch.labels[0])


def test_launch_refuses_labels_that_do_not_match_the_outputs(toy_classifier):
    model, variables, _ = toy_classifier
    with pytest.raises(ValueError, match="got 2 labels for a model with 3 outputs"):
        app.Explorer(model, variables, labels=toy.SHAPES[:2], input_size=TOY_SIZE, preprocess=grey_unit)


def test_launch_refuses_an_unknown_layer(toy_classifier):
    model, variables, _ = toy_classifier
    with pytest.raises(taps.UnknownLayerError, match="block9"):
        app.Explorer(model, variables, labels=toy.SHAPES, input_size=TOY_SIZE, preprocess=grey_unit, layers=["block9"])


def test_explorer_names_the_models_own_classes_and_explains_at_its_size(toy_classifier, scene_photo):
    model, variables, _ = toy_classifier
    explorer = app.Explorer(model, variables, labels=toy.SHAPES, input_size=TOY_SIZE, preprocess=grey_unit)
    photo, label = scene_photo
    top = explorer.classify(photo)
    assert [name for _, name, _ in top] == [toy.SHAPES[c] for c, _, _ in top] and len(top) == 3
    assert top[0][0] == label  # the toy is 97% accurate on held-out scenes; this one is right
    assert explorer.class_index(toy.SHAPES[2].upper()) == 2
    with pytest.raises(ValueError, match="unknown class 'triangle'"):
        explorer.class_index("triangle")
    (panel,) = explorer.explain(photo, [label])
    assert panel.map.shape == TOY_SIZE and panel.overlay.shape == (128, 128, 3)
    assert panel.caption.startswith(f"{toy.SHAPES[label]} [{label}]")


@pytest.fixture(scope="module")
def toy_url(toy_classifier):
    model, variables, _ = toy_classifier
    with app.serve(model, variables, labels=toy.SHAPES, input_size=TOY_SIZE, preprocess=grey_unit) as url:
        yield url


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: apt-get install chromium (.ci/run does)")
def test_the_page_serves_your_model_with_its_class_names(browser, toy_url, toy_classifier, scene_photo):  # noqa: F811
    model, variables, _ = toy_classifier
    photo, label = scene_photo
    other = (label + 1) % len(toy.SHAPES)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(toy_url)
    page.set_input_files("#photo input[type=file]", photo)
    page.wait_for_selector(f"#picked label:has-text('{toy.SHAPES[label]}')", timeout=120_000)
    page.wait_for_function(
        f"document.querySelector('#caption').innerText.startsWith('{toy.SHAPES[label]} [{label}]')", timeout=120_000
    )
    page.locator("#picked label", has_text=toy.SHAPES[other]).click()
    page.wait_for_function(
        f"document.querySelector('#caption').innerText.startsWith('{toy.SHAPES[other]} [{other}]')", timeout=120_000
    )
    # the same map as the Python API's on the model's own input (the toy's default layer, softmax score)
    x = grey_unit(images_lib.load_image(photo, TOY_SIZE)[None].astype(np.float32))
    heatmap = gj.grad_cam(model, variables, x, np.array([other]), layer=taps.default_layer(model, variables, x)).map[0]
    expected = gj.blend(np.asarray(images_lib.read_image(photo)), heatmap)
    assert np.abs(shown_image(page, "#overlay img").astype(int) - expected).max() <= 1
    assert requested and all(url.startswith(toy_url) for url in requested), "the page fetched from elsewhere"
    context.close()


def test_a_map_that_shows_nothing_says_why_in_its_caption(tmp_path, scene_photo):
    """A model whose head is zero-initialised: every map is flagged, and the caption under the overlay
    names the causes and the fixes; an informative map's caption has no note."""
    from tests.test_methods import Tiny
    from tests.test_throughput import variables_of

    model = Tiny(num_classes=3)
    variables = variables_of(model, 32)
    flat = jax.tree_util.tree_map_with_path(
        lambda path, v: np.zeros_like(v) if "head" in jax.tree_util.keystr(path) else v, variables
    )
    photo, _ = scene_photo
    fine = app.Explorer(model, variables, labels=toy.SHAPES, input_size=(32, 32))
    (panel,) = fine.explain(photo, [1], score="logit")
    assert panel.flags == () and "not informative" not in panel.caption
    explorer = app.Explorer(model, flat, labels=toy.SHAPES, input_size=(32, 32))
    (panel,) = explorer.explain(photo, [1], score="logit")
    assert panel.flags == ("constant map", "zero gradient")
    assert panel.caption.endswith(
        'map not informative: constant map, zero gradient; try another layer, or score="logit"'
    )
    _, caption, _ = app.Handlers(explorer, tmp_path).explain(photo, "1", "", "grad_cam", None, "logit", False, 0.5)
    assert caption == panel.caption  # what the page shows under the overlay
