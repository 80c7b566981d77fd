"""Sphinx configuration: MyST Markdown pages, an API reference from the docstrings, built offline.

pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html
"""

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
