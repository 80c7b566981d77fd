"""Pretrained variables: find, verify and load them (I/O edge; the model itself holds no parameters).

The BVLC GoogLeNet weights ship with the package as one flax-msgpack file (made by
`scripts/convert_bvlc.py` from the raw Caffe blobs), and its sha256 is recorded here, so a
missing or damaged file is a clear error rather than silently wrong explanations.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from gradcam_jax.googlenet import INPUT_SIZE, BVLCGoogLeNet, TorchvisionGoogLeNet

BVLC_FILENAME = "bvlc_googlenet.msgpack"
BVLC_SHA256 = "f4cce9bca1bf10972ff527d38c71402bcffa8d6209f1239a6f7d47d5224de910"

VARIANTS = {"bvlc": BVLCGoogLeNet, "torchvision": TorchvisionGoogLeNet}
RESTORE_HINT = "restore it with `git checkout -- weights/` or rerun `python scripts/convert_bvlc.py`"


class WeightsError(RuntimeError):
    """A weights file that is missing, damaged, of the wrong architecture, or cannot be fetched."""


def bundled_path(filename: str = BVLC_FILENAME) -> Path:
    """Where the shipped weights live: package data when installed, `weights/` in a source tree."""
    try:
        return Path(str(importlib.resources.files("gradcam_jax.pretrained") / filename))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "weights" / filename


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_variables(path: Path, sha256: str | None = None) -> dict:
    """The variables stored at `path` (flax msgpack), after checking its sha256 if one is given."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing; {RESTORE_HINT}")
    if sha256 is not None and (actual := sha256_of(path)) != sha256:
        raise WeightsError(
            f"weights file {path} is corrupt (sha256 {actual[:12]}..., expected {sha256[:12]}...); {RESTORE_HINT}"
        )
    try:
        restored = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on damaged input
        raise WeightsError(f"weights file {path} cannot be read ({err}); {RESTORE_HINT}") from err
    if not isinstance(restored, dict):
        raise WeightsError(f"weights file {path} holds no variables; {RESTORE_HINT}")
    return restored


def write_variables(path: Path, variables) -> str:
    """Write `variables` as flax msgpack, atomically; returns the file's sha256."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(jax.tree.map(np.asarray, variables)))
    tmp.replace(path)
    return sha256_of(path)


def check_structure(model: nn.Module, variables) -> dict:
    """`variables` as jnp arrays, after checking they have exactly the tree and shapes `model` expects."""
    expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *INPUT_SIZE, 3)))
    expected_shapes = jax.tree_util.tree_flatten_with_path(jax.tree.map(lambda a: a.shape, expected))[0]
    try:
        got_shapes = jax.tree_util.tree_flatten_with_path(jax.tree.map(np.shape, variables))[0]
    except Exception:
        got_shapes = []
    if dict(got_shapes) != dict(expected_shapes):
        missing = {jax.tree_util.keystr(k) for k, _ in expected_shapes} - {jax.tree_util.keystr(k) for k, _ in got_shapes}
        raise WeightsError(
            f"weights do not fit {type(model).__name__}: {len(missing)} parameters missing or misshapen"
            + (f", e.g. {sorted(missing)[0]}" if missing else "")
        )
    return jax.tree.map(jnp.asarray, variables)


def download_from_hub(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Fetch a weights file from the Hugging Face Hub (or its local cache); clear error when offline."""
    import huggingface_hub

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, etag_timeout=10))
    except Exception as err:  # offline, unknown repo, network: all end the same way for the user
        raise WeightsError(
            f"cannot fetch {filename} from Hugging Face Hub repo {repo_id} ({type(err).__name__}: {err}). "
            "If this machine is offline, download the file elsewhere and pass path=..., "
            "or pre-populate the Hub cache and set HF_HUB_OFFLINE=1."
        ) from err


def load_googlenet(
    path: str | Path | None = None,
    *,
    variant: str = "bvlc",
    sha256: str | None = None,
    hf_repo_id: str | None = None,
    hf_filename: str = BVLC_FILENAME,
    hf_revision: str | None = None,
) -> tuple[nn.Module, dict]:
    """`(model, variables)` for a pretrained GoogLeNet.

    With no arguments: the BVLC (Caffe/MATLAB) weights shipped with the package, checksum-verified.
    `path=` reads a flax-msgpack file instead; `hf_repo_id=`/`hf_filename=` fetch one from the
    Hugging Face Hub. `variant="torchvision"` builds torchvision's GoogLeNet (its weights come from
    `scripts/convert_torchvision.py`). `sha256=` checks the file against a known digest.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    model = VARIANTS[variant]()
    if hf_repo_id is not None:
        path = download_from_hub(hf_repo_id, hf_filename, hf_revision)
    elif path is None:
        if variant != "bvlc":
            raise ValueError(f"variant {variant!r} ships no weights: pass path=... to a converted file")
        path, sha256 = bundled_path(), sha256 or BVLC_SHA256
    return model, check_structure(model, read_variables(Path(path), sha256))
