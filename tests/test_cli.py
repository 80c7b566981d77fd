"""The command line, run in-process: classify's JSON lines, explain's files and their documented names."""

from __future__ import annotations

import json
import shutil
import warnings

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


# -- method options pass through untouched; the front ends' own names shadow none --------------


def tiny_model(monkeypatch, num_classes=6):
    """The CLI with a tiny conv net (layer "relu") in place of GoogLeNet."""
    from tests.test_methods import Tiny
    from tests.test_throughput import variables_of

    model = Tiny(num_classes=num_classes)
    variables = variables_of(model, 224)
    monkeypatch.setattr(cli, "model_and_variables", lambda args: (model, variables))
    return model, variables


def test_option_reaches_the_methods_own_alpha(photos, tmp_path, monkeypatch, capsys):
    import gradcam_jax as gj

    model, variables = tiny_model(monkeypatch)
    x = gj.load_image(photos / "cat.png")[None].astype(np.float32)
    maps = {}
    for alpha in (None, 0.5):
        npy = tmp_path / f"{alpha}.npy"
        argv = ["explain", str(photos / "cat.png"), "--method", "finer_cam", "--layer", "relu"]
        argv += ["--out", str(tmp_path / f"{alpha}.png"), "--save-map", str(npy), "--opacity", "0.3"]
        assert cli.main(argv + ([] if alpha is None else ["--option", f"alpha={alpha}"])) == 0
        maps[alpha] = np.load(npy)
    want = gj.finer_cam(model, variables, x, layer="relu", alpha=0.5).map[0]
    np.testing.assert_allclose(maps[0.5], want, atol=1e-6)  # finer_cam's alpha, not the overlay's opacity
    np.testing.assert_allclose(maps[None], gj.finer_cam(model, variables, x, layer="relu").map[0], atol=1e-6)
    assert np.abs(maps[0.5] - maps[None]).max() > 1e-3


def test_an_option_the_method_does_not_take_is_one_line(photos, monkeypatch, capsys):
    monkeypatch.setattr(cli, "model_and_variables", lambda args: pytest.fail("model loaded before the check"))
    assert cli.main(["explain", str(photos / "cat.png"), "--option", "steps=4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grad_cam has no option 'steps'; its options: ") and err.count("\n") == 1
    assert {"layer", "score"} <= set(err.split(": ")[-1].strip().split(", "))  # its signature's, and its score
    with pytest.raises(SystemExit) as exit:  # argparse's own exit, as for every malformed argument
        cli.main(["explain", str(photos / "cat.png"), "--option", "steps"])
    assert exit.value.code == 2 and "expected name=value, got 'steps'" in capsys.readouterr().err


def test_option_values_are_python_literals_or_strings():
    parse = cli.build_parser().parse_args
    args = parse(["explain", "x.jpg", "--option", "alpha=0.5", "--option", "fill=mean", "--option", "window=(2, 2)"])
    assert args.method_options == [("alpha", 0.5), ("fill", "mean"), ("window", (2, 2))]
    assert cli.parse_option("relu=True") == ("relu", True) and cli.parse_option("layer=a/b") == ("layer", "a/b")


def test_alpha_is_the_old_name_of_opacity(photos, tmp_path, monkeypatch, capsys):
    tiny_model(monkeypatch)
    png = tmp_path / "old.png"
    assert cli.main(["explain", str(photos / "cat.png"), "--layer", "relu", "--alpha", "0", "--out", str(png)]) == 0
    assert "warning: --alpha is now --opacity" in capsys.readouterr().err
    np.testing.assert_array_equal(
        np.asarray(Image.open(png)), np.asarray(Image.open(photos / "cat.png").convert("RGB"))
    )
    assert cli.main(["explain", str(photos / "cat.png"), "--opacity", "1.5"]) == 2
    assert capsys.readouterr().err == "error: --opacity must be in [0, 1]; got 1.5\n"


# -- the front ends' shape --------------------------------------------------------------------

FRONT_ENDS = ["cli.py", "app.py", "dataset.py", "video.py", "_src/pipeline.py"]
MAX_LINES = 60


def test_no_front_end_function_is_longer_than_60_lines():
    """One job per function: the page's layout, wiring and handlers apart; one batching loop."""
    import ast
    from pathlib import Path

    import gradcam_jax

    package = Path(gradcam_jax.__file__).parent
    long = []
    for name in FRONT_ENDS:
        for node in ast.walk(ast.parse((package / name).read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # pyright: ignore[reportOperatorIssue]
                if lines > MAX_LINES:
                    long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_one_batching_loop_serves_every_front_end():
    """The CLI, folder runs and video (and so the explorer's live mode) batch through
    `pipeline.explained`; none keeps a loop or bucket of its own."""
    from pathlib import Path

    import gradcam_jax

    package = Path(gradcam_jax.__file__).parent
    for name in ["cli.py", "dataset.py", "video.py"]:
        text = (package / name).read_text()
        assert "pipeline.explained(" in text and ".bucket(" not in text and "stack_padded" not in text, name
    assert not (package / "_src" / "batching.py").exists()


# -- a map that shows nothing is said so (issue 27) --------------------------------------------


def zero_head_model(monkeypatch):
    """The CLI with the tiny conv net, its head zero-initialised: every map is flagged."""
    import jax

    model, variables = tiny_model(monkeypatch)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, v: np.zeros_like(v) if "head" in jax.tree_util.keystr(path) else v, variables
    )
    monkeypatch.setattr(cli, "model_and_variables", lambda args: (model, variables))
    return model, variables


def test_a_flagged_map_is_one_line_on_stderr_and_the_run_succeeds(photos, tmp_path, monkeypatch, capsys):
    zero_head_model(monkeypatch)
    argv = ["explain", str(photos / "cat.png"), "--layer", "relu", "--class", "2", "--out", str(tmp_path / "o")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library's DegenerateMapWarning is not printed as well
        assert cli.main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert lines == [
        f"warning: {photos / 'cat.png'}: class 2 (great white shark): map not informative: "
        "constant map, zero gradient; try another --layer, or --score logit"
    ], err
    assert "DegenerateMapWarning" not in err


def test_an_informative_map_gets_no_warning_line(photos, tmp_path, monkeypatch, capsys):
    tiny_model(monkeypatch)
    argv = ["explain", str(photos / "cat.png"), "--layer", "relu", "--score", "logit", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    assert "warning:" not in capsys.readouterr().err


def test_a_folder_run_warns_per_flagged_map_and_indexes_the_flags(photos, tmp_path, monkeypatch, capsys):
    zero_head_model(monkeypatch)
    out = tmp_path / "o"
    assert cli.main(["explain", str(photos), "--layer", "relu", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("map not informative: constant map, zero gradient") == 2, err
    records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [r["flags"] for r in records] == [["constant map", "zero gradient"]] * 2
