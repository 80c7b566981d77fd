"""Datasets: sharded over devices and hosts, written as they go, resumed after a kill.

The reference for every map is `grad_cam` called directly on the images, one batch, one device,
in this process. Four devices come from `--xla_force_host_platform_device_count=4`, which must be
set before jax is imported, so those runs are subprocesses; so are the two `jax.distributed` hosts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import cli
from gradcam_jax import dataset as dataset_lib
from tests.conftest import PHOTOS, ROOT

OPTIONS = dict(
    layer="inception_5b-output", score="softmax", relu=False
)  # the CLI's defaults, so both share compiled code
NAMES = ["cd0", "cd1", "cd2", "cd3", "cd4", "sub/cat0", "sub/cat1", "sub/cat2"]  # sorted, as listed
ATOL = 1e-4  # per-device batches of another size may round differently in the last bits

DRIVER = """
import json, os, signal, sys
import jax
import gradcam_jax as gj
from gradcam_jax.dataset import explain_dataset

args = json.loads(sys.argv[1])
if "coordinator" in args:
    jax.distributed.initialize(args["coordinator"], num_processes=args["processes"], process_id=args["process"])
model, variables = gj.load_googlenet()
done = []

def on_image(record):
    done.append(record)
    if len(done) == args.get("kill_after"):
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup runs

summary = explain_dataset(
    args["folder"], args["out"], model, variables, images_per_batch=args["batch"], on_image=on_image,
    method_options=args["options"],
)
print(json.dumps({**summary._asdict(), "index": str(summary.index), "local_devices": jax.local_device_count()}))
"""


def run_driver(devices: int, **args) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    args = {"options": OPTIONS, **{k: str(v) if isinstance(v, os.PathLike) else v for k, v in args.items()}}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, expect_code: int = 0) -> dict | None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == expect_code, err[-2000:]
    return json.loads(out.splitlines()[-1]) if expect_code == 0 else None


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 photos (5 crops of cat_dog.jpg, 3 turns of cat.png in a subfolder) and one broken file."""
    root = tmp_path_factory.mktemp("dataset") / "photos"
    (root / "sub").mkdir(parents=True)
    cat_dog = Image.open(PHOTOS / "cat_dog.jpg").convert("RGB")
    for i in range(5):
        cat_dog.crop((40 * i, 10 * i, 400 + 40 * i, 360 + 10 * i)).save(root / f"cd{i}.jpg", quality=95)
    cat = Image.open(PHOTOS / "cat.png").convert("RGB")
    for i in range(3):
        cat.rotate(20 * i).save(root / "sub" / f"cat{i}.png")
    (root / "broken.jpg").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def reference(folder, googlenet):
    """{name: (map, class, score)} from grad_cam on all eight images at once, independently of the dataset code."""
    paths = [folder / f"{name}{'.png' if name.startswith('sub') else '.jpg'}" for name in NAMES]
    images = np.stack([gj.load_image(p) for p in paths]).astype(np.float32)
    result = gj.grad_cam(*googlenet, images, **OPTIONS)
    return {
        n: (np.asarray(result.map[i]), int(result.targets[i]), float(result.scores[i])) for i, n in enumerate(NAMES)
    }


