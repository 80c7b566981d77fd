"""The layout's rules (docs/layout.md), read from the source: what may import what."""

import ast
from pathlib import Path

import pytest

import gradcam_jax

PACKAGE = Path(gradcam_jax.__file__).parent
# the generic core: it knows no model, no toy and no front end
CORE = [
    *sorted((PACKAGE / "_src" / "adapters").glob("*.py")),
    *sorted((PACKAGE / "_src" / "methods").glob("*.py")),
    *sorted((PACKAGE / "_src" / "evaluation").glob("*.py")),
    *sorted((PACKAGE / "_src" / "relevance").glob("*.py")),
    *[PACKAGE / "_src" / f"{name}.py" for name in ("targets", "scores", "gradients", "maps", "inputs", "metrics")],
    PACKAGE / "_src" / "patching.py",
]
FRONT_ENDS = ("gradcam_jax.cli", "gradcam_jax.app", "gradcam_jax.dataset", "gradcam_jax.video")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (`from a import b` gives `a` and `a.b`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_imports_no_model_toy_or_front_end(path):
    assert path.exists()
    forbidden = [
        m
        for m in imported_modules(path)
        if m.startswith(("gradcam_jax.models", "gradcam_jax.toys", *FRONT_ENDS)) or m == "gradcam_jax.models"
    ]
    assert forbidden == []


def test_only_the_toys_import_optax():
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(m == "optax" or m.startswith("optax.") for m in imported_modules(path))
    }
    assert importers and all(name.startswith("toys/") for name in importers), importers


def test_importing_the_package_loads_no_toy():
    # (optax itself may load: flax.nnx imports it for its train state)
    import subprocess
    import sys

    code = "import sys, gradcam_jax; print(any(m.startswith('gradcam_jax.toys') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_the_public_api_is_sorted_and_every_name_resolves():
    names = gradcam_jax.__all__
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(hasattr(gradcam_jax, name) for name in names)
    public_modules = {
        n
        for n in dir(gradcam_jax)
        if not n.startswith("_") and type(getattr(gradcam_jax, n)).__name__ in ("module", "_CallableModule")
    }
    # modules visible on the package are the public namespaces and front ends, never implementation modules
    assert public_modules <= {
        "methods",
        "targets",
        "metrics",
        "relevance",
        "overlay",
        "models",
        "toys",
        "dataset",
        "video",
        "training",
        "volumes",
        "cli",
        "app",
        "pretrained",  # the bundled weights: a data-only package that importlib.resources imports on first load
    }
