"""The README's and the documentation pages' Python examples run as written; the demo draws its figure."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A ```python block, unless `<!-- skip-test -->` stands on the line before it or its fence says
# ```python notest: only for examples that need what a test cannot have (a download, your own video).
BLOCK = re.compile(r"^(<!-- skip-test -->\n)?```python( notest)?\n(.*?)^```", flags=re.S | re.M)


def python_blocks(text: str) -> list[tuple[str, bool]]:
    """(code, skipped) for each python block of a Markdown page, in order."""
    return [(code, bool(marker or notest)) for marker, notest, code in BLOCK.findall(text)]


def run_blocks(text: str, filename: str, namespace: dict) -> int:
    """Run the blocks of `text` in order in one namespace, as a reader would; the number run.
    Where a block promises what it prints (`print(x)  # what x is`), it must print just that."""
    blocks = [code for code, skipped in python_blocks(text) if not skipped]
    for code in blocks:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(compile(code, filename, "exec"), namespace)
        promised = re.findall(r"^print\(.*\)  # (.*)$", code, flags=re.M)
        if promised:
            printed = out.getvalue().splitlines()
            assert len(printed) == len(promised), (printed, promised)
            for line, comment in zip(printed, promised):
                assert comment.startswith(line), (line, comment)
    return len(blocks)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_page_examples_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name files from the repository root
    run_blocks(page.read_text(), str(page), {})


def test_blocks_are_found_and_skips_honoured():
    text = "```python\na = 1\n```\n<!-- skip-test -->\n```python\nb\n```\n```python notest\nc\n```\n```bash\nd\n```\n"
    assert python_blocks(text) == [("a = 1\n", False), ("b\n", True), ("c\n", True)]


def test_a_broken_promise_fails():
    with pytest.raises(AssertionError):
        run_blocks("```python\nprint(1 + 1)  # 3\n```\n", "page.md", {})


def test_every_public_name_reaches_the_api_reference():
    """autodoc skips a name without a docstring of its own (a dict, a functools.partial) silently:
    such names must be written into docs/api.md by hand."""
    api = (ROOT / "docs" / "api.md").read_text()
    own_doc = lambda obj: obj.__doc__ and obj.__doc__ != type(obj).__doc__  # noqa: E731
    missing = [n for n in gj.__all__ if not own_doc(getattr(gj, n)) and f":: {n}\n" not in api]
    assert not missing, f"document these in docs/api.md: {missing}"


def test_quick_start_example_gives_matlabs_answer(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    section = (ROOT / "README.md").read_text().split("## From MATLAB to JAX", 1)[1].split("\n## ", 1)[0]
    assert run_blocks(section, "README.md", namespace) == 1
    assert np.asarray(namespace["classes"]).tolist() == [[282, 243]]  # tiger cat, bull mastiff
    assert namespace["result"].map.shape == (1, 2, 224, 224)
    assert namespace["picture"].shape == (224, 224, 3) and namespace["picture"].dtype == np.uint8


def test_demo_draws_the_matlab_figure(tmp_path):
    out = tmp_path / "demo.png"
    demo = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out)]
    run = subprocess.run(demo, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "bull mastiff (0.17), tiger cat (0.19)" in run.stdout
    assert Image.open(out).size == (800, 430)
