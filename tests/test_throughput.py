"""Right-sized work and safe folder runs (issue 12), on a tiny model so every test is quick.

- Padding: a run over fewer images than the batch does the work of the images it has; the rows
  the model sees are counted when it is traced (a jitted method traces once per batch shape).
- Memory-bounded chunking: the batch of every convolution in a method's jaxpr (vmaps and maps
  unrolled into batched primitives) is the images one forward pass holds, at most `batch_size`.
- Folder runs: the lock, a changed input explained again on resume, a failed write.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import cli
from gradcam_jax import dataset as dataset_lib
from gradcam_jax._src import choices, outputs, pipeline
from gradcam_jax.methods import METHODS
from tests.conftest import PHOTOS, ROOT
from tests.test_methods import Tiny  # conv -> ReLU layer "relu" (3 channels) -> mean -> dense

SEEN: dict[str, list[int]] = {}  # tag -> batch sizes the model was traced with


class Recorder(nn.Module):
    """conv -> ReLU -> mean -> dense, recording its batch size in SEEN[tag] each time it is traced."""

    tag: str
    num_classes: int = 3

    @nn.compact
    def __call__(self, x):
        SEEN.setdefault(self.tag, []).append(x.shape[0])
        x = nn.relu(nn.Conv(4, (3, 3), strides=(4, 4), name="conv")(x))
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def variables_of(model, size=8):
    variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    SEEN.pop(getattr(model, "tag", None), None)  # count only what comes after
    return variables


def conv_batches(fn, *args) -> list[int]:
    """Leading (batch) size of the input of every convolution in fn's jaxpr, sub-jaxprs included."""
    sizes = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                sizes.append(eqn.invars[0].aval.shape[0])
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return sizes


# -- buckets -----------------------------------------------------------------------------------


