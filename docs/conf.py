"""Sphinx configuration: MyST Markdown pages, an API reference from the docstrings, built offline.

pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # document this checkout, not an installed copy

project = "gradcam-jax"
author = "gradcam-jax contributors"
copyright = "gradcam-jax contributors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = [
    "_build",
    "evaluation.md",  # written by scripts/evaluate.py; included into methods.md
    "images/LICENSES.md",
]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links resolve

# Docstrings write code as `x`; show it as code, and keep signatures in source order.
default_role = "code"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "sphinx_book_theme"
html_title = "gradcam-jax"
html_theme_options = {"show_toc_level": 2}


# Each object once: `gradcam_jax` re-exports, flat, names whose home is a public namespace (every
# method from `gradcam_jax.methods`, GoogLeNet from `gradcam_jax.models`, `blend` from
# `gradcam_jax.overlay`). In `automodule:: gradcam_jax` those are skipped: api.md documents them
# under their namespace, from that namespace's `__all__`, so neither list is written by hand.
NAMESPACES = tuple(f"gradcam_jax.{name}" for name in ("methods", "targets", "metrics", "overlay", "models"))
_documenting = {"module": None}  # the module whose members autodoc is filtering (its docstring comes first)


def _note_module(app, what, name, obj, options, lines):
    if what == "module":
        _documenting["module"] = name


def _skip_if_documented_in_namespace(app, what, name, obj, skip, options):
    if what != "module" or _documenting["module"] != "gradcam_jax":
        return None
    for namespace in map(importlib.import_module, NAMESPACES):
        if name in namespace.__all__ and getattr(namespace, name) is obj:
            return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _note_module)
    app.connect("autodoc-skip-member", _skip_if_documented_in_namespace)
