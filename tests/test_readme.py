"""The README's main job and its first Python example run as written."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import ROOT


def test_quick_start_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    section = (ROOT / "README.md").read_text().split("## From MATLAB to JAX", 1)[1].split("### Layers", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert np.asarray(namespace["classes"]).tolist() == [[282, 243]]  # tiger cat, bull mastiff
    assert namespace["result"].map.shape == (1, 2, 224, 224)
    assert namespace["picture"].shape == (224, 224, 3) and namespace["picture"].dtype == np.uint8


def test_demo_draws_the_matlab_figure(tmp_path):
    out = tmp_path / "demo.png"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "bull mastiff (0.17), tiger cat (0.19)" in run.stdout
    assert Image.open(out).size == (800, 430)