@given(st.integers(1, 64), st.integers(1, 512), st.sampled_from([1, 2, 4, 8]))
def test_a_bucket_holds_the_batch_and_at_most_doubles_it(batch_size, n, multiple):
    n = min(n, batch_size)
    rows = pipeline.bucket(n, batch_size, multiple)
    cap = -(-batch_size // multiple) * multiple
    assert n <= rows <= cap and rows % multiple == 0
    assert rows < 2 * n or rows == multiple  # never more than the next bucket
    buckets = {pipeline.bucket(k, batch_size, multiple) for k in range(1, batch_size + 1)}
    assert len(buckets) <= (cap // multiple).bit_length() + 1  # few shapes to compile


def test_padding_repeats_the_first_row():
    rows = [np.full((2, 2), i, np.uint8) for i in (5, 6, 7)]
    padded = pipeline.stack_padded(rows, 4)
    assert padded.dtype == np.float32 and padded.shape == (4, 2, 2)
    np.testing.assert_array_equal(padded[:, 0, 0], [5, 6, 7, 5])


# -- one image costs one image ----------------------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    """Three small JPEGs of different sizes (cut from the bundled photo) in photos/."""
    folder = tmp_path / "photos"
    folder.mkdir()
    source = Image.open(PHOTOS / "cat_dog.jpg").convert("RGB")
    for i in range(3):
        source.crop((30 * i, 20 * i, 200 + 30 * i, 150 + 20 * i)).save(folder / f"p{i}.jpg")
    return folder


def tiny_cli(monkeypatch, model):
    """The CLI with `model` (and its variables at 224 x 224) in place of GoogLeNet."""
    variables = variables_of(model, 224)
    monkeypatch.setattr(cli, "model_and_variables", lambda args: (model, variables))


def test_cli_explains_one_image_as_one_row(photos, tmp_path, monkeypatch, capsys):
    tiny_cli(monkeypatch, Recorder("cli-one"))
    argv = ["explain", str(photos / "p0.jpg"), "--batch", "16", "--layer", "conv", "--out", str(tmp_path / "o.png")]
    assert cli.main(argv) == 0
    assert set(SEEN["cli-one"]) == {1}  # the layer check and the method: one row each, not 16


def test_folder_run_pads_only_to_the_next_bucket(photos, tmp_path):
    model = Recorder("dataset-three")
    summary = gj.explain_dataset(
        photos, tmp_path / "out", model, variables_of(model, 224), images_per_batch=16, method_options={"layer": "conv"}
    )
    assert summary.explained == 3
    assert set(SEEN["dataset-three"]) == {4}  # 3 images -> the bucket of 4, not 16


# -- batch_size counts whole images per forward pass -------------------------------------------


@pytest.mark.parametrize(
    "name, options",
    [
        ("occlusion", dict(patch=4, stride=4)),  # 4 positions
        ("score_cam", dict(layer="relu")),  # 3 channels
        ("integrated_gradients", dict(steps=6)),
        ("smoothgrad", dict(samples=6)),
        ("is_cam", dict(layer="relu", samples=2)),  # 3 channels x 2, one flat perturbation axis
        ("feature_ablation", dict(patch=4)),  # 4 patches
        ("shapley_sampling", dict(patch=4, samples=2)),  # 2 orders x (4 + 1) steps
        ("ss_cam", dict(layer="relu", samples=2)),  # 3 channels x 2 draws
        ("kernel_shap", dict(patch=4, samples=6)),  # 6 on/off vectors (lime's passes are the same)
        ("image_lime", dict(segments=4, samples=6)),
    ],
)
@pytest.mark.parametrize("images, batch_size, per_pass", [(1, 8, 8), (2, 8, 8), (3, 8, 6), (16, 4, 4), (6, 4, 4)])
def test_one_pass_holds_at_most_batch_size_images(name, options, images, batch_size, per_pass):
    model = Tiny()
    variables = variables_of(model)
    x = jax.random.uniform(jax.random.key(1), (images, 8, 8, 3)) * 255
    method = METHODS[name]
    target = gj.targets.classes(None, method.default_score or "logit")  # the jitted core takes a target object
    sizes = conv_batches(
        lambda v, x: method.jitted(model, v, x, target, batch_size=batch_size, **options), variables, x
    )
    assert max(sizes) <= batch_size
    perturbations = {"occlusion": 4, "score_cam": 3, "feature_ablation": 4, "shapley_sampling": 10}.get(name, 6)
    expected = min(per_pass, images * perturbations) if images <= batch_size else batch_size
    assert expected in sizes


def test_chunking_does_not_change_the_maps():
    model = Tiny()
    variables = variables_of(model)
    x = jax.random.uniform(jax.random.key(2), (5, 8, 8, 3)) * 255
    for name, options in [("integrated_gradients", dict(steps=4)), ("occlusion", dict(patch=4, stride=4))]:
        whole = METHODS[name](model, variables, x, batch_size=64, **options)
        sliced = METHODS[name](model, variables, x, batch_size=2, **options)  # slices of 2, 2 and 1 image
        np.testing.assert_allclose(sliced.map, whole.map, atol=1e-5)
        np.testing.assert_array_equal(sliced.targets, whole.targets)


# -- sharing a folder ---------------------------------------------------------------------------

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
RELU = {"layer": "relu"}  # the Tiny model's one spatial layer


def test_a_second_run_into_a_busy_folder_is_refused(photos, tmp_path, monkeypatch, capsys):
    tiny_cli(monkeypatch, Tiny())
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out / dataset_lib.LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert cli.main(["explain", str(photos), "--out", str(out), "--layer", "relu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "another run" in err and "\n" not in err
        assert not (out / "index.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its lock went with it, and the stale file (any pid in it) does not block.
    (out / dataset_lib.LOCK).write_text(f"{holder.pid}\n")
    assert cli.main(["explain", str(photos), "--out", str(out), "--layer", "relu"]) == 0


def test_a_changed_input_is_explained_again(photos, tmp_path):
    model, out = Tiny(), tmp_path / "out"
    variables = variables_of(model, 224)
    assert gj.explain_dataset(photos, out, model, variables, method_options=RELU).explained == 3
    assert gj.explain_dataset(photos, out, model, variables, method_options=RELU).explained == 0
    changed = photos / "p1.jpg"
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    summary = gj.explain_dataset(photos, out, model, variables, method_options=RELU)
    assert summary.explained == 1 and summary.skipped == 2
    latest = {r["name"]: r for r in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    assert latest["p1"]["mtime_ns"] == changed.stat().st_mtime_ns
    expected = gj.grad_cam(model, variables, gj.load_image(changed)[None], layer="relu").map[0]
    names, _, maps = dataset_lib.load_maps(out)
    np.testing.assert_allclose(maps[names.index("p1")], expected, atol=0.5 / 255 + 1e-6)  # the newer map wins
    assert gj.explain_dataset(photos, out, model, variables, method_options=RELU).explained == 0


def test_a_failed_write_stops_with_one_line_and_the_rerun_resumes(photos, tmp_path, monkeypatch, capsys):
    tiny_cli(monkeypatch, Tiny())
    out = tmp_path / "out"
    replace = os.replace

    def full_disk(src, dst):  # the disk fills up when the third image's files are written
        if os.path.basename(dst).startswith("p2"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", full_disk)
    argv = ["explain", str(photos), "--out", str(out), "--layer", "relu", "--batch", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: [Errno 28] No space left on device")
    finished = [json.loads(line)["name"] for line in (out / "index.jsonl").read_text().splitlines()]
    assert finished == ["p0", "p1"] and not list(out.rglob(".*.tmp*"))  # no temporaries left behind

    monkeypatch.setattr(outputs.os, "replace", replace)
    assert cli.main(argv) == 0
    assert "2 image(s) already done, 1 to go" in capsys.readouterr().err


def test_cli_leaves_each_methods_own_score_and_relu_alone():
    parse = cli.build_parser().parse_args
    # nothing given: each method keeps its own defaults (the layer: the model's default_layer)
    assert choices.method_options(METHODS["score_cam"], parse(["explain", "x.jpg", "--method", "score_cam"])) == {}
    given_ = choices.method_options(METHODS["score_cam"], parse(["explain", "x.jpg", "--score", "logit", "--relu"]))
    assert given_["score"] == "logit" and given_["relu"] is True


# -- compact maps -------------------------------------------------------------------------------


def test_maps_are_sharded_by_default_and_npy_on_request(photos, tmp_path):
    model = Tiny()
    variables = variables_of(model, 224)
    expected = gj.grad_cam(
        model, variables, np.stack([gj.load_image(p) for p in sorted(photos.iterdir())]), layer="relu"
    ).map
    for layout, files, atol in [
        ("shards", ["shard-000-000000.png"], 0.5 / 255 + 1e-6),
        ("npy", ["p0.npy", "p1.npy", "p2.npy"], 1e-6),
    ]:
        out = tmp_path / layout
        gj.explain_dataset(photos, out, model, variables, method_options=RELU, maps=layout)
        assert sorted(p.name for p in (out / "maps").iterdir()) == files  # one shard for the batch
        names, classes, maps = dataset_lib.load_maps(out)
        assert names == ["p0", "p1", "p2"] and classes.dtype == np.int32 and maps.dtype == np.float32
        np.testing.assert_allclose(maps, expected, atol=atol)
    with pytest.raises(ValueError, match=r"maps shards \(now npy\)"):
        gj.explain_dataset(photos, tmp_path / "shards", model, variables, method_options=RELU, maps="npy")


def test_a_batch_of_more_maps_than_a_shard_holds_spreads_over_shards(photos, tmp_path):
    """3 images x 12 classes = 36 maps in one batch: shards of SHARD_MAPS (32) and 4, each map read
    back at its (shard, row), against grad_cam called directly."""
    model, classes = Tiny(num_classes=12), list(range(12))
    variables = variables_of(model, 224)
    images = np.stack([gj.load_image(p) for p in sorted(photos.iterdir())])
    expected = gj.grad_cam(model, variables, images, np.tile(np.asarray(classes, np.int32), (3, 1)), layer="relu").map
    out = tmp_path / "out"
    gj.explain_dataset(photos, out, model, variables, targets=classes, method_options=RELU, images_per_batch=4)
    shards = sorted((out / "maps").iterdir())
    assert [p.name for p in shards] == ["shard-000-000000.png", "shard-000-000001.png"]
    assert [dataset_lib.read_shard(p).shape[0] for p in shards] == [dataset_lib.SHARD_MAPS, 36 - dataset_lib.SHARD_MAPS]
    names, got, maps = dataset_lib.load_maps(out)
    assert names == [f"p{i}-{c}" for i in range(3) for c in sorted(classes, key=str)]  # sorted as strings
    order = [(int(n[1]), int(n.split("-")[1])) for n in names]
    assert list(got) == [c for _, c in order]
    np.testing.assert_allclose(maps, np.stack([expected[i, c] for i, c in order]), atol=0.5 / 255 + 1e-6)


def test_overlays_as_jpeg_on_request(photos, tmp_path, monkeypatch):
    tiny_cli(monkeypatch, Tiny())
    out = tmp_path / "out"
    argv = ["explain", str(photos), "--out", str(out), "--layer", "relu", "--overlay-format", "jpg"]
    assert cli.main(argv) == 0
    records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [r["overlay"] for r in records] == ["p0.jpg", "p1.jpg", "p2.jpg"] and not list(out.glob("*.png"))
    with Image.open(out / "p1.jpg") as picture:
        assert picture.format == "JPEG" and picture.size == Image.open(photos / "p1.jpg").size
    with pytest.raises(ValueError, match=r"overlay_format jpg \(now png\)"):
        dataset_lib.plan_dataset([photos], out, options={"layer": "relu"}, overlays=True)


def test_host_work_in_processes_writes_what_threads_write(photos, tmp_path):
    """`host_processes()` (spawned workers: the GIL-free path for many-core hosts) against the default
    threads: the same index, the same maps, the same overlay bytes; a broken file is reported alike."""
    (photos / "broken.jpg").write_text("not a photo")
    model = Tiny()
    variables = variables_of(model, 224)
    runs = {}
    with dataset_lib.host_processes(2) as host:
        for name, executor in [("threads", None), ("processes", host)]:
            out, errors = tmp_path / name, []
            summary = gj.explain_dataset(
                photos, out, model, variables, method_options=RELU, opacity=0.5, maps="npy", images_per_batch=2, host=executor,
                on_error=errors.append,
            )  # fmt: skip
            assert summary.explained == 3 and errors == [f"{photos / 'broken.jpg'}: not an image Pillow can read"]
            records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
            runs[name] = (
                [{k: r[k] for k in ("name", "class", "score", "map", "overlay")} for r in records],
                [np.load(out / r["map"]) for r in records],
                [(out / r["overlay"]).read_bytes() for r in records],
            )
    assert runs["threads"][0] == runs["processes"][0]
    np.testing.assert_array_equal(runs["threads"][1], runs["processes"][1])
    assert runs["threads"][2] == runs["processes"][2]


def test_the_throughput_page_runs_as_written(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "throughput.md").read_text(), flags=re.S)
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, "docs/throughput.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == ["[1, 2, 4, 8, 16, 16]", "[4, 8, 16]", "[8, 4, 2, 1, 1]"]
