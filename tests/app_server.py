"""The explorer served on a free local port, for the app's tests (one server per test module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app_url(googlenet):
    pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")
    from gradcam_jax import app

    with app.serve(*googlenet) as url:
        yield url
