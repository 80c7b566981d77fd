"""Video: a synthetic clip panning across the cat-and-dog photo, explained end to end.

The camera (a 400x300 window of the 640x480 photo, shown as 160x120 frames) pans left, so the dog
drifts right across the frames. Its map must follow it: in the photo's own coordinates the peak
stays on the dog (DOG_BOX, read off the photo by eye), while in frame coordinates it moves at the
pan's rate. The peak is also read back from the written video, by inverting the colour map.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import imageio.v2 as imageio
import matplotlib
import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import cli, video
from tests.conftest import DOG_BOX, PHOTOS

# imageio starts ffmpeg by fork + exec from the tests' own reads and writes; JAX warns of any fork
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")

FRAMES, FPS, SIZE = 24, 12, (120, 160)  # SIZE is (H, W)
WINDOW = (400, 300)  # (w, h) in photo pixels
OFFSETS = np.linspace(240, 0, FRAMES).round().astype(int)  # window's left edge, panning left
BULL_MASTIFF = 243
# What the CLI passes (its defaults made explicit): the library calls below share its compiled code.
PAPER = dict(layer="inception_5b-output", score="logit", relu=True)  # the paper's Grad-CAM: "where is the dog"
MATLAB = dict(layer="inception_5b-output", score="softmax", relu=False)
# DOG_BOX is in the photo resized to 224x224; in the photo's own pixels:
DOG_X = (DOG_BOX[2] * 640 / 224, DOG_BOX[3] * 640 / 224)
DOG_Y = (DOG_BOX[0] * 480 / 224, DOG_BOX[1] * 480 / 224)


def write_clip(path, frames, fps=FPS, pixelformat="yuv420p"):
    """Written with imageio directly, not with the code under test."""
    writer = imageio.get_writer(
        path, format="FFMPEG", fps=fps, macro_block_size=1, pixelformat=pixelformat, ffmpeg_log_level="error"
    )
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def read_clip(path):
    reader = imageio.get_reader(path, format="FFMPEG")
    frames = [np.asarray(f) for f in reader]
    return frames, reader.get_meta_data()["fps"]


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    """(uint8 frames, path of the clip written from them)."""
    photo = Image.open(PHOTOS / "cat_dog.jpg").convert("RGB")
    frames = [
        np.asarray(photo.crop((x0, 0, x0 + WINDOW[0], WINDOW[1])).resize(SIZE[::-1], Image.Resampling.BICUBIC))
        for x0 in OFFSETS
    ]
    path = tmp_path_factory.mktemp("video") / "pan.mp4"
    write_clip(path, frames)
    return frames, path


@pytest.fixture(scope="module")
def explained(pan, googlenet):
    model, variables = googlenet
    return list(
        video.explain_frames(
            iter(pan[0]), model, variables, targets=BULL_MASTIFF, frames_per_batch=8, method_options=PAPER
        )
    )


def test_map_peak_stays_on_the_dog_as_the_camera_pans(explained):
    peaks = np.array([np.unravel_index(e.map.argmax(), e.map.shape)[::-1] for e in explained])  # (x, y) in 224
    photo_x = OFFSETS + peaks[:, 0] * WINDOW[0] / 224
    photo_y = peaks[:, 1] * WINDOW[1] / 224
    assert all(e.target == BULL_MASTIFF for e in explained)
    assert np.all((DOG_X[0] <= photo_x) & (photo_x <= DOG_X[1])), photo_x
    assert np.all((DOG_Y[0] <= photo_y) & (photo_y <= DOG_Y[1])), photo_y
    assert photo_x.std() < 25  # one place on the dog...
    slope = np.polyfit(OFFSETS, peaks[:, 0], 1)[0]
    assert -0.8 < slope < -0.35, slope  # ...so in the frame it moves right at the pan's rate, -224/400


def recovered_map(output, frame, alpha):
    """The map drawn in an overlay: the colour (output - (1 - alpha) frame) / alpha, looked up in jet."""
    colour = (output.astype(np.float32) - (1 - alpha) * frame.astype(np.float32)) / alpha
    lut = matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3].astype(np.float32) * 255
    distance = ((colour[:, :, None, :] - lut[None, None]) ** 2).sum(-1)
    return distance.argmin(-1) / 255.0


def test_cli_writes_every_frame_at_its_size_and_rate_with_the_peak_on_the_dog(pan, explained, tmp_path, capsys):
    _, clip = pan
    out = tmp_path / "out" / "pan.mp4"
    argv = [
        "video",
        str(clip),
        "--out",
        str(out),
        "--class",
        "bull mastiff",
        "--score",
        "logit",
        "--relu",
        "--opacity",
        "0.6",
    ]
    assert cli.main(argv) == 0
    assert f"{FRAMES} frames in" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["pan.mp4"]  # no temporary left behind
    written, fps = read_clip(out)
    decoded, _ = read_clip(clip)  # what the pipeline saw
    assert len(written) == FRAMES and fps == FPS
    assert all(frame.shape == (*SIZE, 3) for frame in written)
    for x0, output, frame, expected in zip(OFFSETS, written, decoded, explained):
        drawn = recovered_map(output, frame, 0.6)
        stretched = np.asarray(Image.fromarray(expected.map).resize(SIZE[::-1], Image.Resampling.BILINEAR))
        assert np.corrcoef(drawn.ravel(), stretched.ravel())[0, 1] > 0.95  # drawn over the whole frame, in place
        blocks = drawn.reshape(SIZE[0] // 4, 4, SIZE[1] // 4, 4).mean(axis=(1, 3))
        y, x = (np.array(np.unravel_index(blocks.argmax(), blocks.shape)) + 0.5) * 4
        assert DOG_X[0] <= x0 + x * WINDOW[0] / SIZE[1] <= DOG_X[1]
        assert DOG_Y[0] <= y * WINDOW[1] / SIZE[0] <= DOG_Y[1]


def test_odd_frame_size_short_clip_and_top1(pan, googlenet, tmp_path):
    frames = [np.ascontiguousarray(f[:51, :75]) for f in pan[0][:7]]  # odd sizes, fewer frames than a batch
    clip, out = tmp_path / "odd.mp4", tmp_path / "odd-out.mkv"
    write_clip(clip, frames, fps=5, pixelformat="yuv444p")  # yuv420p needs even sizes
    stats = video.explain_video(clip, out, *googlenet, frames_per_batch=8, method_options=MATLAB)
    written, fps = read_clip(out)
    assert stats.frames == len(written) == 7 and fps == 5
    assert all(frame.shape == (51, 75, 3) for frame in written)


class FakeCapture:
    """cv2.VideoCapture stand-in: pure blue frames, in OpenCV's BGR order; `on_read(n)` is called per read."""

    on_read = staticmethod(lambda n: None)

    def __init__(self, index):
        self.reads = 0

    def isOpened(self):
        return True

    def get(self, prop):
        return 15.0

    def read(self):
        self.reads += 1
        self.on_read(self.reads)
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 0] = 255  # B
        return self.reads <= 200, frame  # a camera that ends, should the stop fail

    def release(self):
        pass


