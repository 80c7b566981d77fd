"""The explorer served on a free local port, for the app's tests (one server per test module)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model, variables) -> Iterator[str]:
    """The app's URL while it runs, in this process; stopped and its folder removed afterwards."""
    pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from gradcam_jax import app

    with app.private_folder() as folder:
        demo = app.build_app(app.Explorer(model, variables), folder)
        _, url, _ = app.launch(demo, "127.0.0.1", free_port(), block=False)
        try:
            yield url.rstrip("/")
        finally:
            demo.close()
