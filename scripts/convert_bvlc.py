"""Convert the raw BVLC GoogLeNet blobs (../shared/bvlc_googlenet) into weights/bvlc_googlenet.msgpack.

Each Caffe layer `<stage>/<layer>` becomes the Flax path `<stage>/<layer>` of `BVLCGoogLeNet`, so
the conversion is a transpose per blob: conv filters [out, kH, kW, in] -> Flax HWIO, the classifier
[1000, 1024] -> Dense kernel [1024, 1000]. Every blob is checked against SHA256SUMS.txt first.

    python scripts/convert_bvlc.py [--src ../shared/bvlc_googlenet] [--out weights/bvlc_googlenet.msgpack]

Prints the new file's sha256: record it as `BVLC_SHA256` in gradcam_jax/weights.py.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradcam_jax.models.googlenet import INPUT_SIZE, BVLCGoogLeNet  # noqa: E402
from gradcam_jax.models.weights import write_variables  # noqa: E402


def verified_blobs(src: Path) -> dict[str, Path]:
    """{relative path: file} for every blob in SHA256SUMS.txt, each checked against its digest."""
    blobs = {}
    for line in (src / "SHA256SUMS.txt").read_text().splitlines():
        digest, name = line.split()
        actual = hashlib.sha256((src / name).read_bytes()).hexdigest()
        if actual != digest:
            raise SystemExit(f"error: {src / name}: sha256 {actual} does not match SHA256SUMS.txt")
        blobs[name] = src / name
    return blobs


def convert(src: Path) -> dict:
    """The BVLC variables, {'params': {stage: {layer: {'kernel', 'bias'}}}}, as numpy float32."""
    blobs = verified_blobs(src)
    shapes = jax.eval_shape(BVLCGoogLeNet().init, jax.random.key(0), jnp.zeros((1, *INPUT_SIZE, 3)))

    def blob(path, leaf_shape):
        stage, layer, leaf = (k.key for k in path[1:])
        raw = np.fromfile(blobs[f"weights/{stage}/{layer}_{'bias' if leaf == 'bias' else 'filter'}.bin"], "<f4")
        if leaf == "bias":
            return raw.reshape(leaf_shape.shape)
        if len(leaf_shape.shape) == 2:  # Dense: Caffe W is [out, in]
            return raw.reshape(leaf_shape.shape[::-1]).T.copy()
        kh, kw, cin, cout = leaf_shape.shape
        return raw.reshape(cout, kh, kw, cin).transpose(1, 2, 3, 0).copy()

    variables = jax.tree_util.tree_map_with_path(blob, shapes)
    used = sum(np.size(a) for a in jax.tree.leaves(variables))
    assert used == 6_998_552, f"converted {used} values, expected all 6,998,552"
    return variables


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "bvlc_googlenet")
    parser.add_argument("--out", type=Path, default=ROOT / "weights" / "bvlc_googlenet.msgpack")
    args = parser.parse_args(argv)
    digest = write_variables(args.out, convert(args.src))
    print(f"wrote {args.out}  sha256 {digest}")


if __name__ == "__main__":
    main()
