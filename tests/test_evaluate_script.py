"""scripts/evaluate.py's bookkeeping: what `--reuse` keeps, and the second table's cells."""

from __future__ import annotations

import importlib.util
import json

import numpy as np

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
assert spec is not None and spec.loader is not None
evaluate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate)

SETTINGS = {"photos": ["a.png"], "steps": 4, "stops": ["loss3"], "machine": "the box it was timed on"}


def test_reuse_keeps_the_figures_when_the_maps_file_is_gone(tmp_path):
    figures = {"grad_cam": {"ms_per_image": 1.0, "per_image": {}}}
    (tmp_path / "e.json").write_text(json.dumps({"settings": SETTINGS, "methods": figures}))
    kept, maps = evaluate.stored_run(tmp_path / "e.json", tmp_path / "absent.npz", ["a.png"], 4, ["loss3"])
    assert kept == figures and maps == {}
    np.savez(tmp_path / "m.npz", grad_cam=np.ones((1, 2, 2)))
    kept, maps = evaluate.stored_run(tmp_path / "e.json", tmp_path / "m.npz", ["a.png"], 4, ["loss3"])
    assert list(maps) == ["grad_cam"] and maps["grad_cam"].shape == (1, 2, 2)
    # other photos or settings: nothing is kept
    assert evaluate.stored_run(tmp_path / "e.json", tmp_path / "m.npz", ["b.png"], 4, ["loss3"]) == ({}, {})


def test_second_table_marks_what_was_not_run():
    figures = {
        "fast": {"faithfulness_correlation": 0.25, "max_sensitivity": 0.5, "random_logit": 0.125},
        "slow": {"faithfulness_correlation": -0.5, "max_sensitivity": None, "random_logit": 1.0},
    }
    lines = evaluate.other_families(figures)
    header = next(line for line in lines if line.startswith("| method"))
    assert "faithfulness correlation" in header and "sparseness" not in header  # only columns some method has
    assert "| `fast` | 0.250 | 0.500 | 0.125 |" in lines
    assert "| `slow` | -0.500 | — | 1.000 |" in lines
    assert "not run for `slow`" in lines[1]
    assert evaluate.other_families({"old": {"deletion_auc": 0.1}}) == []  # a table from before: no second table
