"""The explorer through its HTTP API, as a script (or a person's page) would use it: `gradio_client`
against an app this module starts on a free local port."""

from __future__ import annotations

import argparse
import html
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import cli
from gradcam_jax._src import choices
from gradcam_jax._src import images as images_lib
from tests.app_server import app_url  # noqa: F401  (a fixture)
from tests.conftest import PHOTOS
from tests.test_reliability import png_header_only

gradio_client = pytest.importorskip("gradio_client", reason="the app needs the app extra: pip install -e '.[app]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

CAT_DOG = PHOTOS / "cat_dog.jpg"
BULL_MASTIFF, TIGER_CAT = 243, 282
DEFAULTS = dict(layer="inception_5b/output", score="softmax", relu=False, opacity=0.5)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def explain(client, photo, typed="", method="grad_cam", **options):
    o = {**DEFAULTS, **options}
    return client.predict(
        handle_file(str(photo)),
        None,
        typed,
        method,
        o["layer"],
        o["score"],
        o["relu"],
        o["opacity"],
        api_name="/explain",
    )


def by_suffix(downloads: list[str]) -> tuple[str, str]:
    """(the .png, the .npy) among the downloaded files."""
    (png,), (npy,) = ([d for d in downloads if d.endswith(suffix)] for suffix in (".png", ".npy"))
    return png, npy


def expected_overlays(model, variables, method, targets, **options):
    """The pictures the Python API draws for `targets` (one call): each map over the original photo.
    `options` as the page sends them (DEFAULTS unless given), passed on as the CLI passes them."""
    x = gj.load_image(CAT_DOG)[None].astype(np.float32)
    options = choices.method_options(gj.METHODS[method], argparse.Namespace(**{**DEFAULTS, **options}))
    maps = np.asarray(gj.METHODS[method](model, variables, x, np.array([targets], np.int32), **options).map[0])
    return [(m, gj.blend(np.asarray(images_lib.read_image(CAT_DOG)), m)) for m in maps]


def test_classify_gives_the_top5_of_the_python_api(client, googlenet, cat_dog):
    scores, buttons = client.predict(handle_file(str(CAT_DOG)), api_name="/classify")
    probs, classes = gj.top_k(*googlenet, cat_dog, k=5)
    got = [(c["label"], c["confidence"]) for c in scores["confidences"]]
    assert [label for label, _ in got] == [f"{gj.label(int(c))} [{int(c)}]" for c in np.asarray(classes)[0]]
    np.testing.assert_allclose([p for _, p in got], np.asarray(probs)[0], rtol=1e-5)
    assert [value for _, value in buttons["choices"]][:2] == [str(TIGER_CAT), str(BULL_MASTIFF)]


@pytest.mark.parametrize(
    "method, options",
    [
        ("grad_cam", dict(score="softmax", relu=False)),  # gradients at a layer
        ("eigen_cam", dict(score="logit")),  # a forward pass only
        ("guided_backprop", dict(score="logit")),  # input gradients, no layer
    ],
)
def test_explain_shows_and_downloads_what_the_python_api_computes(client, googlenet, method, options):
    shown, caption, downloads = explain(client, CAT_DOG, "bull mastiff", method, **options)
    ((want_map, want_overlay),) = expected_overlays(*googlenet, method, [BULL_MASTIFF], **options)
    assert caption.startswith(f"bull mastiff [{BULL_MASTIFF}]")
    np.testing.assert_array_equal(np.asarray(Image.open(shown).convert("RGB")), want_overlay)
    png, npy = by_suffix(downloads)
    np.testing.assert_array_equal(np.asarray(Image.open(png).convert("RGB")), want_overlay)
    np.testing.assert_allclose(np.load(npy), want_map, atol=1e-6)
    if method == "grad_cam":  # and another class gives another map
        other = np.load(by_suffix(explain(client, CAT_DOG, "tiger cat", method, **options)[2])[1])
        assert np.abs(other - np.load(npy)).mean() > 0.1


def test_compare_classes_side_by_side(client, googlenet):
    panels = client.predict(
        handle_file(str(CAT_DOG)), "bull mastiff, 282", "grad_cam", *DEFAULTS.values(), api_name="/compare_classes"
    )
    assert [p["caption"].split(" [")[0] for p in panels] == ["bull mastiff", "tiger cat"]
    for panel, (_, want) in zip(panels, expected_overlays(*googlenet, "grad_cam", [BULL_MASTIFF, TIGER_CAT])):
        np.testing.assert_array_equal(np.asarray(Image.open(panel["image"]).convert("RGB")), want)


@pytest.mark.parametrize(
    "name, content, typed, layer, message",
    [
        (
            "notes.jpg",
            b"this is text, not a photo",
            "",
            DEFAULTS["layer"],
            "error: notes.jpg: not an image Pillow can read",
        ),
        (
            "bomb.png",
            png_header_only(40_000, 40_000),
            "",
            DEFAULTS["layer"],
            "error: bomb.png: too large to decode safely",
        ),
        ("cat_dog.jpg", CAT_DOG.read_bytes(), "golden retreiver", DEFAULTS["layer"], "cli"),
        ("cat_dog.jpg", CAT_DOG.read_bytes(), "", "inception_9z/output", "cli"),
    ],
)
def test_bad_input_is_a_message_and_the_app_serves_on(client, tmp_path, capsys, name, content, typed, layer, message):
    photo = tmp_path / name
    photo.write_bytes(content)
    with pytest.raises(AppError) as caught:
        explain(client, photo, typed, layer=layer)
    shown = html.unescape(str(caught.value))
    if message == "cli":  # the very words of the CLI's error line
        capsys.readouterr()
        options = ["--class", typed] if typed else ["--layer", layer]
        assert cli.main(["explain", str(photo), *options, "--out", str(tmp_path / "out")]) == 2
        message = capsys.readouterr().err.strip()
    assert shown.startswith(message)
    assert str(tmp_path) not in shown  # no path of the server in the page
    scores, _ = client.predict(handle_file(str(CAT_DOG)), api_name="/classify")
    assert scores["label"] == f"tiger cat [{TIGER_CAT}]"


@pytest.mark.parametrize("path", ["/etc/passwd", str(PHOTOS / "cat.png"), "../../../../etc/passwd"])
def test_no_file_of_the_server_is_readable(app_url, path):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{app_url}/gradio_api/file={path}", timeout=10)
    assert caught.value.code in (403, 404)


@pytest.mark.parametrize("path", ["/etc/passwd", str(PHOTOS / "cat.png")])
def test_no_file_of_the_server_is_taken_as_an_upload(app_url, path):
    body = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}).encode()
    request = urllib.request.Request(f"{app_url}/gradio_api/call/classify", body, {"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    answer = urllib.request.urlopen(f"{app_url}/gradio_api/call/classify/{event}", timeout=60).read().decode()
    assert answer.startswith("event: error") and "not uploaded by a user" in answer and "confidences" not in answer


def test_uploads_live_in_a_folder_removed_on_exit():
    from gradcam_jax import app

    with app.private_folder() as folder:
        (folder / "upload.jpg").write_bytes(b"x")
        import gradio

        assert gradio.utils.get_upload_folder() == str(folder)
    assert not folder.exists()


def test_without_gradio_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "gradio", None)
    assert cli.main(["app", "--port", "7999"]) == 2
    assert capsys.readouterr().err == "error: the app needs Gradio: pip install 'gradcam-jax[app]'\n"


def test_compare_methods_side_by_side(client, googlenet):
    panels = client.predict(
        handle_file(str(CAT_DOG)),
        None,
        "bull mastiff",
        ["grad_cam", "eigen_cam"],
        *DEFAULTS.values(),
        api_name="/compare_methods",
    )
    assert [re.sub(r" [0-9.]+ ", " ", p["caption"]) for p in panels] == [
        f"bull mastiff [{BULL_MASTIFF}] · grad_cam",
        f"bull mastiff [{BULL_MASTIFF}] · eigen_cam",
    ]
    for panel, method in zip(panels, ["grad_cam", "eigen_cam"]):
        ((_, want),) = expected_overlays(*googlenet, method, [BULL_MASTIFF])
        np.testing.assert_array_equal(np.asarray(Image.open(panel["image"]).convert("RGB")), want)


def test_the_documentation_page_runs(monkeypatch, googlenet):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(gj, "load_googlenet", lambda: googlenet)  # the same bundled weights, loaded and compiled once
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "app.md").read_text(), flags=re.S):
        exec(compile(block, "docs/app.md", "exec"), {})
