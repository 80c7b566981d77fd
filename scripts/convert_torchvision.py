"""Convert a torchvision GoogLeNet state_dict (.pth) into flax msgpack for `load_googlenet(variant="torchvision")`.

torchvision's modules map onto the Caffe names our `TorchvisionGoogLeNet` uses:

    conv1 -> conv1/7x7_s2      conv2 -> conv2/3x3_reduce      conv3 -> conv2/3x3      fc -> loss3/classifier
    inceptionXY.branch1 -> inception_XY/1x1        branch2.0 / .1 -> inception_XY/3x3_reduce / 3x3
    inceptionXY.branch3.0 / .1 -> inception_XY/5x5_reduce / 5x5 (3x3 in torchvision)   branch4.1 -> pool_proj

Each BasicConv2d becomes `<layer>/conv` (kernel OIHW -> HWIO) and `<layer>/bn` (weight, bias ->
params scale, bias; running_mean, running_var -> batch_stats mean, var). The auxiliary classifiers
(`aux1.*`, `aux2.*`) and `num_batches_tracked` are dropped; any other key left over is an error.

    python scripts/convert_torchvision.py --src googlenet-1378be20.pth --out weights/googlenet_torchvision.msgpack
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradcam_jax.models.googlenet import TorchvisionGoogLeNet  # noqa: E402
from gradcam_jax.models.weights import check_structure, write_variables  # noqa: E402

BRANCHES = {
    "branch1": "1x1",
    "branch2.0": "3x3_reduce",
    "branch2.1": "3x3",
    "branch3.0": "5x5_reduce",
    "branch3.1": "5x5",
    "branch4.1": "pool_proj",
}
STEM = {"conv1": ("conv1", "7x7_s2"), "conv2": ("conv2", "3x3_reduce"), "conv3": ("conv2", "3x3")}
BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
             "running_var": ("batch_stats", "var")}  # fmt: skip


def flax_layer(module: str) -> tuple[str, str]:
    """(stage, layer) of a torchvision BasicConv2d path: 'inception4b.branch3.1' -> ('inception_4b', '5x5')."""
    if module in STEM:
        return STEM[module]
    match = re.fullmatch(r"inception(\d[a-e])\.(branch\d(?:\.\d)?)", module)
    if match is None or match.group(2) not in BRANCHES:
        raise ValueError(f"unexpected torchvision module {module!r}")
    return f"inception_{match.group(1)}", BRANCHES[match.group(2)]


def convert(state_dict) -> dict:
    """{'params': ..., 'batch_stats': ...} (numpy float32) from a torchvision GoogLeNet state_dict."""
    variables: dict = {"params": {}, "batch_stats": {}}

    def put(collection, stage, layer, sub, leaf, value):
        node = variables[collection].setdefault(stage, {}).setdefault(layer, {})
        (node.setdefault(sub, {}) if sub else node)[leaf] = np.asarray(value, np.float32)

    for key, tensor in state_dict.items():
        if key.startswith(("aux1.", "aux2.")) or key.endswith("num_batches_tracked"):
            continue
        value = np.asarray(tensor)
        if key == "fc.weight":
            put("params", "loss3", "classifier", None, "kernel", value.T)
        elif key == "fc.bias":
            put("params", "loss3", "classifier", None, "bias", value)
        elif key.endswith(".conv.weight"):
            put("params", *flax_layer(key[: -len(".conv.weight")]), "conv", "kernel", value.transpose(2, 3, 1, 0))
        elif (match := re.fullmatch(r"(.+)\.bn\.(weight|bias|running_mean|running_var)", key)) is not None:
            collection, leaf = BN_LEAVES[match.group(2)]
            put(collection, *flax_layer(match.group(1)), "bn", leaf, value)
        else:
            raise ValueError(f"unexpected key {key!r} in the state_dict: is this torchvision's GoogLeNet?")
    return variables


def load_state_dict(path: Path) -> dict:
    """The state_dict saved at `path` (`torch.save(model.state_dict(), path)`, as torchvision ships it)."""
    import torch  # only the file reading needs torch; `convert` takes any mapping of arrays

    return torch.load(path, map_location="cpu", weights_only=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="torchvision GoogLeNet state_dict (.pth)")
    parser.add_argument("--out", type=Path, required=True, help="flax msgpack file to write")
    args = parser.parse_args(argv)
    variables = convert(load_state_dict(args.src))
    # check the tree against the model first, so a file that cannot load is never written
    check_structure(TorchvisionGoogLeNet(), variables)
    digest = write_variables(args.out, variables)
    print(f"wrote {args.out}  sha256 {digest}")


if __name__ == "__main__":
    main()