def read_index(out) -> list[dict]:
    lines = (out / "index.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_matches(out, records, reference):
    assert sorted(r["name"] for r in records) == NAMES  # each image once
    for record in records:
        expected_map, expected_class, expected_score = reference[record["name"]]
        assert record["class"] == expected_class and record["label"] == gj.label(expected_class)
        assert record["score"] == pytest.approx(expected_score, abs=1e-4)
    names, classes, maps = dataset_lib.load_maps(out)
    assert names == NAMES and list(classes) == [reference[n][1] for n in NAMES]
    shards = "row" in records[0]  # 8-bit maps: within half a step of 1/255
    np.testing.assert_allclose(
        maps, np.stack([reference[n][0] for n in NAMES]), atol=ATOL + (0.5 / 255 if shards else 0)
    )


def test_one_device_matches_direct_calls(folder, reference, googlenet, tmp_path):
    errors = []
    summary = gj.explain_dataset(
        folder,
        tmp_path / "out",
        *googlenet,
        images_per_batch=3,
        on_error=errors.append,
        maps="npy",
        method_options=OPTIONS,
    )
    assert summary.explained == 8 and summary.skipped == 0 and summary.devices == 1
    assert errors == summary.failed == [f"{folder / 'broken.jpg'}: not an image Pillow can read"]
    assert_matches(tmp_path / "out", read_index(tmp_path / "out"), reference)
    assert (tmp_path / "out" / "maps" / "sub" / "cat0.npy").is_file()


def test_four_devices_killed_run_resumes_without_redoing(folder, reference, tmp_path):
    out = tmp_path / "out"
    # Killed (SIGKILL) right after its first batch of 4 (one image per device) is recorded.
    finish(run_driver(4, folder=folder, out=out, batch=4, kill_after=4), expect_code=-9)
    first = read_index(out)
    assert [r["name"] for r in first] == NAMES[:4]
    stamps = {r["map"]: (out / r["map"]).stat().st_mtime_ns for r in first}
    # What a kill at a worse moment leaves: a map written but not indexed, an index line cut short.
    np.save(out / "maps" / "cd4.npy", np.zeros((224, 224), np.float32))
    with open(out / "index.jsonl", "a") as f:
        f.write('{"image": "cut sh')

    # Batch 6 is rounded up to 8 (two per device); the four images left make one batch of 4 (a bucket).
    summary = finish(run_driver(4, folder=folder, out=out, batch=6))
    assert summary["local_devices"] == summary["devices"] == 4
    assert summary["skipped"] == 4 and summary["explained"] == 4 and len(summary["failed"]) == 1
    records = read_index(out)  # every line parses again: the cut line was dropped
    assert_matches(out, records, reference)  # the same maps as on one device, cd4 redone
    assert {m: (out / m).stat().st_mtime_ns for m in stamps} == stamps  # finished images not redone


def test_two_hosts_share_the_images(folder, reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    hosts = [
        run_driver(2, folder=folder, out=out, batch=4, coordinator=f"127.0.0.1:{port}", processes=2, process=i)
        for i in range(2)
    ]
    summaries = [finish(host) for host in hosts]
    assert [s["index"] for s in summaries] == [str(out / "index.0-of-2.jsonl"), str(out / "index.1-of-2.jsonl")]
    assert [s["processes"] for s in summaries] == [2, 2] and [s["devices"] for s in summaries] == [2, 2]
    shares = [[json.loads(line) for line in (out / f"index.{i}-of-2.jsonl").read_text().splitlines()] for i in range(2)]
    # every other file of the sorted list, broken.jpg first
    assert [[r["name"] for r in share] for share in shares] == [NAMES[1::2], NAMES[0::2]]
    assert_matches(out, shares[0] + shares[1], reference)


def test_limit_then_rerun_and_changed_settings(folder, reference, googlenet, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = gj.explain_dataset(folder, out, *googlenet, images_per_batch=4, limit=3, method_options=OPTIONS)
    assert first.explained == 2  # broken.jpg counts against the limit, and fails
    rest = gj.explain_dataset(folder, out, *googlenet, images_per_batch=4, method_options=OPTIONS)
    assert (rest.skipped, rest.explained) == (2, 6)
    assert_matches(out, read_index(out), reference)
    with pytest.raises(ValueError, match=r"other settings: score softmax \(now logit\)"):
        gj.explain_dataset(folder, out, *googlenet, method_options={**OPTIONS, "score": "logit"})
    with pytest.raises(ValueError, match="holds no earlier dataset run"):
        dataset_lib.plan_dataset([folder], folder / "sub", options=OPTIONS)  # a folder of other files


def test_a_host_planning_while_another_starts_sees_no_foreign_files(folder, tmp_path):
    # what the first host has written when the second plans: its lock, then settings.json's temporary
    out = tmp_path / "out"
    out.mkdir()
    (out / dataset_lib.lock_name(0, 2)).touch()
    (out / ".settings.x1y2.tmp.json").write_text("{")
    assert len(dataset_lib.plan_dataset([folder], out, options=OPTIONS).todo) == len(NAMES) + 1
    (out / "notes.txt").touch()
    with pytest.raises(ValueError, match="holds no earlier dataset run"):
        dataset_lib.plan_dataset([folder], out, options=OPTIONS)


def test_process_share_covers_every_image_once():
    items = list(range(10))
    shares = [dataset_lib.process_share(items, i, 3) for i in range(3)]
    assert sorted(sum(shares, [])) == items and shares[1] == [1, 4, 7]
    assert dataset_lib.index_name(0, 1) == "index.jsonl" and dataset_lib.index_name(1, 3) == "index.1-of-3.jsonl"


def test_cli_folder_is_a_resumable_dataset_run(folder, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["explain", str(folder), "--out", str(out), "--batch", "4"]) == 1  # broken.jpg
    captured = capsys.readouterr()
    assert f"error: {folder / 'broken.jpg'}: not an image Pillow can read" in captured.err
    assert f"{folder / 'cd0.jpg'}: " in captured.out and f"-> {out / 'sub' / 'cat0.png'}" in captured.out
    overlays = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.parent != out / "maps")
    assert overlays == [f"{n}.png" for n in NAMES]  # maps/ holds the map shards
    assert Image.open(out / "cd0.png").size == (400, 360)  # drawn over the photo, as for single images
    assert_matches(out, read_index(out), reference)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("index.jsonl", ".lock")}

    assert cli.main(["explain", str(folder), "--out", str(out), "--batch", "4"]) == 1
    assert "8 image(s) already done, 1 to go" in capsys.readouterr().err  # broken.jpg is tried again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    assert cli.main(["explain", str(folder), "--out", str(out), "--class", "243"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "classes None (now [243])" in err

    copy = tmp_path / "photos"
    shutil.copytree(folder / "sub", copy)
    inside = copy / "results"  # an output folder inside the input folder is not read as input
    assert cli.main(["explain", str(copy), "--out", str(inside), "--batch", "4"]) == 0
    assert cli.main(["explain", str(copy), "--out", str(inside), "--batch", "4"]) == 0
    assert "3 image(s) already done, 0 to go" in capsys.readouterr().err
    assert len(read_index(inside)) == 3


# -- names: targets, method_options, images_per_batch, opacity (the old ones for one release) ----


@pytest.fixture
def small_photos(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    source = Image.open(PHOTOS / "cat_dog.jpg").convert("RGB")
    for i in range(3):
        source.crop((30 * i, 20 * i, 200 + 30 * i, 150 + 20 * i)).save(folder / f"p{i}.jpg")
    return folder


def tiny(num_classes=4, size=224):
    from tests.test_methods import Tiny
    from tests.test_throughput import variables_of

    model = Tiny(num_classes=num_classes)
    return model, variables_of(model, size)


def test_old_argument_names_give_the_same_run_with_a_deprecation_warning(small_photos, tmp_path):
    model, variables = tiny()
    new = gj.explain_dataset(
        small_photos, tmp_path / "new", model, variables, targets=[1, 2], images_per_batch=2, opacity=0.5,
        method_options={"layer": "relu"},
    )  # fmt: skip
    with pytest.warns(DeprecationWarning) as caught:
        old = gj.explain_dataset(
            small_photos, tmp_path / "old", model, variables, classes=[1, 2], batch_size=2, alpha=0.5, layer="relu"
        )
    messages = " | ".join(str(w.message) for w in caught)
    for said in ("classes= is now targets=", "batch_size= is now images_per_batch=", "alpha= is now opacity=",
                 "method options as keyword arguments (layer)"):  # fmt: skip
        assert said in messages
    assert (new.explained, new.failed) == (old.explained, old.failed) == (3, [])
    for a, b in zip(dataset_lib.load_maps(tmp_path / "new"), dataset_lib.load_maps(tmp_path / "old")):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "new" / "settings.json").read_text() == (tmp_path / "old" / "settings.json").read_text()
    assert (tmp_path / "new" / "p0-1.png").read_bytes() == (tmp_path / "old" / "p0-1.png").read_bytes()
    with pytest.raises(TypeError, match="got both targets= and its old name classes="):
        gj.explain_dataset(small_photos, tmp_path / "both", model, variables, targets=[1], classes=[1])


def test_an_option_the_method_does_not_take_is_refused_before_any_work(small_photos, tmp_path):
    model, variables = tiny()
    with pytest.raises(ValueError, match=r"^grad_cam has no option 'steps'; its options: .*layer"):
        gj.explain_dataset(small_photos, tmp_path / "out", model, variables, method_options={"steps": 4})
    assert not (tmp_path / "out").exists()


def test_a_model_of_its_own_input_size_and_labels(small_photos, tmp_path):
    model, variables = tiny(num_classes=3, size=48)
    out = tmp_path / "out"
    summary = gj.explain_dataset(
        small_photos, out, model, variables, input_size=(48, 64), labels=["square", "circle", "cross"],
        method_options={"layer": "relu"},
    )  # fmt: skip
    assert summary.explained == 3
    names, classes, maps = dataset_lib.load_maps(out)
    assert maps.shape == (3, 48, 64)
    images = np.stack([gj.load_image(small_photos / f"{n}.jpg", (48, 64)) for n in names]).astype(np.float32)
    expected = gj.grad_cam(model, variables, images, layer="relu")
    np.testing.assert_allclose(maps, expected.map, atol=0.5 / 255 + 1e-6)
    labels = [json.loads(line)["label"] for line in (out / "index.jsonl").read_text().splitlines()]
    assert labels == [["square", "circle", "cross"][int(c)] for c in expected.targets]
    with pytest.raises(ValueError, match=r"input_size \[48, 64\] \(now \[224, 224\]\)"):
        gj.explain_dataset(small_photos, out, model, variables, method_options={"layer": "relu"})


def zero_head(variables):
    import jax

    return jax.tree_util.tree_map_with_path(
        lambda path, v: np.zeros_like(v) if "head" in jax.tree_util.keystr(path) else v, variables
    )


def test_each_record_names_why_its_map_is_not_informative(small_photos, tmp_path):
    model, variables = tiny()
    options = {"layer": "relu", "score": "logit"}
    fine = gj.explain_dataset(small_photos, tmp_path / "fine", model, variables, method_options=options)
    assert [r["flags"] for r in read_index(tmp_path / "fine")] == [[]] * 3 and fine.flagged == 0
    with pytest.warns(gj.DegenerateMapWarning):
        flat = gj.explain_dataset(
            small_photos, tmp_path / "flat", model, zero_head(variables), targets=[1, 2], method_options=options
        )
    records = read_index(tmp_path / "flat")
    assert [r["flags"] for r in records] == [["constant map", "zero gradient"]] * 6
    assert (flat.explained, flat.flagged) == (3, 6)
    names, classes, maps = dataset_lib.load_maps(tmp_path / "flat")  # readers see the maps as before
    assert maps.shape == (6, 224, 224) and len(names) == 6
