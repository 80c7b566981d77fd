"""Draw MATLAB's Grad-CAM figure for the Grad-CAM paper's Figure 1 photo: "bull mastiff" and
"tiger cat" explained side by side, each titled with its label and softmax score.

    python scripts/demo.py [--image IMG] [--out docs/images/demo.png] [--class "bull mastiff" --class "tiger cat"]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradcam_jax as gj  # noqa: E402
from gradcam_jax.overlay import figure  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "images" / "cat_dog.jpg")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "demo.png")
    parser.add_argument("--class", dest="classes", action="append", default=None)
    args = parser.parse_args(argv)
    classes = [gj.class_index(c) for c in (args.classes or ["bull mastiff", "tiger cat"])]

    model, variables = gj.load_googlenet()
    image = gj.load_image(args.image)
    result = gj.grad_cam(model, variables, image[None].astype(np.float32), np.array([classes]))
    titles = [f"{gj.label(c)} ({float(s):.2f})" for c, s in zip(classes, result.scores[0])]
    fig = figure(image, np.asarray(result.map[0]), titles)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"{', '.join(titles)}  ->  {args.out}")


if __name__ == "__main__":
    main()
