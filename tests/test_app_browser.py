"""The explorer in a real browser, as a person uses it: Debian's headless Chromium driven by
Playwright (nothing downloaded), against an app this module starts on a free local port. A clip
written here stands in for the webcam (Chromium's fake capture device).

Set GRADCAM_JAX_APP_SCREENSHOT=docs/images/app.png to keep the page's screenshot."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax._src import images as images_lib
from tests.app_server import app_url  # noqa: F401  (a fixture)
from tests.conftest import DOG_BOX, PHOTOS

sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="pip install -e '.[test]' (playwright)"
).sync_playwright
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: apt-get install chromium (.ci/run does)")

CAT_DOG = PHOTOS / "cat_dog.jpg"
BULL_MASTIFF = 243
OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRAME_SIZE = (240, 320)  # the fake camera's frames, (H, W)
PAN_FRAMES = 40  # Chromium plays the clip at 10 frames/s, looping


def pan_views() -> tuple[list[np.ndarray], np.ndarray]:
    """The camera clip: a view of 5/8 of cat_dog.jpg's width panning from its left edge to its
    right edge, uint8 (240, 320, 3) frames; and where the dog's centre lies across each view (a
    fraction of its width: DOG_BOX, read off the photo by eye), from 4/5 down to 1/5."""
    photo = Image.open(CAT_DOG).convert("RGB")
    window = photo.width * 5 // 8
    starts = np.linspace(0, photo.width - window, PAN_FRAMES).round().astype(int)
    views = [
        np.asarray(photo.crop((x0, 0, x0 + window, photo.height)).resize(FRAME_SIZE[::-1], Image.Resampling.BICUBIC))
        for x0 in starts
    ]
    dog = (DOG_BOX[2] + DOG_BOX[3]) / 2 / 224 * photo.width
    return views, (dog - starts) / window


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A YUV4MPEG2 clip (planar 4:2:0, JPEG-range YCbCr), the format Chromium's fake camera plays."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            ycc = Image.fromarray(frame).convert("YCbCr").split()
            chroma = [c.resize((width // 2, height // 2), Image.Resampling.BOX) for c in ycc[1:]]
            f.write(b"FRAME\n" + b"".join(np.asarray(plane).tobytes() for plane in (ycc[0], *chroma)))
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    clip = write_y4m(tmp_path_factory.mktemp("camera") / "pan.y4m", pan_views()[0])
    camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=OFFLINE + camera)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page on the app, recording every URL it requests."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(app_url)
    page.wait_for_selector("#photo")
    yield page
    assert page.requested and all(url.startswith(app_url) for url in page.requested), "the page fetched from elsewhere"
    context.close()


def shown_image(page, selector: str) -> np.ndarray:
    """The pixels of the image the page shows at `selector`, as the browser fetched them."""
    src = page.get_attribute(selector, "src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def test_upload_and_click_a_class_shows_the_python_apis_overlay(page, googlenet):
    page.set_input_files("#photo input[type=file]", str(CAT_DOG))
    page.wait_for_selector("#picked label:has-text('bull mastiff')", timeout=120_000)
    page.wait_for_function("document.querySelector('#caption').innerText.includes('tiger cat')", timeout=120_000)
    page.locator("#picked label", has_text="bull mastiff").click()
    page.wait_for_function(
        f"document.querySelector('#caption').innerText.startsWith('bull mastiff [{BULL_MASTIFF}]')", timeout=120_000
    )

    x = gj.load_image(CAT_DOG)[None].astype(np.float32)
    heatmap = gj.grad_cam(*googlenet, x, np.array([BULL_MASTIFF])).map[0]
    np.testing.assert_array_equal(
        shown_image(page, "#overlay img"), gj.blend(np.asarray(images_lib.read_image(CAT_DOG)), heatmap)
    )
    if os.environ.get("GRADCAM_JAX_APP_SCREENSHOT"):
        page.screenshot(path=os.environ["GRADCAM_JAX_APP_SCREENSHOT"], full_page=True)


JET = matplotlib.colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0


def hot_column(overlay: np.ndarray, frame: np.ndarray) -> float:
    """Across the frame, where the map is hottest (fraction of the width). The map's colours are
    2 * overlay - frame at opacity 0.5; each is read back as the value of the nearest jet colour
    (jet's red darkens above 0.875, so "reddest" is not "hottest"), then averaged down columns."""
    colours = 2.0 * overlay.astype(np.float32) - frame.astype(np.float32)
    values = ((colours[..., None, :] - JET) ** 2).sum(axis=-1).argmin(axis=-1) / 255.0
    return float(np.argmax(values.mean(axis=0)) + 0.5) / overlay.shape[1]


def test_live_mode_paints_the_map_over_camera_frames_and_follows_the_dog(page):
    page.fill("#typed textarea, #typed input", "bull mastiff")
    page.press("#typed textarea, #typed input", "Enter")
    page.locator("#score label", has_text="logit").click()
    page.locator("#relu input").check()
    page.get_by_role("tab", name="Live").click()
    page.get_by_text("Click to Access Webcam").click()
    # Record only once the fake camera plays: a click before that can leave the stream unstarted (one CI
    # dry run got no frame back in 150 s)
    page.wait_for_function(
        "(() => { const v = document.querySelector('#camera video'); return v && v.readyState >= 2 && v.videoWidth > 0; })()",
        timeout=60_000,
    )
    page.locator("#camera button", has_text="Record").click()

    views, dog = pan_views()
    seen, sources = [], set()  # (which view, where the map is hottest) per explained frame
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not (
        len(seen) >= 4 and min(seen)[0] < PAN_FRAMES / 3 < 2 * PAN_FRAMES / 3 < max(seen)[0]
    ):
        src = page.get_attribute("#live img", "src") if page.query_selector("#live img") else None
        if src and src not in sources:
            sources.add(src)
            shown = shown_image(page, "#live img")
            candidates = [np.asarray(Image.fromarray(v).resize(shown.shape[1::-1])).astype(np.float32) for v in views]
            # which view was explained: the overlay is half the frame, so it lies nearest its own
            view = int(np.argmin([np.abs(shown - c).mean() for c in candidates]))
            seen.append((view, hot_column(shown, candidates[view])))
        time.sleep(0.05)
    assert len(seen) >= 4, f"explained frames should come back; got {seen}"
    assert min(seen)[0] < PAN_FRAMES / 3 and max(seen)[0] > 2 * PAN_FRAMES / 3, (
        f"frames from both ends of the pan: {seen}"
    )
    for view, column in seen:
        assert abs(column - dog[view]) < 0.15, (view, column, dog[view], seen)
    columns, expected = np.array([c for _, c in seen]), dog[[v for v, _ in seen]]
    assert np.corrcoef(columns, expected)[0, 1] > 0.9, seen  # it moves with the dog, not on its own
    page.wait_for_function(
        "/bull mastiff \\[243\\] [0-9.]+ · [0-9.]+ frames\\/s/.test(document.querySelector('#live-text').innerText)"
    )
