"""The wheel users get: it builds, passes `twine check`, holds the weights and `py.typed`, and once
installed into a fresh virtual environment classifies the demo photo with no source tree in sight."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.conftest import PHOTOS, ROOT

pytest.importorskip("build", reason="needs the [dev] extra")
pytest.importorskip("twine", reason="needs the [dev] extra")


def run(*command, **kwargs) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_wheel_installs_and_classifies(tmp_path):
    dist = tmp_path / "dist"
    # --no-isolation: build with the setuptools already installed, so nothing is downloaded
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, ROOT, cwd=ROOT)
    (wheel,) = dist.glob("gradcam_jax-*.whl")
    run(sys.executable, "-m", "twine", "check", "--strict", wheel)
    names = zipfile.ZipFile(wheel).namelist()
    assert "gradcam_jax/pretrained/bvlc_googlenet.msgpack" in names
    assert "gradcam_jax/py.typed" in names and "gradcam_jax/data/synset_words.txt" in names

    # A fresh environment that borrows this one's dependencies (jax, flax, ...) through a .pth file;
    # .pth files are not followed into that folder, so this checkout's editable install stays out.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (tmp_path / "venv" / site.split(str(venv) + "/", 1)[1] / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        "--prefix",
        venv,
        wheel,
    )

    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    where = run(python, "-c", "import gradcam_jax; print(gradcam_jax.__file__)", cwd=tmp_path, env=env)
    assert where.startswith(str(venv)), where
    out = run(venv / "bin" / "gradcam-jax", "classify", PHOTOS / "cat_dog.jpg", "--top", "2", cwd=tmp_path, env=env)
    assert "tiger cat" in out and "bull mastiff" in out, out