@pytest.fixture
def fake_cv2(monkeypatch):
    fake = type(sys)("cv2")
    fake.VideoCapture, fake.CAP_PROP_FPS = FakeCapture, 5
    monkeypatch.setitem(sys.modules, "cv2", fake)
    return fake


def test_camera_frames_are_rgb_and_stop_ends_the_recording(googlenet, tmp_path, fake_cv2):
    stop = threading.Event()
    source = video.read_camera(0, stop)

    def ctrl_c_after(frames, n):
        for i, frame in enumerate(frames, 1):
            if i == n:
                stop.set()  # what the CLI's Ctrl-C handler does
            yield frame

    frames = ctrl_c_after(source.frames, 11)
    out = tmp_path / "camera.mp4"
    stats = video.explain_video(
        video.Source(source.info, frames), out, *googlenet, frames_per_batch=8, opacity=0.0, method_options=MATLAB
    )
    written, fps = read_clip(out)
    assert stats.frames == len(written) == 11 and fps == 15
    assert np.abs(written[5].astype(int).mean(axis=(0, 1)) - [0, 0, 255]).max() < 8  # blue, as RGB


def test_ctrl_c_ends_a_camera_recording_and_keeps_it(googlenet, tmp_path, fake_cv2, monkeypatch, capsys):
    monkeypatch.setattr(cli, "model_and_variables", lambda args: googlenet)
    monkeypatch.setattr(FakeCapture, "on_read", staticmethod(lambda n: n == 12 and os.kill(os.getpid(), signal.SIGINT)))
    out = tmp_path / "camera-0.mp4"
    argv = ["video", "--camera", "0", "--out", str(out), "--batch", "8", "--opacity", "0"]
    assert cli.main(argv + [f"--{k}={v}" for k, v in MATLAB.items() if k != "relu"]) == 0
    assert "stopping: finishing the video" in capsys.readouterr().err
    written, _ = read_clip(out)
    assert 11 <= len(written) < 40  # everything read until Ctrl-C, then the recording ended


