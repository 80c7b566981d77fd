"""The command line, run in-process: classify's JSON lines, explain's files and their documented names."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from gradcam_jax import cli
from tests.conftest import PHOTOS


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PHOTOS / "cat_dog.jpg", folder / "cat_dog.jpg")
    shutil.copy(PHOTOS / "cat.png", folder / "cat.png")
    return folder


def test_classify_json_lines(photos, capsys):
    assert cli.main(["classify", str(photos / "cat.png"), str(photos / "cat_dog.jpg"), "--top", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [str(photos / "cat.png"), str(photos / "cat_dog.jpg")]
    assert lines[0]["top"][0] == {"index": 285, "label": "Egyptian cat", "score": pytest.approx(0.562, abs=1e-3)}
    assert [t["index"] for t in lines[1]["top"][:2]] == [282, 243] and len(lines[1]["top"]) == 3


def test_explain_one_image_one_class_to_named_files(photos, tmp_path, capsys):
    out, npy = tmp_path / "dog.png", tmp_path / "dog.npy"
    code = cli.main(
        ["explain", str(photos / "cat_dog.jpg"), "--class", "bull mastiff", "--out", str(out), "--save-map", str(npy)]
    )
    assert code == 0
    assert "bull mastiff [243] (0.173)" in capsys.readouterr().out
    assert Image.open(out).size == (640, 480)  # drawn over the original photo
    saved = np.load(npy)
    assert saved.shape == (224, 224) and saved.dtype == np.float32 and saved.min() >= 0 and saved.max() == 1


def test_explain_images_and_classes_name_files_predictably(photos, tmp_path):
    out = tmp_path / "out"
    code = cli.main(
        [
            "explain",
            str(photos / "cat.png"),
            str(photos / "cat_dog.jpg"),
            "--class",
            "243",
            "--class",
            "tiger cat",
            "--out",
            str(out),
            "--save-map",
            str(tmp_path / "m.npy"),
            "--batch",
            "2",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat-243.png", "cat-282.png", "cat_dog-243.png", "cat_dog-282.png"]
    assert sorted(p.name for p in tmp_path.glob("m-*.npy")) == [
        "m-cat-243.npy",
        "m-cat-282.npy",
        "m-cat_dog-243.npy",
        "m-cat_dog-282.npy",
    ]


def test_explain_top1_and_refuses_to_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["explain", str(photos / "cat.png"), "--out", str(out)]) == 0
    assert (out / "cat.png").exists() and "Egyptian cat [285]" in capsys.readouterr().out
    assert cli.main(["explain", str(photos / "cat.png"), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["explain", str(photos / "cat.png"), "--out", str(out), "--overwrite"]) == 0


def test_a_folder_run_keeps_maps_in_its_own_tree(photos, tmp_path, capsys):
    assert cli.main(["explain", str(photos), "--save-map", str(tmp_path / "m.npy")]) == 2
    assert "a folder run saves every map under OUT/maps/" in capsys.readouterr().err
