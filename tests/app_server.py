"""The explorer served on a free local port, for the app's tests (one server per test module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app_url(googlenet):
    pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")
    from gradcam_jax import app, cli

    with app.serve(*googlenet, examples=cli.EXAMPLE_PHOTOS) as url:  # the page `gradcam-jax app` serves
        yield url