def test_interrupted_write_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")

    def frames():
        for _ in range(3):
            yield np.zeros((32, 32, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.write_video(out, frames(), 10)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"] and out.read_bytes() == b"an earlier result"


def test_prefetch_passes_errors_on_and_stops_its_producer():
    closed = threading.Event()

    def produce():
        try:
            yield 1
            yield 2
            raise ValueError("broken frame")
        finally:
            closed.set()

    stream = video.prefetch(produce(), depth=1)
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(ValueError, match="broken frame"):
        next(stream)

    closed.clear()
    endless = video.prefetch(produce_forever(closed), depth=1)
    assert next(endless) == 0
    endless.close()
    assert closed.wait(5)  # the producer thread closed its source


def produce_forever(closed):
    try:
        i = 0
        while True:
            yield i
            i += 1
    finally:
        closed.set()


@pytest.fixture
def no_heavy_work(monkeypatch):
    monkeypatch.setattr(
        cli, "model_and_variables", lambda args: pytest.fail("model loaded before the arguments were checked")
    )


def test_missing_camera_is_one_line(no_heavy_work, tmp_path, capsys):
    assert cli.main(["video", "--camera", "99", "--out", str(tmp_path / "c.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: camera 99: cannot be opened (no camera with that number, or it is in use)"


def test_missing_opencv_is_one_line(no_heavy_work, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    assert cli.main(["video", "--camera", "0", "--out", str(tmp_path / "c.mp4")]) == 2
    assert capsys.readouterr().err.strip() == "error: --camera needs OpenCV: pip install opencv-python"


def test_bad_arguments_fail_in_one_line_before_heavy_work(no_heavy_work, pan, tmp_path, capsys):
    clip = str(pan[1])
    (tmp_path / "taken.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    cases = {
        "no input": ([], "give one video file, or --camera N"),
        "file and camera": ([clip, "--camera", "0"], "give one video file, or --camera N"),
        "missing file": ([str(tmp_path / "nope.mp4")], "nope.mp4: no such file"),
        "not a video": (
            [str(tmp_path / "notes.mp4"), "--out", str(tmp_path / "o.mp4")],
            "notes.mp4: not a video ffmpeg",
        ),
        "format": ([clip, "--out", str(tmp_path / "o.webm")], "unsupported video format"),
        "exists": ([clip, "--out", str(tmp_path / "taken.mp4")], "exists; pass --overwrite"),
        "over the input": ([clip, "--out", clip, "--overwrite"], "refusing to overwrite an input"),
        "opacity": ([clip, "--opacity", "2"], r"--opacity must be in [0, 1]"),
        "option": ([clip, "--option", "alpha=0.5"], "grad_cam has no option 'alpha'; its options: score, layer, relu"),
        "class": ([clip, "--class", "bull mastif"], "did you mean 'bull mastiff'"),
    }
    for case, (argv, message) in cases.items():
        assert cli.main(["video", *argv]) == 2, case
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, (case, err)


def test_old_argument_names_give_the_same_frames_with_a_deprecation_warning(tmp_path):
    from tests.test_methods import Tiny
    from tests.test_throughput import variables_of

    model = Tiny(num_classes=4)
    variables = variables_of(model, 32)
    frames = [np.random.default_rng(i).integers(0, 256, (40, 50, 3), np.uint8) for i in range(3)]
    new = list(
        video.explain_frames(
            iter(frames),
            model,
            variables,
            targets=1,
            frames_per_batch=2,
            opacity=0.4,
            input_size=(32, 32),
            method_options={"layer": "relu"},
        )  # fmt: skip
    )
    with pytest.warns(DeprecationWarning) as caught:
        old = list(
            video.explain_frames(
                iter(frames), model, variables, target=1, batch_size=2, alpha=0.4, input_size=(32, 32), layer="relu"
            )
        )
    messages = " | ".join(str(w.message) for w in caught)
    assert "target= is now targets=" in messages and "batch_size= is now frames_per_batch=" in messages
    assert "alpha= is now opacity=" in messages and "method options as keyword arguments (layer)" in messages
    assert [e.target for e in new] == [e.target for e in old] == [1, 1, 1]
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a.overlay, b.overlay)
        np.testing.assert_array_equal(a.map, b.map)
    with pytest.warns(DeprecationWarning, match="target= is now targets="):
        stats = video.explain_video(
            video.Source(video.VideoInfo(10.0, None), iter(frames)), tmp_path / "old.mp4", model, variables,
            target=1, input_size=(32, 32), method_options={"layer": "relu"},
        )  # fmt: skip
    assert stats.frames == 3
    with pytest.raises(ValueError, match="grad_cam has no option 'steps'"):
        next(video.explain_frames(iter(frames), model, variables, method_options={"steps": 2}))


def test_each_frame_says_why_its_map_is_not_informative(tmp_path):
    import jax

    from tests.test_methods import Tiny
    from tests.test_throughput import variables_of

    model = Tiny(num_classes=4)
    variables = variables_of(model, 32)
    flat = jax.tree_util.tree_map_with_path(
        lambda path, v: np.zeros_like(v) if "head" in jax.tree_util.keystr(path) else v, variables
    )
    frames = [np.random.default_rng(i).integers(0, 256, (40, 50, 3), np.uint8) for i in range(3)]
    common = dict(input_size=(32, 32), frames_per_batch=2, method_options={"layer": "relu", "score": "logit"})
    fine = list(video.explain_frames(iter(frames), model, variables, **common))
    assert [e.flags for e in fine] == [()] * 3
    with pytest.warns(gj.DegenerateMapWarning):
        shown = list(video.explain_frames(iter(frames), model, flat, **common))
        stats = video.explain_video(
            video.Source(video.VideoInfo(10.0, None), iter(frames)), tmp_path / "flat.mp4", model, flat, **common
        )
    assert [e.flags for e in shown] == [("constant map", "zero gradient")] * 3
    assert (stats.frames, stats.flagged) == (3, 3)
