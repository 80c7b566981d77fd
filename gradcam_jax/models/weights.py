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

from gradcam_jax.models.googlenet import INPUT_SIZE, BVLCGoogLeNet, TorchvisionGoogLeNet

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


def convert_hint(path: Path) -> str:
    return f"convert it with `python scripts/convert_torchvision.py --src {path} --out googlenet_torchvision.msgpack`"


def read_variables(path: Path, sha256: str | None = None, hint: str = RESTORE_HINT) -> dict:
    """The variables stored at `path` (flax msgpack), after checking its sha256 if one is given.
    `hint` ends every error: what the user can do about it (for a file of their own, nothing
    about git). A PyTorch checkpoint (.pth, .pt, a zip) gets its own one-line error."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing" + (f"; {hint}" if hint else ""))
    with open(path, "rb") as f:
        is_torch = path.suffix in (".pth", ".pt") or f.read(2) == b"PK"  # torch.save writes a zip
    if is_torch:
        raise WeightsError(f"{path} is a PyTorch checkpoint, not flax msgpack; {convert_hint(path)}")
    hint = f"; {hint}" if hint else ""
    if sha256 is not None and (actual := sha256_of(path)) != sha256:
        raise WeightsError(f"weights file {path} is corrupt (sha256 {actual[:12]}..., expected {sha256[:12]}...){hint}")
    try:
        restored = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on damaged input
        raise WeightsError(f"weights file {path} cannot be read ({err}){hint}") from err
    if not isinstance(restored, dict):
        raise WeightsError(f"weights file {path} holds no variables{hint}")
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
        missing = {jax.tree_util.keystr(k) for k, _ in expected_shapes} - {
            jax.tree_util.keystr(k) for k, _ in got_shapes
        }
        raise WeightsError(
            f"weights do not fit {type(model).__name__}: {len(missing)} parameters missing or misshapen"
            + (f", e.g. {sorted(missing)[0]}" if missing else "")
        )
    return jax.tree.map(jnp.asarray, variables)


HUB_CONNECT_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_CONNECT_TIMEOUT_S) -> str | None:
    """None if the Hub's host takes a TCP connection within `timeout` s, else why not."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return None
    except OSError as err:
        return f"no connection to {url.hostname}: {err.strerror or err}"


def download_from_hub(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Fetch a weights file from the Hugging Face Hub (or its local cache); clear error when offline.
    The cache is tried first, then one quick connection test, so an offline machine fails within
    seconds instead of after the HTTP client's retries."""
    import huggingface_hub

    def fail(reason: str) -> WeightsError:
        return WeightsError(
            f"cannot fetch {filename} from Hugging Face Hub repo {repo_id} ({reason}). "
            "If this machine is offline, download the file elsewhere and pass path=..., "
            "or pre-populate the Hub cache and set HF_HUB_OFFLINE=1."
        )

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except Exception:  # not in the cache (or no cache): go to the network
        pass
    if (unreachable := hub_reachable()) is not None:
        raise fail(unreachable)
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, etag_timeout=10))
    except Exception as err:  # unknown repo, network: all end the same way for the user
        raise fail(f"{type(err).__name__}: {err}") from err


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
        path, hint = download_from_hub(hf_repo_id, hf_filename, hf_revision), ""
    elif path is None:
        if variant != "bvlc":
            raise ValueError(f"variant {variant!r} ships no weights: pass path=... to a converted file")
        path, sha256, hint = bundled_path(), sha256 or BVLC_SHA256, RESTORE_HINT
    else:  # the user's own file: git cannot restore it
        hint = convert_hint(Path(path)) if variant == "torchvision" else ""
    return model, check_structure(model, read_variables(Path(path), sha256, hint))
